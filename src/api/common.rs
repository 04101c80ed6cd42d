//! Shapes shared by every target kind: references, the deletion policy, the status and its
//! conditions, and the validation rules (Azure's compute-name rule, port ranges).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// API group of every kind in this operator.
pub const GROUP: &str = "attach.azureml.io";
/// The one served version.
pub const VERSION: &str = "v1alpha1";
/// Field manager for every server-side apply the operator makes.
pub const FIELD_MANAGER: &str = "azureml-attach";
/// Finalizer that guards the Azure attachment of a target.
pub const FINALIZER: &str = "attach.azureml.io/detach";
/// Finalizer that keeps an `MLWorkspace` while targets still reference it (rule 9): they need
/// it to detach.
pub const WORKSPACE_FINALIZER: &str = "attach.azureml.io/in-use";

/// Azure's compute-name rule without the negative lookahead (RE2 has none): 3-24 characters,
/// a letter first, then letters, digits and `-`. The "not ending in -<digits>" half is a CEL rule.
pub const COMPUTE_NAME_PATTERN: &str = "^[a-zA-Z][a-zA-Z0-9-]{2,23}$";
/// The other half of Azure's compute-name rule, for CEL's `matches` (RE2).
pub const COMPUTE_NAME_FORBIDDEN_SUFFIX: &str = "-[0-9]+$";

/// Checks a name against Azure's compute-name rule
/// `^[a-zA-Z](?![a-zA-Z0-9-]*-\d+$)[a-zA-Z0-9\-]{2,23}$` (2026-07-01 `computeName`).
pub fn is_valid_compute_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    let len_ok = (3..=24).contains(&bytes.len());
    let first_ok = bytes.first().is_some_and(u8::is_ascii_alphabetic);
    let chars_ok = bytes
        .iter()
        .all(|b| b.is_ascii_alphanumeric() || *b == b'-');
    // The lookahead forbids a name that ends in `-` followed by one or more digits.
    let trailing_digits = bytes
        .iter()
        .rev()
        .take_while(|b| b.is_ascii_digit())
        .count();
    let ends_dash_digits = trailing_digits > 0
        && bytes.len() > trailing_digits
        && bytes[bytes.len() - trailing_digits - 1] == b'-';
    len_ok && first_ok && chars_ok && !ends_dash_digits
}

/// The fields every target kind has, composed into each kind's spec with `#[serde(flatten)]`
/// (by `target_crd!`): a user sees them beside the kind's own fields, as one flat `spec`.
/// Nothing here is sent to Azure except the compute name; none of it is in the fingerprint.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct TargetCommon {
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
    /// Detach (default) or Orphan when this object is deleted. Never deletes the underlying resource.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
    /// Check the underlying resource's prerequisites before the first PUT: Enforce
    /// (default: a failed check stops the attach), Warn (report it and attach) or Skip.
    #[serde(default, skip_serializing_if = "PreflightMode::is_default")]
    pub preflight: PreflightMode,
    /// Optional Secret to write with the attachment's ids and the keys Azure returns (listKeys).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_connection_secret_to_ref: Option<ConnectionSecretRef>,
}

impl TargetCommon {
    /// The shared fields of a target in `workspace`, every other field at its default.
    pub fn new(workspace: &str) -> Self {
        Self {
            workspace_ref: WorkspaceRef {
                name: workspace.to_owned(),
            },
            compute_name: None,
            deletion_policy: DeletionPolicy::default(),
            preflight: PreflightMode::default(),
            write_connection_secret_to_ref: None,
        }
    }

    /// The JSON names of these fields in a spec (what a kind's fingerprint leaves out).
    pub const FIELDS: [&'static str; 5] = [
        "workspaceRef",
        "computeName",
        "deletionPolicy",
        "preflight",
        "writeConnectionSecretToRef",
    ];
}

/// A target spec: the shared fields plus the kind's own (implemented by `target_crd!`).
pub trait TargetSpec {
    /// The shared fields.
    fn common(&self) -> &TargetCommon;
}

/// A reference to the `MLWorkspace` (in the same namespace) that the target attaches to.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct WorkspaceRef {
    /// Name of an `MLWorkspace` in the target's namespace.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// A reference to a Secret in the same namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct LocalSecretRef {
    /// Name of a Secret in the target's namespace.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// A reference to one key of a Secret in the same namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct SecretKeyRef {
    /// Name of a Secret in the same namespace.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key inside the Secret's data.
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

/// SSH credentials for a VM or an HDInsight cluster, read from a Secret right before each
/// attach. Exactly one of `passwordKey` and `privateKeyKey` must be set.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.passwordKey) != has(self.privateKeyKey)").message("set exactly one of credentials.passwordKey (password login) or credentials.privateKeyKey (SSH key login)"))]
pub struct SshCredentials {
    /// The Secret (same namespace) that holds the login. Its values are sent to Azure only
    /// when the operator attaches; they never appear in status, events or logs.
    pub secret_ref: LocalSecretRef,
    /// Key of the user name in the Secret (default `username`).
    #[serde(default = "default_username_key")]
    pub username_key: String,
    /// Key of the password in the Secret, for password login (e.g. `password`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_key: Option<String>,
    /// Key of the SSH private key (OpenSSH/PEM text) in the Secret, for key login (e.g. `privateKey`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key_key: Option<String>,
}

fn default_username_key() -> String {
    "username".to_owned()
}

/// Default SSH port for serde and the schema.
pub fn default_ssh_port() -> i32 {
    22
}

