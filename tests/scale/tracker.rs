//! The benchmark's view of every target's `Ready` condition, from one LIST and one WATCH at a
//! time (each counted in [`Own`]), so that waiting costs the API server no polling.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use azureml_attach::api::BatchTarget;
use futures::{StreamExt, TryStreamExt};
use kube::api::{ListParams, WatchEvent, WatchParams};
use kube::{Api, Client, ResourceExt};

use crate::apiserver::{Own, key};

#[derive(Default)]
struct State {
    /// `namespace/name` → Ready is True.
    ready: HashMap<String, bool>,
    /// Ready True → anything else, since the last [`Tracker::take_transitions`].
    down: u64,
    /// When the last object turned Ready.
    last_ready: Option<Instant>,
}

#[derive(Clone)]
pub struct Tracker(Arc<Mutex<State>>);

fn is_ready(t: &BatchTarget) -> bool {
    t.status
        .as_ref()
        .and_then(|s| s.ready())
        .is_some_and(|c| c.status == "True")
}

fn id(t: &BatchTarget) -> String {
    format!("{}/{}", t.namespace().unwrap_or_default(), t.name_any())
}

impl Tracker {
    /// Starts watching BatchTargets in every namespace; returns once the first LIST is in.
    pub async fn start(client: Client, own: Own) -> Tracker {
        let tracker = Tracker(Arc::default());
        let api: Api<BatchTarget> = Api::all(client);
        let rv = tracker.relist(&api, &own).await;
        let t = tracker.clone();
        tokio::spawn(async move {
            let mut rv = rv;
            loop {
                rv = match t.watch_once(&api, &own, &rv).await {
                    Some(next) => next,
                    None => t.relist(&api, &own).await,
                };
            }
        });
        tracker
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn apply(&self, t: &BatchTarget) {
        let ready = is_ready(t);
        let mut s = self.lock();
        let before = s.ready.insert(id(t), ready);
        if before == Some(true) && !ready {
            s.down += 1;
        }
        if ready && before != Some(true) {
            s.last_ready = Some(Instant::now());
        }
    }

    async fn relist(&self, api: &Api<BatchTarget>, own: &Own) -> String {
        let list = api
            .list(&ListParams::default())
            .await
            .expect("list BatchTargets");
        own.add(key("LIST", "attach.azureml.io", "batchtargets", ""), 1);
        let seen: std::collections::HashSet<String> = list.items.iter().map(id).collect();
        self.lock().ready.retain(|k, _| seen.contains(k));
        for t in &list.items {
            self.apply(t);
        }
        list.metadata.resource_version.unwrap_or_default()
    }

    /// One WATCH until the server ends it; `None` when the version expired (relist).
    async fn watch_once(&self, api: &Api<BatchTarget>, own: &Own, rv: &str) -> Option<String> {
        let mut rv = rv.to_owned();
        let stream = match api.watch(&WatchParams::default().timeout(290), &rv).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("tracker: watch failed: {e}");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                return Some(rv);
            }
        };
        let mut stream = stream.boxed();
        let mut expired = false;
        while let Ok(Some(event)) = stream.try_next().await {
            match event {
                WatchEvent::Added(t) | WatchEvent::Modified(t) => {
                    rv = t.resource_version().unwrap_or(rv);
                    self.apply(&t);
                }
                WatchEvent::Deleted(t) => {
                    rv = t.resource_version().unwrap_or(rv);
                    self.lock().ready.remove(&id(&t));
                }
                WatchEvent::Bookmark(b) => rv = b.metadata.resource_version,
                WatchEvent::Error(e) => {
                    expired = e.code == 410;
                    break;
                }
            }
        }
        // The API server counts a WATCH when it ends.
        own.add(key("WATCH", "attach.azureml.io", "batchtargets", ""), 1);
        (!expired).then_some(rv)
    }

    /// (objects, Ready ones).
    pub fn counts(&self) -> (usize, usize) {
        let s = self.lock();
        (s.ready.len(), s.ready.values().filter(|r| **r).count())
    }

    pub fn last_ready(&self) -> Option<Instant> {
        self.lock().last_ready
    }

    /// Ready True → not True transitions since the last call.
    pub fn take_transitions(&self) -> u64 {
        std::mem::take(&mut self.lock().down)
    }
}
