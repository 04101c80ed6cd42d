//! The trait every target kind implements, and what it needs from a Secret.
//!
//! A kind says: which Azure `computeType` it is, which underlying resource it attaches, which
//! spec fields force a re-attach when they change, and how to build the type-specific ARM
//! body from its spec and the referenced Secret's data. Everything else (planning, Azure
//! calls, status, events) is generic in `reconcile.rs`.

use std::collections::BTreeMap;
use std::fmt::Debug;

use k8s_openapi::ByteString;
use k8s_openapi::NamespaceResourceScope;
use kube::Resource;
use kube::core::object::{HasSpec, HasStatus};
use secrecy::SecretString;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::api::{SshCredentials, TargetCommon, TargetSpec, TargetStatus};
use crate::azure::models::{
    AdministratorAccount, Compute, ComputeProperties, ComputeResource, ComputeSecrets, ComputeType,
    ManagedServiceIdentity,
};

/// The `data` of a Secret, read right before a PUT and dropped right after. `Debug` shows
/// only the keys.
pub struct SecretData(pub BTreeMap<String, ByteString>);

impl Debug for SecretData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

impl SecretData {
    /// The value of `key` as text (a redacting type), or which key is missing.
    pub fn text(&self, secret: &str, key: &str) -> Result<SecretString, BuildError> {
        let bytes = self
            .0
            .get(key)
            .ok_or_else(|| BuildError::SecretKeyMissing {
                secret: secret.to_owned(),
                key: key.to_owned(),
            })?;
        let text =
            String::from_utf8(bytes.0.clone()).map_err(|_| BuildError::SecretKeyNotText {
                secret: secret.to_owned(),
                key: key.to_owned(),
            })?;
        if text.is_empty() {
            return Err(BuildError::SecretKeyMissing {
                secret: secret.to_owned(),
                key: key.to_owned(),
            });
        }
        Ok(SecretString::from(text))
    }
}

/// Why a body could not be built. Messages name Secrets and keys, never values.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BuildError {
    /// A key the target needs is absent or empty.
    #[error("Secret {secret:?} has no (non-empty) key {key:?}")]
    SecretKeyMissing {
        /// Secret name.
        secret: String,
        /// Missing key.
        key: String,
    },
    /// A key holds bytes that are not UTF-8.
    #[error("key {key:?} of Secret {secret:?} is not UTF-8 text")]
    SecretKeyNotText {
        /// Secret name.
        secret: String,
        /// Key.
        key: String,
    },
    /// The spec cannot be turned into a body (CRD validation bypassed or too weak).
    #[error("invalid spec: {0}")]
    InvalidSpec(String),
}

/// The body of the PUT that attaches `obj` (rule 10: `secret` is read right before and dropped
/// right after). `location` is the workspace's.
pub fn attach_body<K: AttachTarget>(
    obj: &K,
    secret: Option<&SecretData>,
    location: Option<String>,
) -> Result<ComputeResource, BuildError> {
    let mut compute = Compute::new(K::compute_type(), obj.underlying().resource_id());
    compute.properties = obj.build_properties(secret)?;
    Ok(ComputeResource {
        location,
        identity: obj.identity(),
        properties: Some(compute),
        ..Default::default()
    })
}

/// The ARM reads preflight makes (each with the resource's ARM id).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PreflightRead {
    /// The VM, its primary NIC and the NIC's public IP.
    VirtualMachine(String),
    /// The HDInsight cluster.
    HdInsight(String),
    /// The managed or connected cluster and its extensions.
    Kubernetes(String),
    /// The Synapse Spark pool.
    SynapsePool(String),
}

/// What the target attaches: an ARM resource or (remote VMs only) a bare address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Underlying {
    /// An ARM resource id.
    ResourceId(String),
    /// A host name or IP (RemoteVmTarget without resourceId).
    Address(String),
}

impl Underlying {
    /// The key of a claim on this resource (case-insensitive, as ARM ids are).
    pub fn claim_key(&self) -> String {
        match self {
            Underlying::ResourceId(id) => id.trim_end_matches('/').to_ascii_lowercase(),
            Underlying::Address(a) => format!("address:{}", a.to_ascii_lowercase()),
        }
    }

