//! `SynapseSparkTarget`: an existing Spark pool of an Azure Synapse workspace.

use super::common::TargetStatus;
use super::identity::ComputeIdentity;
use super::target::target_crd;

target_crd! {
    /// Attach an existing Synapse Spark pool to an Azure ML workspace as a `SynapseSpark`
    /// compute (one of the three kinds `az ml` v2 attaches). The pool is never deleted:
    /// removing the object detaches it.
    kind = "SynapseSparkTarget",
    shortnames = ["synapse"],
    doc = "An existing Azure Synapse Spark pool attached to an Azure ML workspace as a SynapseSpark compute.",
    pub struct SynapseSparkTargetSpec {
        /// ARM id of the Spark pool: /subscriptions/<subscription id>/resourceGroups/<group>/providers/Microsoft.Synapse/workspaces/<workspace>/bigDataPools/<pool>.
        /// Immutable: a different pool is a different attachment.
        #[x_kube(
            validation = Rule::new("self.matches('(?i)^/subscriptions/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/resourcegroups/[^/]{1,90}/providers/microsoft[.]synapse/workspaces/[^/]{1,50}/bigdatapools/[^/]{1,15}$')").message("spec.resourceId must be the ARM id of a Synapse Spark pool: /subscriptions/<subscription id>/resourceGroups/<group>/providers/Microsoft.Synapse/workspaces/<workspace>/bigDataPools/<pool>"),
            validation = Rule::new("self == oldSelf").message("spec.resourceId is immutable: delete the target and create a new one")
        )]
        #[schemars(length(max = 512))]
        pub resource_id: String,
        /// The compute's managed identity (optional). Changing it re-attaches.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub identity: Option<ComputeIdentity>,
    }
}
