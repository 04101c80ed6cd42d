//! Custom resource types: `MLWorkspace` and the compute target kinds.

// kube's `printcolumn(...)` repeats `type_ = "string"`; clippy reads that as duplicated attributes.
#[allow(clippy::duplicated_attributes)]
pub mod batch;
pub mod common;
#[allow(clippy::duplicated_attributes)]
pub mod data_lake_analytics;
#[allow(clippy::duplicated_attributes)]
pub mod databricks;
#[allow(clippy::duplicated_attributes)]
pub mod hdinsight;
pub mod identity;
#[allow(clippy::duplicated_attributes)]
pub mod kubernetes;
#[allow(clippy::duplicated_attributes)]
pub mod remote_vm;
#[allow(clippy::duplicated_attributes)]
pub mod synapse_spark;
mod target;
#[allow(clippy::duplicated_attributes)]
pub mod workspace;

pub use batch::{BatchTarget, BatchTargetSpec};
pub use common::*;
pub use data_lake_analytics::{DataLakeAnalyticsTarget, DataLakeAnalyticsTargetSpec};
pub use databricks::{DatabricksTarget, DatabricksTargetSpec};
pub use hdinsight::{HdInsightTarget, HdInsightTargetSpec};
pub use identity::{ComputeIdentity, IdentityType, InstanceTypeResourcesSpec, InstanceTypeSpec};
pub use kubernetes::{KubernetesTarget, KubernetesTargetSpec};
pub use remote_vm::{RemoteVmTarget, RemoteVmTargetSpec};
pub use synapse_spark::{SynapseSparkTarget, SynapseSparkTargetSpec};
pub use workspace::*;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

/// Every CRD this operator serves, in a stable order: MLWorkspace, then the target kinds in
/// the order of their registry (`controller::kinds::for_each_kind`).
pub fn all_crds() -> Vec<CustomResourceDefinition> {
    let mut crds = vec![MLWorkspace::crd()];
    crds.extend(crate::controller::kinds::target_crds());
    crds
}

#[cfg(test)]
mod tests;
