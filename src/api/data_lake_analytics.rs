//! `DataLakeAnalyticsTarget`: an existing Data Lake Analytics account (retired service).

use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::common::{ConnectionSecretRef, DeletionPolicy, TargetStatus, WorkspaceRef};

/// Attach an existing Data Lake Analytics account to an Azure ML workspace. The service was
/// retired in 2024; the kind stays so that Azure's answer is surfaced in status.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "attach.azureml.io",
    version = "v1alpha1",
    kind = "DataLakeAnalyticsTarget",
    namespaced,
    status = "TargetStatus",
    shortname = "adla",
    category = "azureml",
    doc = "An existing Azure Data Lake Analytics account attached to an Azure ML workspace (the service was retired in 2024; Azure answers are surfaced in status).",
    printcolumn(name = "Workspace", type_ = "string", json_path = ".spec.workspaceRef.name"),
    printcolumn(name = "Compute", type_ = "string", json_path = ".status.computeName"),
    printcolumn(name = "State", type_ = "string", json_path = ".status.provisioningState"),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(name = "Reason", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].reason"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new("has(self.spec.computeName) || (self.metadata.name.matches('^[a-zA-Z][a-zA-Z0-9-]{2,23}$') && !self.metadata.name.matches('-[0-9]+$'))").message("metadata.name is not a valid Azure compute name (3-24 letters, digits or '-', starting with a letter, not ending in -<digits>): set spec.computeName"),
    validation = Rule::new("has(self.spec.computeName) == has(oldSelf.spec.computeName)").message("spec.computeName cannot be added or removed: delete the target and create a new one"),
)]
#[serde(rename_all = "camelCase")]
pub struct DataLakeAnalyticsTargetSpec {
    /// The MLWorkspace (same namespace) to attach to. Immutable.
    #[x_kube(validation = Rule::new("self == oldSelf").message("spec.workspaceRef is immutable: delete the target and create a new one"))]
    pub workspace_ref: WorkspaceRef,
    /// Compute name in the workspace; defaults to metadata.name. Azure's rule: 3-24 letters,
    /// digits or '-', starting with a letter, not ending in -<digits>. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(
        validation = Rule::new("self.matches('^[a-zA-Z][a-zA-Z0-9-]{2,23}$') && !self.matches('-[0-9]+$')").message("spec.computeName must be 3-24 letters, digits or '-', start with a letter and not end in -<digits>"),
        validation = Rule::new("self == oldSelf").message("spec.computeName is immutable: delete the target and create a new one")
    )]
    #[schemars(length(max = 24))]
    pub compute_name: Option<String>,
    /// ARM id of a Data Lake Analytics account: /subscriptions/<subscription id>/resourceGroups/<group>/providers/Microsoft.DataLakeAnalytics/accounts/<name>.
    /// Immutable: a different resource is a different attachment.
    #[x_kube(
        validation = Rule::new("self.matches('(?i)^/subscriptions/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/resourcegroups/[^/]{1,90}/providers/microsoft[.]datalakeanalytics/accounts/[^/]{1,80}$')").message("spec.resourceId must be the ARM id of a Data Lake Analytics account: /subscriptions/<subscription id>/resourceGroups/<group>/providers/Microsoft.DataLakeAnalytics/accounts/<name>"),
        validation = Rule::new("self == oldSelf").message("spec.resourceId is immutable: delete the target and create a new one")
    )]
    #[schemars(length(max = 512))]
    pub resource_id: String,
    /// Detach (default) or Orphan when this object is deleted. Never deletes the underlying resource.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
    /// Optional Secret to write with the attachment's ids and the keys Azure returns (listKeys).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_connection_secret_to_ref: Option<ConnectionSecretRef>,
}
