//! The controllers: one generic reconciler over [`target::AttachTarget`] (one small file per
//! kind in `kinds/`), the `MLWorkspace` reconciler, and their wiring.
//!
//! Reconcile = pure planning ([`plan`]) + effects ([`reconcile`]).

pub mod cache;
pub mod claims;
pub mod conditions;
pub mod connect;
pub mod context;
pub mod error;
pub mod events;
pub mod failure;
pub mod kinds;
pub mod leader;
pub mod memo;
pub mod plan;
pub mod reconcile;
pub mod secrets;
pub mod settle;
pub mod target;
pub mod watches;
pub mod workspace;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::future::{BoxFuture, Shared};
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::Secret;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{Config as ControllerConfig, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};

use crate::api::MLWorkspace;
use crate::azure::{AzureConfig, CredentialFactory, Throttle};
use crate::ops::{Metrics, Readiness};
use claims::ClaimIndex;
use context::{ClaimSource, Context};
use secrets::Secrets;
use target::AttachTarget;
use watches::{SharedWatch, Synced};

/// Controller settings parsed once from the command line.
#[derive(Clone, Debug)]
pub struct ControllerSettings {
    /// How often every target is re-checked (and each workspace LISTed).
    pub resync: Duration,
    /// Namespaces to watch; empty means all.
    pub namespaces: Vec<String>,
    /// Parallel reconciles per controller.
    pub concurrency: u16,
    /// Namespaces allowed to use the operator's own identity; empty means all.
    pub default_credential_namespaces: Vec<String>,
}

type Shutdown = Shared<BoxFuture<'static, ()>>;
type Runner = BoxFuture<'static, ()>;
type StateSource = Box<dyn Fn() -> Vec<String> + Send + Sync>;
type Starter = Box<dyn FnOnce(Arc<Context>, Shutdown) -> Runner + Send>;