    /// Whether [`Underlying::claim_key`] is `key`, without allocating.
    pub fn has_claim_key(&self, key: &str) -> bool {
        match self {
            Underlying::ResourceId(id) => id.trim_end_matches('/').eq_ignore_ascii_case(key),
            Underlying::Address(a) => key
                .strip_prefix("address:")
                .is_some_and(|k| k.eq_ignore_ascii_case(a)),
        }
    }

    /// The ARM `properties.resourceId` to send, if any.
    pub fn resource_id(&self) -> Option<String> {
        match self {
            Underlying::ResourceId(id) => Some(id.clone()),
            Underlying::Address(_) => None,
        }
    }

    /// Whether an existing compute attaches this same resource.
    pub fn matches(&self, compute: &ComputeResource) -> bool {
        match self {
            Underlying::ResourceId(id) => compute.resource_id().is_some_and(|r| {
                r.trim_end_matches('/')
                    .eq_ignore_ascii_case(id.trim_end_matches('/'))
            }),
            Underlying::Address(a) => {
                compute_address(compute).is_some_and(|c| c.eq_ignore_ascii_case(a))
            }
        }
    }
}

/// The `address` of a VM or HDInsight compute, if Azure returned one.
pub fn compute_address(compute: &ComputeResource) -> Option<&str> {
    match compute.properties.as_ref()?.properties.as_ref()? {
        ComputeProperties::VirtualMachine(p) => p.address.as_deref(),
        ComputeProperties::HdInsight(p) => p.address.as_deref(),
        _ => None,
    }
}

/// A compute target kind. Implemented once per kind in `controller/kinds/`.
pub trait AttachTarget:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + HasSpec<Spec: TargetSpec>
    + HasStatus<Status = TargetStatus>
    + Clone
    + Debug
    + Serialize
    + DeserializeOwned
    + Send
    + Sync
    + 'static
{
    /// Kind name, for logs, events and metrics.
    const KIND: &'static str;

    /// The Azure `computeType`.
    fn compute_type() -> ComputeType;

    /// The shared spec fields.
    fn common(&self) -> &TargetCommon {
        self.spec().common()
    }

    /// The status, if any.
    fn target_status(&self) -> Option<&TargetStatus> {
        self.status()
    }

    /// The underlying resource this target attaches.
    fn underlying(&self) -> Underlying;

    /// Name of the Secret whose data goes into the body, if any.
    fn secret_name(&self) -> Option<&str>;

    /// The spec fields Azure cannot update in place; a change re-attaches. The referenced
    /// Secret's resourceVersion is added by the reconciler.
    fn attach_fingerprint(&self) -> serde_json::Value;

    /// Builds `properties.properties` from the spec and the Secret's data.
    fn build_properties(
        &self,
        secret: Option<&SecretData>,
    ) -> Result<Option<ComputeProperties>, BuildError>;

    /// Extra keys for the connection Secret (besides the ids), from listKeys.
    fn connection_data(&self, keys: &ComputeSecrets) -> BTreeMap<String, SecretString> {
        let mut out = BTreeMap::new();
        if let Some(account) = &keys.administrator_account {
            admin_account_data(account, &mut out);
        }
        if let Some(token) = &keys.databricks_access_token {
            out.insert("databricksAccessToken".to_owned(), token.clone());
        }
        out
    }

    /// Whether Azure's 400 to a PUT (with this error code) refuses the compute type itself
    /// (`ComputeTypeRefused`) rather than this spec (`InvalidSpec`).
    fn refuses_type(code: Option<&str>) -> bool {
        code.is_some_and(|c| c.to_ascii_lowercase().contains("computetype"))
    }

    /// What preflight reads of the underlying resource before the first PUT, if anything.
    fn preflight_read(&self) -> Option<PreflightRead> {
        None
    }

    /// The compute's managed identity, for the kinds that have one.
    fn identity(&self) -> Option<ManagedServiceIdentity> {
        None
    }

    /// The compute name in the workspace.
    fn compute_name(&self) -> String {
        self.common()
            .compute_name
            .clone()
            .unwrap_or_else(|| self.meta().name.clone().unwrap_or_default())
    }
}

