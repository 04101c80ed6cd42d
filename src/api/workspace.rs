//! `MLWorkspace`: a connection to one existing Azure ML workspace.

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{Condition, SecretKeyRef};

/// A connection to one existing Azure Machine Learning workspace: where it is and which
/// identity the operator uses to reach it. Targets in the same namespace refer to it by name.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "attach.azureml.io",
    version = "v1alpha1",
    kind = "MLWorkspace",
    namespaced,
    status = "MLWorkspaceStatus",
    shortname = "mlw",
    category = "azureml",
    doc = "A connection to one existing Azure Machine Learning workspace and the identity used to reach it.",
    printcolumn(
        name = "Subscription",
        type_ = "string",
        json_path = ".spec.subscriptionId",
        priority = 1
    ),
    printcolumn(name = "Group", type_ = "string", json_path = ".spec.resourceGroup"),
    printcolumn(
        name = "Workspace",
        type_ = "string",
        json_path = ".spec.workspaceName"
    ),
    printcolumn(name = "Location", type_ = "string", json_path = ".status.location"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct MLWorkspaceSpec {
    /// Azure subscription id (a GUID).
    #[x_kube(validation = Rule::new("self.matches('^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$')").message("spec.subscriptionId must be a subscription GUID like 00000000-0000-0000-0000-000000000000"))]
    #[schemars(length(max = 36))]
    pub subscription_id: String,
    /// Resource group of the workspace.
    #[schemars(length(min = 1, max = 90))]
    pub resource_group: String,
    /// Name of the Azure ML workspace.
    #[x_kube(validation = Rule::new("self.matches('^[a-zA-Z0-9][a-zA-Z0-9_-]{2,32}$')").message("spec.workspaceName must be 3-33 letters, digits, '_' or '-', starting with a letter or digit"))]
    #[schemars(length(max = 33))]
    pub workspace_name: String,
    /// Azure cloud: AzurePublic, AzureChina, AzureUSGovernment, or Custom (the endpoints the
    /// operator was started with). Defaults to the operator's own `--cloud`. Endpoints are
    /// never taken from this object, so a namespace cannot send the operator's token elsewhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloud: Option<CloudName>,
    /// How the operator authenticates to Azure for this workspace (default: its own identity).
    #[serde(default)]
    pub credential: WorkspaceCredential,
}

/// A well-known Azure cloud.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum CloudName {
    /// management.azure.com / login.microsoftonline.com
    AzurePublic,
    /// management.chinacloudapi.cn / login.chinacloudapi.cn
    AzureChina,
    /// management.usgovcloudapi.net / login.microsoftonline.us
    AzureUSGovernment,
    /// The custom endpoints the operator was started with (--arm-endpoint, --authority-host).
    Custom,
}

/// The identity used for this workspace. `type` picks one; the matching field holds its settings.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self.type == 'WorkloadIdentity' ? has(self.workloadIdentity) : !has(self.workloadIdentity)").message("credential.workloadIdentity is required with type WorkloadIdentity and not allowed otherwise"),
    validation = Rule::new("self.type == 'ClientSecret' ? has(self.clientSecret) : !has(self.clientSecret)").message("credential.clientSecret is required with type ClientSecret and not allowed otherwise"),
    validation = Rule::new("self.type == 'ManagedIdentity' || !has(self.managedIdentity)").message("credential.managedIdentity is only allowed with type ManagedIdentity")
)]
pub struct WorkspaceCredential {
    /// WorkloadIdentity, ClientSecret, ManagedIdentity, or Default (the operator's own identity).
    #[serde(rename = "type", default)]
    pub type_: CredentialType,
    /// Federated credential of another app registration, using the operator's projected
    /// service-account token (AZURE_FEDERATED_TOKEN_FILE).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload_identity: Option<WorkloadIdentityCredential>,
    /// An app registration's client secret, read from a Secret in this namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<ClientSecretCredential>,
    /// The node's or pod's managed identity (optionally a user-assigned one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed_identity: Option<ManagedIdentityCredential>,
}

/// Which kind of identity.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum CredentialType {
    /// The operator's own identity (its workload identity env, else its managed identity).
    #[default]
    Default,
    /// Workload identity federation with the given client and tenant.
    WorkloadIdentity,
    /// Client id + secret from a Secret.
    ClientSecret,
    /// Managed identity.
    ManagedIdentity,
}

/// Workload identity settings.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadIdentityCredential {
    /// Application (client) id with a federated credential for the operator's service account.
    pub client_id: String,
    /// Entra tenant id.
    pub tenant_id: String,
}

/// Client secret settings.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClientSecretCredential {
    /// Entra tenant id.
    pub tenant_id: String,
    /// Application (client) id.
    pub client_id: String,
    /// Secret key (same namespace) holding the client secret.
    pub secret_ref: SecretKeyRef,
}

/// Managed identity settings.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ManagedIdentityCredential {
    /// Client id of a user-assigned identity; absent means the system-assigned one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
}

/// Observed state of an MLWorkspace.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MLWorkspaceStatus {
    /// The `metadata.generation` the status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready` (reason Reached, WorkspaceNotFound, CredentialRejected, SecretNotFound, ...).
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// ARM id of the workspace, as Azure returned it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arm_id: Option<String>,
    /// Azure region of the workspace (used as the location of attachments).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// resourceVersion of the client-secret Secret last used (not its contents).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_resource_version: Option<String>,
}
