//! Shared state of all controllers, in named parts: the Kubernetes client and event recorder,
//! reaching Azure for a workspace ([`Connections`]), Secrets ([`Secrets`]), the status memo
//! ([`StatusMemo`]), the compute-list cache, the claim index and the workspace stores.

use std::sync::Arc;
use std::time::Duration;

use futures::channel::mpsc::UnboundedSender;
use kube::runtime::events::{Event, Reporter};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, Resource, ResourceExt};

use crate::api::MLWorkspace;
use crate::azure::{AzureConfig, CredentialFactory, Throttle};
use crate::controller::cache::ComputeListCache;
use crate::controller::claims::Claim;
use crate::controller::connect::{Connections, workspace_ref};
use crate::controller::events::{EventReason, Events};
use crate::controller::memo::StatusMemo;
use crate::controller::secrets::Secrets;
use crate::controller::target::AttachTarget;
use crate::controller::watches::Synced;
use crate::ops::Metrics;

/// Lists the claims on one underlying resource (its claim key), one closure per kind and
/// watched namespace. Filtering by the key first keeps a pass O(targets) in cheap comparisons
/// instead of building every target's claim (O(targets²) per resync).
pub type ClaimSource = Box<dyn Fn(&Context, &str) -> Vec<Claim> + Send + Sync>;

/// Shared controller state.
pub struct Context {
    /// Kubernetes client.
    pub client: Client,
    /// Reaching Azure for a workspace (`connect.rs`).
    pub arm: Connections,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Resync period.
    pub resync: Duration,
    /// Rule 7 cache.
    pub cache: ComputeListCache,
    /// events.k8s.io recorder (renewed when its cache holds nothing current).
    pub events: Events,
    /// Credential and connection Secrets (rule 12).
    pub secrets: Secrets,
    /// Resolves once every store a reconcile reads has listed once: nothing reconciles before,
    /// so a restart never judges a target by a half-filled store.
    pub synced: Synced,
    /// What this process wrote and released (`memo.rs`).
    pub memo: StatusMemo,
    workspaces: Vec<Store<MLWorkspace>>,
    claim_sources: Vec<ClaimSource>,
    workspace_triggers: Vec<WorkspaceTrigger>,
}

/// Wakes one MLWorkspace controller: the namespace it watches (`None`: all) and its channel.
pub type WorkspaceTrigger = (Option<String>, UnboundedSender<ObjectRef<MLWorkspace>>);

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
            events: Events::new(client.clone(), reporter),
            arm: Connections::new(
                azure,
                credentials,
                throttle,
                metrics.clone(),
                secrets.clone(),
            ),
            secrets,
            synced,
            client,
            metrics,
            resync,
            // A little under the resync period, so each resync of a target sees a fresh LIST.
            cache: ComputeListCache::new(resync.mul_f64(0.9)),
            memo: StatusMemo::default(),
            workspaces,
            claim_sources,
            workspace_triggers,
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
        self.arm = self.arm.with_default_credential_namespaces(namespaces);
        self
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
        if let Err(error) = self.events.publish(&ev, &obj.object_ref(&())).await {
            tracing::warn!(%error, reason = reason.as_str(), "cannot publish event");
        }
    }
}
