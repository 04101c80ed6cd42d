//! `DatabricksTarget`: an existing Azure Databricks workspace attached with an access token.

use super::common::{SecretKeyRef, TargetStatus};
use super::target::target_crd;

target_crd! {
    /// Attach an existing Azure Databricks workspace to an Azure ML workspace as a `Databricks`
    /// compute target. The Databricks workspace is never deleted: removing the object detaches it.
    kind = "DatabricksTarget",
    shortnames = ["dbx"],
    doc = "An existing Azure Databricks workspace attached to an Azure ML workspace as a Databricks compute target.",
    pub struct DatabricksTargetSpec {
        /// ARM id of a Databricks workspace: /subscriptions/<subscription id>/resourceGroups/<group>/providers/Microsoft.Databricks/workspaces/<name>.
        /// Immutable: a different resource is a different attachment.
        #[x_kube(
            validation = Rule::new("self.matches('(?i)^/subscriptions/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/resourcegroups/[^/]{1,90}/providers/microsoft[.]databricks/workspaces/[^/]{1,80}$')").message("spec.resourceId must be the ARM id of a Databricks workspace: /subscriptions/<subscription id>/resourceGroups/<group>/providers/Microsoft.Databricks/workspaces/<name>"),
            validation = Rule::new("self == oldSelf").message("spec.resourceId is immutable: delete the target and create a new one")
        )]
        #[schemars(length(max = 512))]
        pub resource_id: String,
        /// Databricks workspace URL: its host, e.g. `adb-1234567890123456.7.azuredatabricks.net`,
        /// optionally with `https://` (no path). Changing it re-attaches.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[x_kube(
            validation = Rule::new("!self.contains('://') || self.startsWith('https://')").message("spec.workspaceUrl may only use https:// (or no scheme), e.g. https://adb-1234567890123456.7.azuredatabricks.net"),
            validation = Rule::new("self.matches('^(https://)?[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?([.][A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)+$')").message("spec.workspaceUrl must be the workspace's host, e.g. adb-1234567890123456.7.azuredatabricks.net, optionally with https:// and without a path")
        )]
        #[schemars(length(min = 1, max = 253))]
        pub workspace_url: Option<String>,
        /// The Secret key (same namespace) holding a Databricks access token. Rotating the Secret re-attaches.
        pub access_token_secret_ref: SecretKeyRef,
    }
}
