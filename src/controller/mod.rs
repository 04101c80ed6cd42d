//! The controllers: one generic reconciler over [`target::AttachTarget`] (one small file per
//! kind in `kinds/`), the `MLWorkspace` reconciler, and their wiring.
//!
//! Reconcile = pure planning ([`plan`]) + effects ([`reconcile`]).

pub mod cache;
pub mod claims;
pub mod conditions;
pub mod context;
pub mod error;
pub mod kinds;
pub mod leader;
pub mod plan;
pub mod reconcile;
pub mod target;
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
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};

use crate::api::{
    BatchTarget, DataLakeAnalyticsTarget, DatabricksTarget, HdInsightTarget, MLWorkspace,
    RemoteVmTarget,
};
use crate::azure::{AzureConfig, CredentialFactory, Throttle};
use crate::ops::Metrics;
use context::{ClaimSource, Context};
use target::AttachTarget;

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

/// Secrets by metadata only (rule 10): the resourceVersion tells that one changed.
fn secret_events(
    client: &Client,
    ns: Option<&str>,
) -> impl futures::Stream<Item = Result<PartialObjectMeta<Secret>, watcher::Error>> + Send + 'static
{
    let api: Api<PartialObjectMeta<Secret>> = match ns {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    watcher(api, watcher::Config::default())
        .default_backoff()
        .touched_objects()
}

/// A target controller for one namespace (or all): triggers on the target, on its
/// MLWorkspace, and on its Secret's metadata.
fn target_controller<K: AttachTarget + Unpin>(
    client: &Client,
    ns: Option<&str>,
    settings: &ControllerSettings,
) -> (Controller<K>, Store<K>) {
    let controller = Controller::new(api_for::<K>(client, ns), watcher::Config::default())
        .with_config(ControllerConfig::default().concurrency(settings.concurrency));
    let store = controller.store();
    let by_secret = store.clone();
    let by_workspace = store.clone();
    let controller = controller
        .watches_stream(secret_events(client, ns), move |secret| {
            let (sns, sname) = (secret.namespace(), secret.name_any());
            by_secret
                .state()
                .into_iter()
                .filter(|t| t.namespace() == sns && t.secret_name() == Some(sname.as_str()))
                .map(|t| ObjectRef::from_obj(t.as_ref()))
                .collect::<Vec<_>>()
        })
        .watches(
            api_for::<MLWorkspace>(client, ns),
            watcher::Config::default(),
            move |ws| {
                let (wns, wname) = (ws.namespace(), ws.name_any());
                by_workspace
                    .state()
                    .into_iter()
                    .filter(|t| t.namespace() == wns && t.common().workspace_ref.name == wname)
                    .map(|t| ObjectRef::from_obj(t.as_ref()))
                    .collect::<Vec<_>>()
            },
        );
    (controller, store)
}

fn claim_source<K: AttachTarget>(store: Store<K>) -> ClaimSource {
    Box::new(move |ctx: &Context| {
        store
            .state()
            .iter()
            .filter_map(|o| ctx.claim_of(o.as_ref()))
            .collect()
    })
}

/// Builds and runs one kind's controllers; returns their claim sources and runners.
struct Pending {
    claim_sources: Vec<ClaimSource>,
    /// Per kind: the Ready reason of every object (for the `targets{kind,state}` gauge).
    states: Vec<(&'static str, StateSource)>,
    starters: Vec<Starter>,
}

impl Pending {
    fn add<K: AttachTarget + Unpin>(
        &mut self,
        client: &Client,
        namespaces: &[Option<String>],
        settings: &ControllerSettings,
    ) {
        for ns in namespaces {
            let (controller, store) = target_controller::<K>(client, ns.as_deref(), settings);
            self.claim_sources.push(claim_source(store.clone()));
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
}

/// Runs every controller until `shutdown` completes; in-flight reconciles finish first.
pub async fn run(
    client: Client,
    azure: AzureConfig,
    metrics: Arc<Metrics>,
    settings: ControllerSettings,
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
    };
    pending.add::<RemoteVmTarget>(&client, &namespaces, &settings);
    pending.add::<HdInsightTarget>(&client, &namespaces, &settings);
    pending.add::<BatchTarget>(&client, &namespaces, &settings);
    pending.add::<DatabricksTarget>(&client, &namespaces, &settings);
    pending.add::<DataLakeAnalyticsTarget>(&client, &namespaces, &settings);

    let mut workspace_controllers = Vec::new();
    let mut workspace_stores = Vec::new();
    let mut workspace_triggers = Vec::new();
    for ns in &namespaces {
        // Woken when a target releases its finalizer, so a workspace being deleted (waiting
        // for its targets, rule 9) goes as soon as the last one does; no extra watches.
        let (trigger, released) = futures::channel::mpsc::unbounded();
        workspace_triggers.push((ns.clone(), trigger));
        let controller = Controller::new(
            api_for::<MLWorkspace>(&client, ns.as_deref()),
            watcher::Config::default(),
        )
        .with_config(ControllerConfig::default().concurrency(settings.concurrency))
        .reconcile_on(released);
        let store = controller.store();
        let by_secret = store.clone();
        let controller =
            controller.watches_stream(secret_events(&client, ns.as_deref()), move |secret| {
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
    }

    let credentials = CredentialFactory::new(&azure);
    let throttle = Arc::new(Throttle::new(azure.throttle));
    let ctx = Arc::new(
        Context::new(
            client,
            azure,
            credentials,
            throttle,
            metrics,
            settings.resync,
            workspace_stores,
            pending.claim_sources,
            workspace_triggers,
        )
        .with_default_credential_namespaces(settings.default_credential_namespaces.clone()),
    );

    let states = pending.states;
    let gauge_metrics = ctx.metrics.clone();
    let gauge_stop = shutdown.clone();
    let gauges = async move {
        let update = async {
            loop {
                tokio::time::sleep(Duration::from_secs(15)).await;
                publish_target_states(&gauge_metrics, &states);
            }
        };
        tokio::select! {
            _ = update => {}
            _ = gauge_stop => {}
        }
    }
    .boxed();

    let mut runners: Vec<Runner> = pending
        .starters
        .into_iter()
        .map(|start| start(ctx.clone(), shutdown.clone()))
        .collect();
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
