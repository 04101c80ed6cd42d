//! Reaching Azure for a workspace: the ARM client of an MLWorkspace (its cloud, its credential,
//! the shared ARM budget), cached while the spec and the client-secret Secret are unchanged.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use kube::ResourceExt;
use secrecy::SecretString;

use crate::api::{CloudName, CredentialType, MLWorkspace};
use crate::azure::{
    ArmClient, AzureConfig, Cloud, CloudEndpoints, ConfigError, CredentialError, CredentialFactory,
    CredentialSpec, EndpointOverrides, ManagedIdentityId, Throttle, WorkspaceRef,
};
use crate::controller::secrets::{Credential, SecretError, Secrets};
use crate::ops::Metrics;

/// Why no ARM client could be made for a workspace.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The client-secret Secret does not exist.
    #[error("Secret {0:?} does not exist")]
    SecretNotFound(String),
    /// It exists but its owner did not opt it in (rule 12).
    #[error("{}", crate::controller::secrets::not_opted_in_message(.0))]
    SecretNotOptedIn(String),
    /// It lacks the key.
    #[error("Secret {secret:?} has no (non-empty) key {key:?}")]
    SecretKeyMissing {
        /// Secret.
        secret: String,
        /// Key.
        key: String,
    },
    /// The spec asks for something impossible (e.g. Custom cloud on an operator without one).
    #[error("{0}")]
    InvalidSpec(String),
    /// Endpoint resolution failed.
    #[error("invalid cloud endpoints")]
    Cloud(#[source] ConfigError),
    /// azure_identity refused the settings.
    #[error("cannot build the credential")]
    Credential(#[source] CredentialError),
    /// Kubernetes API failure.
    #[error("Kubernetes API error")]
    Kube(#[source] SecretError),
}

/// The ARM clients of every workspace, and what they are made from.
pub struct Connections {
    /// Operator-wide Azure configuration.
    pub azure: AzureConfig,
    /// Builds credentials.
    pub credentials: CredentialFactory,
    /// Client-side ARM budget shared by every workspace connection.
    pub throttle: Arc<Throttle>,
    metrics: Arc<Metrics>,
    secrets: Secrets,
    clients: Mutex<HashMap<(String, String), (String, ArmClient)>>,
    /// Namespaces allowed to use the operator's own identity (`credential.type: Default`);
    /// empty means every namespace.
    default_credential_namespaces: Vec<String>,
}

impl Connections {
    /// Restricts `credential.type: Default` (the operator's own identity) to these namespaces;
    /// empty keeps it open to every namespace.
    pub fn with_default_credential_namespaces(mut self, namespaces: Vec<String>) -> Self {
        self.default_credential_namespaces = namespaces;
        self
    }

    /// No client yet; `secrets` reads the client-secret Secrets.
    pub fn new(
        azure: AzureConfig,
        credentials: CredentialFactory,
        throttle: Arc<Throttle>,
        metrics: Arc<Metrics>,
        secrets: Secrets,
    ) -> Self {
        Self {
            azure,
            credentials,
            throttle,
            metrics,
            secrets,
            clients: Mutex::default(),
            default_credential_namespaces: Vec::new(),
        }
    }

    /// An ARM client for `ws`, cached while its spec and client-secret Secret are unchanged.
    pub async fn arm_for(&self, ws: &MLWorkspace) -> Result<ArmClient, ConnectError> {
        let ns = ws.namespace().unwrap_or_default();
        default_credential_allowed(
            ws.spec.credential.type_,
            &ns,
            &self.default_credential_namespaces,
        )
        .map_err(ConnectError::InvalidSpec)?;
        let key = (ns.clone(), ws.name_any());
        let secret_ref = ws
            .spec
            .credential
            .client_secret
            .as_ref()
            .map(|c| c.secret_ref.clone());
        let secret_rv = match &secret_ref {
            Some(r) => match self
                .secrets
                .credential(&ns, &r.name)
                .await
                .map_err(ConnectError::Kube)?
            {
                Credential::OptedIn(rv) => rv,
                Credential::NotOptedIn => {
                    return Err(ConnectError::SecretNotOptedIn(r.name.clone()));
                }
                Credential::Missing => return Err(ConnectError::SecretNotFound(r.name.clone())),
            },
            None => None,
        };
        let fingerprint = format!(
            "{}|{}",
            serde_json::to_string(&ws.spec).unwrap_or_default(),
            secret_rv.unwrap_or_default()
        );
        if let Some((fp, client)) = self.lock().get(&key)
            && *fp == fingerprint
        {
            return Ok(client.clone());
        }
        let config = self.config_for(ws.spec.cloud)?;
        let spec = credential_spec(ws);
        let client_secret = match &secret_ref {
            Some(r) => Some(self.read_secret_key(&ns, &r.name, &r.key).await?),
            None => None,
        };
        let credential = self
            .credentials
            .build(&spec, &config.endpoints, client_secret)
            .map_err(ConnectError::Credential)?;
        let client = ArmClient::new(
            &config,
            credential,
            self.throttle.clone(),
            Some(self.metrics.clone()),
        );
        self.lock().insert(key, (fingerprint, client.clone()));
        Ok(client)
    }

    /// Like [`Context::arm_for`], for a detach: when the client-secret Secret is gone (e.g.
    /// `kubectl delete -f dir/` removed it together with the workspace and its targets), the
    /// last connection made while it existed is still used. Only a detach gets this: nothing
    /// new is ever attached with a credential whose Secret was deleted.
    pub async fn arm_for_detach(&self, ws: &MLWorkspace) -> Result<ArmClient, ConnectError> {
        match self.arm_for(ws).await {
            Err(ConnectError::SecretNotFound(name)) => {
                let key = (ws.namespace().unwrap_or_default(), ws.name_any());
                self.lock()
                    .get(&key)
                    .map(|(_, client)| client.clone())
                    .ok_or(ConnectError::SecretNotFound(name))
            }
            other => other,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), (String, ArmClient)>> {
        self.clients
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn config_for(&self, cloud: Option<CloudName>) -> Result<AzureConfig, ConnectError> {
        let wanted = match cloud {
            None => return Ok(self.azure.clone()),
            Some(CloudName::AzurePublic) => Cloud::AzurePublic,
            Some(CloudName::AzureChina) => Cloud::AzureChina,
            Some(CloudName::AzureUSGovernment) => Cloud::AzureUSGovernment,
            Some(CloudName::Custom) => Cloud::Custom,
        };
        if wanted == self.azure.cloud {
            return Ok(self.azure.clone());
        }
        if wanted == Cloud::Custom {
            return Err(ConnectError::InvalidSpec(
                "spec.cloud is Custom but the operator was not started with custom endpoints (--cloud Custom)".to_owned(),
            ));
        }
        // Endpoints of a named cloud only: a namespace can never point the operator's token elsewhere.
        let endpoints = CloudEndpoints::resolve(wanted, &EndpointOverrides::default())
            .map_err(ConnectError::Cloud)?;
        Ok(self.azure.with_endpoints(wanted, endpoints))
    }

    /// Reads one key of an opted-in Secret, right before use; the data is not kept.
    pub async fn read_secret_key(
        &self,
        ns: &str,
        name: &str,
        key: &str,
    ) -> Result<SecretString, ConnectError> {
        let data = match self
            .secrets
            .read_credential(ns, name)
            .await
            .map_err(ConnectError::Kube)?
        {
            Ok(d) => d,
            Err(Credential::NotOptedIn) => {
                return Err(ConnectError::SecretNotOptedIn(name.to_owned()));
            }
            Err(_) => return Err(ConnectError::SecretNotFound(name.to_owned())),
        };
        data.text(name, key)
            .map_err(|_| ConnectError::SecretKeyMissing {
                secret: name.to_owned(),
                key: key.to_owned(),
            })
    }
}

/// The Azure workspace an MLWorkspace names.
pub fn workspace_ref(ws: &MLWorkspace) -> WorkspaceRef {
    WorkspaceRef::new(
        &ws.spec.subscription_id,
        &ws.spec.resource_group,
        &ws.spec.workspace_name,
    )
}

/// Whether a workspace in `namespace` may use `credential` given the operator's allow-list for
/// its own identity (empty = every namespace). The operator's identity is shared by the whole
/// cluster, so a platform team can keep it to the namespaces it trusts.
pub fn default_credential_allowed(
    credential: CredentialType,
    namespace: &str,
    allowed: &[String],
) -> Result<(), String> {
    if credential != CredentialType::Default
        || allowed.is_empty()
        || allowed.iter().any(|n| n == namespace)
    {
        return Ok(());
    }
    Err(format!(
        "namespace {namespace:?} may not use the operator's own identity (credential.type Default): \
         use WorkloadIdentity, ClientSecret or ManagedIdentity, or ask the operator's admins to add \
         the namespace to --default-credential-namespaces"
    ))
}

/// The credential an MLWorkspace asks for.
pub fn credential_spec(ws: &MLWorkspace) -> CredentialSpec {
    let c = &ws.spec.credential;
    match c.type_ {
        CredentialType::Default => CredentialSpec::OperatorDefault,
        CredentialType::WorkloadIdentity => CredentialSpec::WorkloadIdentity {
            tenant_id: c.workload_identity.as_ref().map(|w| w.tenant_id.clone()),
            client_id: c.workload_identity.as_ref().map(|w| w.client_id.clone()),
        },
        CredentialType::ClientSecret => CredentialSpec::ClientSecret {
            tenant_id: c
                .client_secret
                .as_ref()
                .map(|s| s.tenant_id.clone())
                .unwrap_or_default(),
            client_id: c
                .client_secret
                .as_ref()
                .map(|s| s.client_id.clone())
                .unwrap_or_default(),
        },
        CredentialType::ManagedIdentity => CredentialSpec::ManagedIdentity {
            user_assigned: c
                .managed_identity
                .as_ref()
                .and_then(|m| m.client_id.clone())
                .map(ManagedIdentityId::ClientId),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_credential_is_open_unless_restricted() {
        let none: Vec<String> = Vec::new();
        let team_a = vec!["team-a".to_owned()];
        assert!(default_credential_allowed(CredentialType::Default, "x", &none).is_ok());
        assert!(default_credential_allowed(CredentialType::Default, "team-a", &team_a).is_ok());
        let refused = default_credential_allowed(CredentialType::Default, "team-b", &team_a)
            .expect_err("team-b is not listed");
        assert!(
            refused.contains("--default-credential-namespaces"),
            "{refused}"
        );
        // Credentials a namespace brings itself are never restricted.
        assert!(
            default_credential_allowed(CredentialType::ClientSecret, "team-b", &team_a).is_ok()
        );
        assert!(
            default_credential_allowed(CredentialType::WorkloadIdentity, "team-b", &team_a).is_ok()
        );
    }
}