/// What happens in Azure when the Kubernetes object is deleted. There is no `Delete`: the
/// operator never deletes the underlying compute.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum DeletionPolicy {
    /// Detach the compute from the workspace (`underlyingResourceAction=Detach`); the VM,
    /// cluster or account itself is left untouched.
    #[default]
    Detach,
    /// Leave the attachment in Azure and only release the Kubernetes object. Settable on an
    /// object that is already being deleted, to release one that cannot be detached.
    Orphan,
}

/// Whether the operator checks the seed's prerequisites of the underlying resource before the
/// first PUT (by ARM reads): a VM runs Linux from an Ubuntu image and has a public IP, an
/// HDInsight cluster is Running with a public SSH endpoint, a Kubernetes cluster has the Azure ML
/// extension, a Synapse pool exists.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum PreflightMode {
    /// A failed check stops the attach (`PrerequisiteNotMet` or `ResourceNotFound`, no PUT).
    #[default]
    Enforce,
    /// A failed check is reported in the `Preflight` condition; the attach goes ahead.
    Warn,
    /// No check.
    Skip,
}

impl PreflightMode {
    /// Enforce (left out when serializing a spec).
    pub fn is_default(&self) -> bool {
        *self == PreflightMode::Enforce
    }
}

/// Where to write the connection Secret (same namespace, owned by the target).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct ConnectionSecretRef {
    /// Name of the Secret to create. The operator creates it with the target as controller
    /// owner, so it is garbage-collected with the target. A Secret of this name that exists
    /// and is not this target's is never written to (reason ConnectionSecretConflict).
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// One `Ready` (or other) condition, Kubernetes style.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// Condition type; the operator sets `Ready`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// A CamelCase reason from the documented list (docs/reference/conditions.md).
    pub reason: String,
    /// What happened, in words, and what to do about it. Never contains secret values.
    #[serde(default)]
    pub message: String,
    /// When `status` last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<Time>,
    /// The `metadata.generation` this condition describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// One entry of Azure's `provisioningErrors`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct ProvisioningError {
    /// Azure's error code.
    #[serde(default)]
    pub code: String,
    /// Azure's error message.
    #[serde(default)]
    pub message: String,
}

/// Which long-running Azure operation is in flight.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum OperationKind {
    /// A PUT of the compute (attach or re-attach).
    Attach,
    /// A DELETE with `underlyingResourceAction=Detach`.
    Detach,
}

/// A long-running operation the operator started and still polls; kept in status so that a
/// restarted operator resumes it instead of starting over (rule 6).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PendingOperation {
    /// Attach or Detach.
    pub kind: OperationKind,
    /// Azure's `Azure-AsyncOperation` (or `Location`) URL to poll.
    pub url: String,
    /// True when this detach is the first half of a re-attach.
    #[serde(default)]
    pub reattach: bool,
    /// Fingerprint of the configuration an attach pushes (see `attachedConfigHash`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_hash: Option<String>,
    /// When the operation started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,
    /// Not polled before this time (Azure's Retry-After, or the default interval), so that
    /// unrelated events do not cause extra polls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_poll_at: Option<Time>,
}

/// Observed state of a compute target. Everything the reconciler needs to resume after a
/// restart lives here; there is no secret material in it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TargetStatus {
    /// The `metadata.generation` the status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready` with a reason from the documented list.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// The compute name in the workspace (spec.computeName or metadata.name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compute_name: Option<String>,
    /// Azure's provisioningState: Creating, Succeeded, Failed, Canceled, Deleting, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provisioning_state: Option<String>,
    /// Every entry of Azure's provisioningErrors.
    #[serde(default)]
    pub provisioning_errors: Vec<ProvisioningError>,
    /// ARM id of the compute in the workspace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compute_id: Option<String>,
    /// Fingerprint (sha256) of what the operator last pushed to Azure: the attach-relevant
    /// spec fields plus the referenced Secret's resourceVersion. A different value means the
    /// attachment is out of date and is re-attached. Set on adoption too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attached_config_hash: Option<String>,
    /// resourceVersion of the credentials Secret that was last pushed (not its contents).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_resource_version: Option<String>,
    /// The long-running Azure operation in flight, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<PendingOperation>,
    /// Fingerprint of a configuration Azure refused permanently (400, type refused); the
    /// operator does not PUT it again until the spec or the Secret changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejected_config_hash: Option<String>,
    /// The fingerprint the last preflight passed for (or was waived for, with `preflight: Warn`):
    /// the checks run again only before a PUT of another configuration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preflight_hash: Option<String>,
    /// `attachedConfigHash` for which the connection Secret was last written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_secret_hash: Option<String>,
    /// Name of the connection Secret this target created and controls. When
    /// `writeConnectionSecretToRef` is renamed or removed, only this Secret is deleted, and only
    /// if it is still controlled by this target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_secret_name: Option<String>,
}

impl TargetStatus {
    /// The `Ready` condition, if set.
    pub fn ready(&self) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.type_ == "Ready")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compute_name_rule_matches_azure() {
        for ok in [
            "gpu-dsvm",
            "abc",
            "a1-b",
            "x-1a",
            "A23456789012345678901234",
            "dsvm-v2",
        ] {
            assert!(is_valid_compute_name(ok), "{ok} should be valid");
        }
        for bad in [
            "ab",
            "1abc",
            "-abc",
            "dsvm-1",
            "dsvm-123",
            "a_bc",
            "a.bc",
            "A234567890123456789012345",
            "",
        ] {
            assert!(!is_valid_compute_name(bad), "{bad} should be invalid");
        }
    }
}
