//! One watch per resource type and namespace, shared by every controller that needs it.
//!
//! A [`SharedWatch`] runs one watcher into one reflector store and hands every touched object
//! (applied *and* deleted, unlike kube-runtime's shared subscriptions, which drop deletions) to
//! each subscriber. Controllers read the store; their `watches_stream` triggers come from
//! [`SharedWatch::subscribe`]. Nothing reconciles before [`Synced`] says every store listed once.

use std::collections::BTreeSet;
use std::fmt::Debug;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

use futures::channel::mpsc::{UnboundedSender, unbounded};
use futures::future::{BoxFuture, Shared as SharedFuture};
use futures::stream::BoxStream;
use futures::{FutureExt, Stream, StreamExt};
use kube::Resource;
use kube::runtime::reflector::{self, Lookup, Store};
use kube::runtime::{WatchStreamExt, watcher};

use crate::ops::Readiness;

/// A watch of `K` feeding one store and any number of subscribers.
pub struct SharedWatch<K>
where
    K: Lookup + Clone + 'static,
    K::DynamicType: Eq + Hash + Clone,
{
    /// `<plural> in <namespace>` (or `in all namespaces`), for logs.
    name: String,
    store: Store<K>,
    writer: reflector::store::Writer<K>,
    events: BoxStream<'static, watcher::Result<watcher::Event<K>>>,
    subscribers: Vec<UnboundedSender<K>>,
    hooks: Vec<Hook<K>>,
}

/// Called with every watch event, after the store applied it and before subscribers see it.
type Hook<K> = Box<dyn Fn(&watcher::Event<K>) + Send + Sync>;

impl<K> SharedWatch<K>
where
    K: Resource + Lookup + Clone + Debug + Send + Sync + 'static,
    <K as Lookup>::DynamicType: Eq + Hash + Clone + Default + Send + Sync,
{
    /// A watch from `events` (`watcher(..)` or `metadata_watcher(..)` with its config). It backs
    /// off on errors by itself; managed fields are dropped before the store: the operator never
    /// reads them and they are most of an object's size.
    pub fn new(
        name: String,
        events: impl Stream<Item = watcher::Result<watcher::Event<K>>> + Send + 'static,
    ) -> Self {
        let (store, writer) = reflector::store();
        let events = events
            .default_backoff()
            .modify(|o: &mut K| o.meta_mut().managed_fields = None)
            .boxed();
        Self {
            name,
            store,
            writer,
            events,
            subscribers: Vec::new(),
            hooks: Vec::new(),
        }
    }

    /// What this watch watches, for logs.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The store this watch keeps current.
    pub fn store(&self) -> Store<K> {
        self.store.clone()
    }

    /// A stream of every object the watch touches, for `Controller::watches_stream`.
    pub fn subscribe(&mut self) -> impl Stream<Item = Result<K, watcher::Error>> + Send + 'static {
        let (tx, rx) = unbounded();
        self.subscribers.push(tx);
        rx.map(Ok)
    }

    /// Calls `hook` with every watch event in the watch's own task, after the store applied it:
    /// an index fed this way is complete once the store is ready (`InitDone`).
    pub fn on_event(&mut self, hook: impl Fn(&watcher::Event<K>) + Send + Sync + 'static) {
        self.hooks.push(Box::new(hook));
    }

    /// Drives the watch until `stop` resolves, telling `health` whether the API server answers
    /// (any event is an answer; a watch error is not).
    pub fn run(
        self,
        stop: SharedFuture<BoxFuture<'static, ()>>,
        health: Readiness,
    ) -> BoxFuture<'static, ()> {
        let Self {
            name,
            writer,
            events,
            subscribers,
            hooks,
            ..
        } = self;
        let events = events.inspect(move |e| health.api_reachable(answered(e)));
        let fan_out = reflector::reflector(writer, events).for_each(move |r| {
            match r {
                Ok(event) => {
                    for hook in &hooks {
                        hook(&event);
                    }
                    let obj = match event {
                        watcher::Event::Apply(o)
                        | watcher::Event::Delete(o)
                        | watcher::Event::InitApply(o) => o,
                        watcher::Event::Init | watcher::Event::InitDone => {
                            return std::future::ready(());
                        }
                    };
                    for tx in &subscribers {
                        // A closed receiver means its controller stopped (shutdown).
                        let _ = tx.unbounded_send(obj.clone());
                    }
                }
                // The watcher backs off (0.8 s doubling to 30 s) and resumes by itself. Said at
                // WARN: a watch that keeps failing (RBAC, a missing CRD) stops reconciles.
                Err(error) => tracing::warn!(watch = %name, %error, "watch error; retrying"),
            }
            std::future::ready(())
        });
        async move {
            tokio::select! {
                _ = fan_out => {}
                _ = stop => {}
            }
        }
        .boxed()
    }
}

