//! One small file per target kind: its `AttachTarget` implementation.

mod batch;
mod data_lake_analytics;
mod databricks;
mod hdinsight;
mod remote_vm;
