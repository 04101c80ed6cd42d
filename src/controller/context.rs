//! Shared state of all controllers: clients, config, the compute-list cache, per-workspace ARM
//! connections, and read access to every kind's reflector store (for claims and lookups).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::channel::mpsc::UnboundedSender;
use kube::runtime::events::{Event, Recorder, Reporter};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, Resource, ResourceExt};
use secrecy::SecretString;

use crate::api::{CloudName, CredentialType, MLWorkspace, TargetStatus};
use crate::azure::{
    ArmClient, AzureConfig, Cloud, CloudEndpoints, ConfigError, CredentialError, CredentialFactory,
    CredentialSpec, EndpointOverrides, ManagedIdentityId, Throttle, WorkspaceRef,
};
use crate::controller::cache::ComputeListCache;
use crate::controller::claims::Claim;
use crate::controller::events::EventReason;
use crate::controller::secrets::{Credential, SecretError, Secrets};
use crate::controller::target::AttachTarget;
use crate::controller::watches::Synced;
use crate::ops::Metrics;

/// Lists every target's claim (one closure per kind and watched namespace).
/// Lists the claims on one underlying resource (its claim key), one closure per kind and
/// watched namespace. Filtering by the key first keeps a pass O(targets) in cheap comparisons
/// instead of building every target's claim (O(targets²) per resync).
pub type ClaimSource = Box<dyn Fn(&Context, &str) -> Vec<Claim> + Send + Sync>;

/// How long a released uid is remembered (far longer than a watch takes to deliver a delete).
const RELEASED_MEMORY: Duration = Duration::from_secs(600);

/// Shared controller state.
pub struct Context {
    /// Kubernetes client.
    pub client: Client,
    /// Operator-wide Azure configuration.
    pub azure: AzureConfig,
    /// Builds credentials.
    pub credentials: CredentialFactory,
    /// Client-side ARM budget shared by every workspace connection.
    pub throttle: Arc<Throttle>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Resync period.
    pub resync: Duration,
    /// Rule 7 cache.
    pub cache: ComputeListCache,
    /// events.k8s.io recorder.
    pub recorder: Recorder,
    /// Credential and connection Secrets (rule 12).
    pub secrets: Secrets,
    /// Resolves once every store a reconcile reads has listed once: nothing reconciles before,
    /// so a restart never judges a target by a half-filled store.
    pub synced: Synced,
    connections: Mutex<HashMap<(String, String), (String, ArmClient)>>,
    /// The last status this process wrote, by uid. The operator is the only writer of target
    /// status, so this is never older than the reflector's copy, which can lag our own write
    /// (and a stale copy must not cause a second PUT or DELETE).
    written_status: Mutex<HashMap<String, TargetStatus>>,
    /// Uids whose finalizer this process removed, and when: a stale store copy of such an
    /// object (still showing the finalizer) is not cleaned up a second time.
    released: Mutex<HashMap<String, Instant>>,
    workspaces: Vec<Store<MLWorkspace>>,
    claim_sources: Vec<ClaimSource>,
    workspace_triggers: Vec<WorkspaceTrigger>,
    /// Namespaces allowed to use the operator's own identity (`credential.type: Default`);
    /// empty means every namespace.
    default_credential_namespaces: Vec<String>,
}

/// Wakes one MLWorkspace controller: the namespace it watches (`None`: all) and its channel.
pub type WorkspaceTrigger = (Option<String>, UnboundedSender<ObjectRef<MLWorkspace>>);

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