/// Whether a watch result is an answer from the API server. An error status (429 "storage is
/// (re)initializing" for a CRD just created, 403, 410) is one: counted as unreachable, a quiet
/// kind whose watch then restarted cleanly sent no event to say so, and the operator stayed
/// not ready. Only a failure to reach the server (connection, TLS, timeout) is not an answer.
fn answered<K>(result: &watcher::Result<watcher::Event<K>>) -> bool {
    match result {
        Ok(_) | Err(watcher::Error::WatchError(_)) => true,
        Err(
            watcher::Error::InitialListFailed(e)
            | watcher::Error::WatchStartFailed(e)
            | watcher::Error::WatchFailed(e),
        ) => matches!(e, kube::Error::Api(_)),
        Err(_) => false,
    }
}

/// Resolves once every store it was given has listed once.
#[derive(Clone)]
pub struct Synced {
    all: SharedFuture<BoxFuture<'static, ()>>,
    /// The stores not listed yet, by name (for the log while waiting).
    pending: Arc<Mutex<BTreeSet<String>>>,
}

impl Synced {
    /// Waits for all of `waits` (each a store's name and its `wait_until_ready`).
    pub fn new(waits: Vec<(String, BoxFuture<'static, ()>)>) -> Self {
        let pending = Arc::new(Mutex::new(
            waits
                .iter()
                .map(|(n, _)| n.clone())
                .collect::<BTreeSet<_>>(),
        ));
        let each = waits.into_iter().map(|(name, wait)| {
            let pending = pending.clone();
            async move {
                wait.await;
                lock(&pending).remove(&name);
            }
        });
        Self {
            all: futures::future::join_all(each).map(|_| ()).boxed().shared(),
            pending,
        }
    }

    /// Already synced (for tests without stores).
    pub fn ready() -> Self {
        Self {
            all: futures::future::ready(()).boxed().shared(),
            pending: Arc::default(),
        }
    }

    /// Waits until every store has synced.
    pub async fn wait(&self) {
        self.all.clone().await;
    }

    /// Whether every store has synced.
    pub fn is_synced(&self) -> bool {
        self.all.peek().is_some()
    }

    /// The stores that have not listed yet.
    pub fn pending(&self) -> Vec<String> {
        lock(&self.pending).iter().cloned().collect()
    }

    /// Waits until every store has synced, saying every `every` which stores it still waits
    /// for (a LIST that never answers would otherwise leave a silent, unready operator).
    pub async fn wait_and_report(&self, every: std::time::Duration) {
        let started = std::time::Instant::now();
        loop {
            tokio::select! {
                () = self.wait() => return,
                () = tokio::time::sleep(every) => {
                    let pending = self.pending();
                    tracing::warn!(
                        waited_s = started.elapsed().as_secs(),
                        pending = ?pending,
                        "still waiting for the first list of {} watch(es): no reconcile before",
                        pending.len()
                    );
                }
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A store's readiness as a future for [`Synced::new`].
pub fn ready_of<K>(store: &Store<K>) -> BoxFuture<'static, ()>
where
    K: Lookup + Clone + Send + Sync + 'static,
    K::DynamicType: Eq + Hash + Clone + Send + Sync,
{
    let store = store.clone();
    async move {
        // A dropped writer means shutdown: nothing will reconcile anyway.
        let _ = store.wait_until_ready().await;
    }
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;

    #[test]
    fn an_error_status_is_an_answer_and_a_dead_connection_is_not() {
        let status = kube::core::Status::failure("storage is (re)initializing", "TooManyRequests")
            .with_code(429);
        let refused: watcher::Result<watcher::Event<ConfigMap>> = Err(
            watcher::Error::WatchStartFailed(kube::Error::Api(Box::new(status))),
        );
        assert!(answered(&refused));
        let unreachable: watcher::Result<watcher::Event<ConfigMap>> = Err(
            watcher::Error::WatchStartFailed(kube::Error::Service("connection refused".into())),
        );
        assert!(!answered(&unreachable));
        assert!(answered(&Ok(watcher::Event::<ConfigMap>::Init)));
    }
}
