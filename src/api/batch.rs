//! `BatchTarget`: an existing Azure Batch account (computeType `Batch`, SDK-v1 wire format).

use super::common::TargetStatus;
use super::target::target_crd;

target_crd! {
    /// Attach an existing Azure Batch account to an Azure ML workspace. `Batch` is in no
    /// published API spec; if the service refuses the type, status says so
    /// (`ComputeTypeRefused`) and the operator stops retrying until the spec changes.
    kind = "BatchTarget",
    shortnames = ["batch"],
    doc = "An existing Azure Batch account attached to an Azure ML workspace (computeType Batch, not in any published spec; refused types are reported as ComputeTypeRefused).",
    pub struct BatchTargetSpec {
        /// ARM id of a Batch account: /subscriptions/<subscription id>/resourceGroups/<group>/providers/Microsoft.Batch/batchAccounts/<name>.
        /// Immutable: a different resource is a different attachment.
        #[x_kube(
            validation = Rule::new("self.matches('(?i)^/subscriptions/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/resourcegroups/[^/]{1,90}/providers/microsoft[.]batch/batchaccounts/[^/]{1,80}$')").message("spec.resourceId must be the ARM id of a Batch account: /subscriptions/<subscription id>/resourceGroups/<group>/providers/Microsoft.Batch/batchAccounts/<name>"),
            validation = Rule::new("self == oldSelf").message("spec.resourceId is immutable: delete the target and create a new one")
        )]
        #[schemars(length(max = 512))]
        pub resource_id: String,
    }
}