impl Context {
    /// Builds the context. `workspaces` and `claim_sources` come from the controllers' stores.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        client: Client,
        azure: AzureConfig,
        credentials: CredentialFactory,
        throttle: Arc<Throttle>,
        metrics: Arc<Metrics>,
        resync: Duration,
        workspaces: Vec<Store<MLWorkspace>>,
        claim_sources: Vec<ClaimSource>,
        workspace_triggers: Vec<WorkspaceTrigger>,
        secrets: Secrets,
        synced: Synced,
    ) -> Self {
        let reporter = Reporter {
            controller: "azureml-attach".to_owned(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            secrets,
            synced,
            client,
            azure,
            credentials,
            throttle,
            metrics,
            resync,
            // A little under the resync period, so each resync of a target sees a fresh LIST.
            cache: ComputeListCache::new(resync.mul_f64(0.9)),
            connections: Mutex::default(),
            written_status: Mutex::default(),
            released: Mutex::default(),
            workspaces,
            claim_sources,
            workspace_triggers,
            default_credential_namespaces: Vec::new(),
        }
    }

    /// A target of `workspace` released its finalizer: if that MLWorkspace is being deleted
    /// (it waits for its targets, rule 9), reconcile it now instead of at its next requeue.
    pub fn target_released(&self, namespace: &str, workspace: &str) {
        let Some(ws) = self.workspace(namespace, workspace) else {
            return;
        };
        if ws.metadata.deletion_timestamp.is_none() {
            return;
        }
        let key = ObjectRef::from_obj(ws.as_ref());
        for (ns, tx) in &self.workspace_triggers {
            if ns.as_deref().is_none_or(|n| n == namespace) {
                // A closed channel means that controller stopped (shutdown): nothing to wake.
                let _ = tx.unbounded_send(key.clone());
            }
        }
    }

    /// Restricts `credential.type: Default` (the operator's own identity) to these namespaces;
    /// empty keeps it open to every namespace.
    pub fn with_default_credential_namespaces(mut self, namespaces: Vec<String>) -> Self {
        self.default_credential_namespaces = namespaces;
        self
    }

    /// The freshest known status of the object `uid`: ours if we wrote one, else `from_store`.
    pub fn fresh_status(&self, uid: &str, from_store: Option<&TargetStatus>) -> TargetStatus {
        let memo = self
            .written_status
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        memo.get(uid)
            .cloned()
            .or_else(|| from_store.cloned())
            .unwrap_or_default()
    }

    /// Remembers the status just written (or forgets it when `None`: object released).
    pub fn remember_status(&self, uid: &str, status: Option<TargetStatus>) {
        let mut memo = self
            .written_status
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match status {
            Some(s) => memo.insert(uid.to_owned(), s),
            None => memo.remove(uid),
        };
    }

    /// Records that the finalizer of `uid` was removed by this process.
    pub fn mark_released(&self, uid: &str) {
        let mut released = self.lock_released();
        let now = Instant::now();
        // Watches deliver the deletion within seconds; older tombstones only cost memory.
        released.retain(|_, at| now.duration_since(*at) < RELEASED_MEMORY);
        released.insert(uid.to_owned(), now);
    }

    /// Whether this process already removed the finalizer of `uid` (its store copy is stale).
    pub fn was_released(&self, uid: &str) -> bool {
        self.lock_released().contains_key(uid)
    }

    fn lock_released(&self) -> std::sync::MutexGuard<'_, HashMap<String, Instant>> {
        self.released
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The MLWorkspace `name` in `namespace`, from the reflector stores.
    pub fn workspace(&self, namespace: &str, name: &str) -> Option<Arc<MLWorkspace>> {
        let key = ObjectRef::new(name).within(namespace);
        self.workspaces.iter().find_map(|s| s.get(&key))
    }

    /// Every target's claim on the resource with claim key `resource`, across kinds and
    /// namespaces.
    pub fn claims_on(&self, resource: &str) -> Vec<Claim> {
        self.claim_sources
            .iter()
            .flat_map(|f| f(self, resource))
            .collect()
    }

    /// The claim of `obj`, if its workspace is known.
    pub fn claim_of<K: AttachTarget>(&self, obj: &K) -> Option<Claim> {
        let ns = obj.namespace()?;
        let ws = self.workspace(&ns, &obj.common().workspace_ref.name)?;
        Some(Claim {
            workspace: workspace_ref(&ws).arm_id().to_ascii_lowercase(),
            resource: obj.underlying().claim_key(),
            owner: format!("{} {}/{}", K::KIND, ns, obj.name_any()),
            uid: obj.uid().unwrap_or_default(),
            created: obj.meta().creation_timestamp.clone(),
        })
    }

    /// Publishes an event; failures are logged, never fatal.
    pub async fn event<K: Resource<DynamicType = ()>>(
        &self,
        obj: &K,
        reason: EventReason,
        note: String,
    ) {
        let ev = Event {
            type_: if reason.is_warning() {
                kube::runtime::events::EventType::Warning
            } else {
                kube::runtime::events::EventType::Normal
            },
            reason: reason.as_str().to_owned(),
            note: Some(note),
            action: reason.as_str().to_owned(),
            secondary: None,
        };
        if let Err(error) = self.recorder.publish(&ev, &obj.object_ref(&())).await {
            tracing::warn!(%error, reason = reason.as_str(), "cannot publish event");
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
        if let Some((fp, client)) = self.lock_connections().get(&key)
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
        self.lock_connections()
            .insert(key, (fingerprint, client.clone()));
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
                self.lock_connections()
                    .get(&key)
                    .map(|(_, client)| client.clone())
                    .ok_or(ConnectError::SecretNotFound(name))
            }
            other => other,
        }
    }

    fn lock_connections(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<(String, String), (String, ArmClient)>> {
        self.connections
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
mod default_credential_tests {
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