fn admin_account_data(account: &AdministratorAccount, out: &mut BTreeMap<String, SecretString>) {
    if let Some(u) = &account.username {
        out.insert("username".to_owned(), SecretString::from(u.clone()));
    }
    if let Some(p) = &account.password {
        out.insert("password".to_owned(), p.clone());
    }
    if let Some(k) = &account.private_key_data {
        out.insert("privateKey".to_owned(), k.clone());
    }
    if let Some(k) = &account.public_key_data {
        out.insert("publicKey".to_owned(), k.clone());
    }
}

/// The SSH login from a Secret, per `credentials`.
pub fn ssh_account(
    credentials: &SshCredentials,
    secret: Option<&SecretData>,
) -> Result<AdministratorAccount, BuildError> {
    let name = credentials.secret_ref.name.as_str();
    let data =
        secret.ok_or_else(|| BuildError::InvalidSpec(format!("Secret {name:?} was not read")))?;
    let username =
        secrecy::ExposeSecret::expose_secret(&data.text(name, &credentials.username_key)?)
            .to_owned();
    let mut account = AdministratorAccount {
        username: Some(username),
        ..Default::default()
    };
    match (&credentials.password_key, &credentials.private_key_key) {
        (Some(key), None) => account.password = Some(data.text(name, key)?),
        (None, Some(key)) => account.private_key_data = Some(data.text(name, key)?),
        _ => {
            return Err(BuildError::InvalidSpec(
                "set exactly one of credentials.passwordKey or credentials.privateKeyKey"
                    .to_owned(),
            ));
        }
    }
    Ok(account)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn has_claim_key_agrees_with_claim_key() {
        for u in [
            Underlying::ResourceId("/Subscriptions/S/rg/VM1/".into()),
            Underlying::Address("Host.Example".into()),
        ] {
            assert!(u.has_claim_key(&u.claim_key()));
            assert!(!u.has_claim_key("something-else"));
        }
    }
    use crate::api::LocalSecretRef;
    use secrecy::ExposeSecret;

    fn data(pairs: &[(&str, &str)]) -> SecretData {
        SecretData(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                .collect(),
        )
    }

    fn creds(password: bool) -> SshCredentials {
        SshCredentials {
            secret_ref: LocalSecretRef { name: "ssh".into() },
            username_key: "username".into(),
            password_key: password.then(|| "password".into()),
            private_key_key: (!password).then(|| "privateKey".into()),
        }
    }

    #[test]
    fn ssh_account_reads_password_or_key() {
        let d = data(&[
            ("username", "azureuser"),
            ("password", "pw"),
            ("privateKey", "KEY"),
        ]);
        let a = ssh_account(&creds(true), Some(&d)).unwrap();
        assert_eq!(a.password.unwrap().expose_secret(), "pw");
        assert!(a.private_key_data.is_none());
        let b = ssh_account(&creds(false), Some(&d)).unwrap();
        assert_eq!(b.private_key_data.unwrap().expose_secret(), "KEY");
        assert!(b.password.is_none());
    }

    #[test]
    fn missing_key_names_the_key_not_a_value() {
        let d = data(&[("username", "azureuser")]);
        let err = ssh_account(&creds(true), Some(&d)).unwrap_err();
        assert_eq!(
            err,
            BuildError::SecretKeyMissing {
                secret: "ssh".into(),
                key: "password".into()
            }
        );
        assert!(format!("{:?}", d).contains("username"));
    }

    #[test]
    fn claim_keys_ignore_case() {
        let a = Underlying::ResourceId(
            "/subscriptions/X/resourceGroups/RG/providers/Microsoft.Compute/virtualMachines/VM"
                .into(),
        );
        let b = Underlying::ResourceId(
            "/subscriptions/x/resourcegroups/rg/providers/microsoft.compute/virtualmachines/vm/"
                .into(),
        );
        assert_eq!(a.claim_key(), b.claim_key());
    }
}
