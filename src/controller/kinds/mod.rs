//! One small file per target kind: its `AttachTarget` implementation.

/// The two accessors every kind implements the same way, because `target_crd!` gives every
/// target spec the same shared fields and status.
macro_rules! shared_accessors {
    () => {
        fn common(&self) -> $crate::controller::target::CommonSpec<'_> {
            $crate::controller::target::CommonSpec {
                workspace_ref: &self.spec.workspace_ref,
                compute_name: self.spec.compute_name.as_deref(),
                deletion_policy: self.spec.deletion_policy,
                write_connection_secret_to_ref: self.spec.write_connection_secret_to_ref.as_ref(),
            }
        }

        fn target_status(&self) -> Option<&$crate::api::TargetStatus> {
            self.status.as_ref()
        }
    };
}

mod batch;
mod data_lake_analytics;
mod databricks;
mod hdinsight;
mod remote_vm;
