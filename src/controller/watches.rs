//! One watch per resource type and namespace, shared by every controller that needs it.
//!
//! A [`SharedWatch`] runs one watcher into one reflector store and hands every touched object
//! (applied *and* deleted, unlike kube-runtime's shared subscriptions, which drop deletions) to
//! each subscriber. Controllers read the store; their `watches_stream` triggers come from
//! [`SharedWatch::subscribe`]. Nothing reconciles before [`Synced`] says every store listed once.

use std::fmt::Debug;
use std::hash::Hash;

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
        events: impl Stream<Item = watcher::Result<watcher::Event<K>>> + Send + 'static,
    ) -> Self {
        let (store, writer) = reflector::store();
        let events = events
            .default_backoff()
            .modify(|o: &mut K| o.meta_mut().managed_fields = None)
            .boxed();
        Self {
            store,
            writer,
            events,
            subscribers: Vec::new(),
            hooks: Vec::new(),
        }
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
            writer,
            events,
            subscribers,
            hooks,
            ..
        } = self;
        let events = events.inspect(move |e| health.api_reachable(e.is_ok()));
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
                // The watcher backs off and resumes by itself; the error is only logged.
                Err(error) => tracing::debug!(%error, "watch error; retrying"),
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

/// Resolves once every store it was given has listed once.
#[derive(Clone)]
pub struct Synced(SharedFuture<BoxFuture<'static, ()>>);

impl Synced {
    /// Waits for all of `waits` (each a store's `wait_until_ready`).
    pub fn new(waits: Vec<BoxFuture<'static, ()>>) -> Self {
        Self(
            futures::future::join_all(waits)
                .map(|_| ())
                .boxed()
                .shared(),
        )
    }

    /// Already synced (for tests without stores).
    pub fn ready() -> Self {
        Self(futures::future::ready(()).boxed().shared())
    }

    /// Waits until every store has synced.
    pub async fn wait(&self) {
        self.0.clone().await;
    }

    /// Whether every store has synced.
    pub fn is_synced(&self) -> bool {
        self.0.peek().is_some()
    }
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