fn api_for<K>(client: &Client, ns: Option<&str>) -> Api<K>
where
    K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>,
{
    match ns {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// `<what> in <namespace>` (or `in all namespaces`): a watch's name in logs.
fn watch_name(what: &str, ns: Option<&str>) -> String {
    match ns {
        Some(ns) => format!("{what} in {ns}"),
        None => format!("{what} in all namespaces"),
    }
}

/// The watches of one namespace (or all) that several controllers share: credential Secrets
/// (metadata only, opted-in ones only: rule 10 and 12) and MLWorkspaces.
struct NamespaceWatches {
    secrets: SharedWatch<PartialObjectMeta<Secret>>,
    /// The connection Secrets the operator wrote (owned children: a deleted one is restored).
    connections: SharedWatch<PartialObjectMeta<Secret>>,
    workspaces: SharedWatch<MLWorkspace>,
}

impl NamespaceWatches {
    fn new(client: &Client, ns: Option<&str>) -> Self {
        let labelled = watcher::Config::default().labels(secrets::CREDENTIAL_SELECTOR);
        Self {
            // `Api<PartialObjectMeta<_>>` lists and watches metadata only: no data on the wire.
            secrets: SharedWatch::new(
                watch_name("credential secrets", ns),
                watcher(api_for::<PartialObjectMeta<Secret>>(client, ns), labelled),
            ),
            connections: SharedWatch::new(
                watch_name("connection secrets", ns),
                watcher(
                    api_for::<PartialObjectMeta<Secret>>(client, ns),
                    watcher::Config::default().labels(secrets::CONNECTION_SELECTOR),
                ),
            ),
            workspaces: SharedWatch::new(
                watch_name("mlworkspaces", ns),
                watcher(
                    api_for::<MLWorkspace>(client, ns),
                    watcher::Config::default(),
                ),
            ),
        }
    }
}

/// Everything being assembled before the controllers start.
struct Pending {
    claim_sources: Vec<ClaimSource>,
    /// Per kind: the Ready reason of every object (for the `targets{kind,state}` gauge).
    states: Vec<(&'static str, StateSource)>,
    starters: Vec<Starter>,
    /// Watches to drive (one per resource type and namespace).
    watches: Vec<Box<dyn FnOnce(Shutdown, Readiness) -> Runner + Send>>,
    /// Every store a reconcile reads (by the watch's name).
    syncs: Vec<(String, BoxFuture<'static, ()>)>,
}

impl Pending {
    fn watch<K>(&mut self, watch: SharedWatch<K>)
    where
        K: kube::Resource<DynamicType = ()> + Clone + std::fmt::Debug + Send + Sync + 'static,
    {
        self.syncs
            .push((watch.name().to_owned(), watches::ready_of(&watch.store())));
        self.watches
            .push(Box::new(move |stop, health| watch.run(stop, health)));
    }

    /// A target controller for one namespace (or all): triggers on the target, on its
    /// MLWorkspace, and on its Secret's metadata.
    fn add<K: AttachTarget + Unpin>(
        &mut self,
        client: &Client,
        ns: Option<&str>,
        shared: &mut NamespaceWatches,
        settings: &ControllerSettings,
    ) {
        let mut own = SharedWatch::new(
            watch_name(&K::plural(&()), ns),
            watcher(api_for::<K>(client, ns), watcher::Config::default()),
        );
        let store = own.store();
        let index = ClaimIndex::<K>::default();
        let (feed, listed) = (index.clone(), store.clone());
        own.on_event(move |event| feed.update(event, &listed));
        let controller = Controller::for_stream(own.subscribe(), store.clone())
            .with_config(ControllerConfig::default().concurrency(settings.concurrency));
        self.watch(own);
        let by_secret = store.clone();
        let by_workspace = store.clone();
        let controller = controller
            .owns_stream(shared.connections.subscribe())
            .watches_stream(shared.secrets.subscribe(), move |secret| {
                let (sns, sname) = (secret.namespace(), secret.name_any());
                by_secret
                    .state()
                    .into_iter()
                    .filter(|t| t.namespace() == sns && t.secret_name() == Some(sname.as_str()))
                    .map(|t| ObjectRef::from_obj(t.as_ref()))
                    .collect::<Vec<_>>()
            })
            .watches_stream(shared.workspaces.subscribe(), move |ws| {
                let (wns, wname) = (ws.namespace(), ws.name_any());
                by_workspace
                    .state()
                    .into_iter()
                    .filter(|t| t.namespace() == wns && t.common().workspace_ref.name == wname)
                    .map(|t| ObjectRef::from_obj(t.as_ref()))
                    .collect::<Vec<_>>()
            });
        self.claim_sources.push(claim_source(store.clone(), index));
        self.states.push((
            K::KIND,
            Box::new(move || {
                store
                    .state()
                    .iter()
                    .map(|o| {
                        o.target_status()
                            .and_then(|s| s.ready())
                            .map_or_else(|| "Pending".to_owned(), |c| c.reason.clone())
                    })
                    .collect()
            }),
        ));
        self.starters.push(Box::new(move |ctx, shutdown| {
            controller
                .graceful_shutdown_on(shutdown)
                .run(reconcile::reconcile::<K>, reconcile::error_policy::<K>, ctx)
                .for_each(|r| {
                    if let Err(error) = r {
                        tracing::debug!(kind = K::KIND, error = %error::chain(&error), "controller event");
                    }
                    std::future::ready(())
                })
                .boxed()
        }));
    }
}

/// Adds one controller per target kind (the registry's) for one namespace (or all).
struct AddController<'a> {
    pending: &'a mut Pending,
    client: &'a Client,
    ns: Option<&'a str>,
    shared: &'a mut NamespaceWatches,
    settings: &'a ControllerSettings,
}

impl kinds::KindVisitor for AddController<'_> {
    fn visit<K: AttachTarget + kube::CustomResourceExt + Unpin>(&mut self) {
        self.pending
            .add::<K>(self.client, self.ns, self.shared, self.settings);
    }
}

/// The claim source of one kind: its store and its claim index (see [`ClaimIndex`]).
pub fn claim_source<K: AttachTarget>(store: Store<K>, index: ClaimIndex<K>) -> ClaimSource {
    Box::new(move |ctx: &Context, resource: &str| {
        index
            .claimants(&store, resource)
            .iter()
            .filter_map(|o| ctx.claim_of(o.as_ref()))
            .collect()
    })
}

/// Runs every controller until `shutdown` completes; in-flight reconciles finish first.
/// `readiness` turns true once every store has listed once (no reconcile runs before).
pub async fn run(
    client: Client,
    azure: AzureConfig,
    metrics: Arc<Metrics>,
    settings: ControllerSettings,
    readiness: Readiness,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let shutdown: Shutdown = shutdown.boxed().shared();
    let namespaces: Vec<Option<String>> = if settings.namespaces.is_empty() {
        vec![None]
    } else {
        settings.namespaces.iter().cloned().map(Some).collect()
    };
    let mut pending = Pending {
        claim_sources: Vec::new(),
        states: Vec::new(),
        starters: Vec::new(),
        watches: Vec::new(),
        syncs: Vec::new(),
    };
    let mut workspace_controllers = Vec::new();
    let mut workspace_stores = Vec::new();
    let mut workspace_triggers = Vec::new();
    let mut secret_stores = Vec::new();
    let mut connection_stores = Vec::new();
    for ns in &namespaces {
        let ns = ns.as_deref();
        let mut shared = NamespaceWatches::new(&client, ns);
        kinds::for_each_kind(&mut AddController {
            pending: &mut pending,
            client: &client,
            ns,
            shared: &mut shared,
            settings: &settings,
        });

        // Woken when a target releases its finalizer, so a workspace being deleted (waiting
        // for its targets, rule 9) goes as soon as the last one does; no extra watches.
        let (trigger, released) = futures::channel::mpsc::unbounded();
        workspace_triggers.push((ns.map(str::to_owned), trigger));
        let store = shared.workspaces.store();
        let by_secret = store.clone();
        let controller = Controller::for_stream(shared.workspaces.subscribe(), store.clone())
            .with_config(ControllerConfig::default().concurrency(settings.concurrency))
            .reconcile_on(released)
            .watches_stream(shared.secrets.subscribe(), move |secret| {
                let (sns, sname) = (secret.namespace(), secret.name_any());
                by_secret
                    .state()
                    .into_iter()
                    .filter(|w| {
                        w.namespace() == sns
                            && w.spec
                                .credential
                                .client_secret
                                .as_ref()
                                .is_some_and(|c| c.secret_ref.name == sname)
                    })
                    .map(|w| ObjectRef::from_obj(w.as_ref()))
                    .collect::<Vec<_>>()
            });
        workspace_stores.push(store);
        workspace_controllers.push(controller);
        secret_stores.push(shared.secrets.store());
        connection_stores.push(shared.connections.store());
        pending.watch(shared.secrets);
        pending.watch(shared.connections);
        pending.watch(shared.workspaces);
    }

    let credentials = CredentialFactory::new(&azure);
    let throttle = Arc::new(Throttle::new(azure.throttle));
    let synced = Synced::new(std::mem::take(&mut pending.syncs));
    let ctx = Arc::new(
        Context::new(
            client.clone(),
            azure,
            credentials,
            throttle,
            metrics,
            settings.resync,
            workspace_stores,
            pending.claim_sources,
            workspace_triggers,
            Secrets::new(client, secret_stores, connection_stores),
            synced.clone(),
        )
        .with_default_credential_namespaces(settings.default_credential_namespaces.clone()),
    );

    let states = pending.states;
    let gauge_ctx = ctx.clone();
    let gauge_stop = shutdown.clone();
    let gauges = async move {
        let update = async {
            loop {
                tokio::time::sleep(Duration::from_secs(15)).await;
                publish_target_states(&gauge_ctx.metrics, &states);
                if gauge_ctx.events.expire() {
                    tracing::debug!("event recorder renewed: its cached events had all expired");
                }
            }
        };
        tokio::select! {
            _ = update => {}
            _ = gauge_stop => {}
        }
    }
    .boxed();
    let ready_stop = shutdown.clone();
    let flag = readiness.clone();
    let became_ready = async move {
        tokio::select! {
            _ = synced.wait_and_report(Duration::from_secs(15)) => {
                tracing::info!("every watch has listed once: reconciling");
                flag.set_ready(true);
            }
            _ = ready_stop => {}
        }
    }
    .boxed();

    let mut runners: Vec<Runner> = pending
        .watches
        .into_iter()
        .map(|run| run(shutdown.clone(), readiness.clone()))
        .collect();
    runners.extend(
        pending
            .starters
            .into_iter()
            .map(|start| start(ctx.clone(), shutdown.clone())),
    );
    for controller in workspace_controllers {
        runners.push(
            controller
                .graceful_shutdown_on(shutdown.clone())
                .run(workspace::reconcile, workspace::error_policy, ctx.clone())
                .for_each(|_| std::future::ready(()))
                .boxed(),
        );
    }
    runners.push(gauges);
    runners.push(became_ready);
    futures::future::join_all(runners).await;
}

/// Sets `targets{kind,state}` from the stores (state = the Ready reason).
fn publish_target_states(metrics: &Metrics, states: &[(&'static str, StateSource)]) {
    let mut by_kind: std::collections::BTreeMap<&str, std::collections::BTreeMap<String, i64>> =
        Default::default();
    for (kind, source) in states {
        let counts = by_kind.entry(kind).or_default();
        for state in source() {
            *counts.entry(state).or_default() += 1;
        }
    }
    for (kind, counts) in &by_kind {
        metrics.set_targets(kind, counts.iter().map(|(s, n)| (s.as_str(), *n)));
    }
}
