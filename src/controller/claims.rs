//! Rule 4: one claim per underlying resource. Across every kind and namespace, the oldest
//! claim on (workspace, resource) wins: earliest creationTimestamp, then lowest uid.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;

use crate::controller::target::AttachTarget;

/// One target's claim on a resource.
#[derive(Clone, Debug, PartialEq)]
pub struct Claim {
    /// Lower-cased workspace ARM id.
    pub workspace: String,
    /// `Underlying::claim_key`.
    pub resource: String,
    /// `Kind namespace/name`, for messages.
    pub owner: String,
    /// The object's uid.
    pub uid: String,
    /// The object's creationTimestamp.
    pub created: Option<Time>,
}

impl Claim {
    fn order_key(&self) -> (Option<i64>, i32, &str) {
        let t = self.created.as_ref().map(|t| t.0.as_second());
        let n = self
            .created
            .as_ref()
            .map(|t| t.0.subsec_nanosecond())
            .unwrap_or(0);
        (t, n, self.uid.as_str())
    }
}

/// The winning claim among `claims` on the same (workspace, resource) as `mine`.
/// Objects without a creationTimestamp sort last (they are not persisted yet).
pub fn winner<'a>(mine: &'a Claim, claims: impl IntoIterator<Item = &'a Claim>) -> &'a Claim {
    let mut best = mine;
    for c in claims {
        if c.workspace != mine.workspace || c.resource != mine.resource {
            continue;
        }
        let (ct, cn, cu) = c.order_key();
        let (bt, bn, bu) = best.order_key();
        // `None` timestamps sort after any real one.
        let c_before = match (ct, bt) {
            (Some(a), Some(b)) => (a, cn, cu) < (b, bn, bu),
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => cu < bu,
        };
        if c_before {
            best = c;
        }
    }
    best
}

/// The claim index of one kind (rule 4): claim key → the objects that claimed it, fed from
/// the kind's watch in its own task (so it is complete when the store is ready). A delete
/// removes an entry; every (re-)list rebuilds the index from the store, which also drops
/// objects deleted while the watch was down; an object whose resource changed leaves an old
/// entry that lookups check against the store and drop. A lookup costs the claims on one
/// resource, not a scan of every target (that was O(targets²) per resync).
pub struct ClaimIndex<K: AttachTarget>(Arc<Mutex<HashMap<String, Vec<ObjectRef<K>>>>>);

impl<K: AttachTarget> Clone for ClaimIndex<K> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<K: AttachTarget> Default for ClaimIndex<K> {
    fn default() -> Self {
        Self(Arc::default())
    }
}

impl<K: AttachTarget> ClaimIndex<K> {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Vec<ObjectRef<K>>>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn update(&self, event: &watcher::Event<K>, store: &Store<K>) {
        match event {
            watcher::Event::Apply(o) | watcher::Event::InitApply(o) => self.insert(o),
            watcher::Event::Delete(o) => {
                let key = o.underlying().claim_key();
                let r = ObjectRef::from_obj(o);
                let mut map = self.lock();
                if let Some(refs) = map.get_mut(&key) {
                    refs.retain(|x| *x != r);
                    if refs.is_empty() {
                        map.remove(&key);
                    }
                }
            }
            watcher::Event::Init => {}
            watcher::Event::InitDone => {
                // The store now holds exactly the listed objects.
                self.lock().clear();
                for o in store.state() {
                    self.insert(&o);
                }
            }
        }
    }

    fn insert(&self, obj: &K) {
        let key = obj.underlying().claim_key();
        let r = ObjectRef::from_obj(obj);
        let mut map = self.lock();
        let refs = map.entry(key).or_default();
        if !refs.contains(&r) {
            refs.push(r);
        }
    }

    /// The objects in `store` that claim `resource` now; entries whose object now claims
    /// something else are dropped (one absent from the store is kept: during a re-list the
    /// store holds the previous list until `InitDone`).
    pub fn claimants(&self, store: &Store<K>, resource: &str) -> Vec<Arc<K>> {
        let mut map = self.lock();
        let Some(refs) = map.get_mut(resource) else {
            return Vec::new();
        };
        let mut found = Vec::with_capacity(refs.len());
        refs.retain(|r| match store.get(r) {
            Some(o) if o.underlying().has_claim_key(resource) => {
                found.push(o);
                true
            }
            Some(_) => false,
            None => true,
        });
        if refs.is_empty() {
            map.remove(resource);
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(owner: &str, uid: &str, secs: i64) -> Claim {
        Claim {
            workspace: "ws".into(),
            resource: "vm".into(),
            owner: owner.into(),
            uid: uid.into(),
            created: Some(Time(
                k8s_openapi::jiff::Timestamp::from_second(secs).unwrap(),
            )),
        }
    }

    fn batch(name: &str, account: &str) -> crate::api::BatchTarget {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "attach.azureml.io/v1alpha1",
            "kind": "BatchTarget",
            "metadata": {"name": name, "namespace": "n", "uid": format!("uid-{name}")},
            "spec": {
                "workspaceRef": {"name": "w"},
                "resourceId": format!("/subscriptions/s/resourceGroups/rg/providers/Microsoft.Batch/batchAccounts/{account}")
            }
        }))
        .expect("a valid BatchTarget")
    }

    fn names(found: &[Arc<crate::api::BatchTarget>]) -> Vec<String> {
        let mut n: Vec<String> = found
            .iter()
            .map(|o| o.metadata.name.clone().unwrap_or_default())
            .collect();
        n.sort();
        n
    }

    #[test]
    fn rule4_the_claim_index_follows_the_watch_and_relists() {
        use crate::controller::target::AttachTarget;
        let (store, mut writer) = kube::runtime::reflector::store();
        let index = ClaimIndex::default();
        let mut apply = |e: watcher::Event<crate::api::BatchTarget>| {
            writer.apply_watcher_event(&e);
            index.update(&e, &store);
        };
        let key = batch("a", "one").underlying().claim_key();
        let other = batch("a", "two").underlying().claim_key();
        apply(watcher::Event::Init);
        apply(watcher::Event::InitApply(batch("a", "one")));
        apply(watcher::Event::InitApply(batch("b", "one")));
        apply(watcher::Event::InitDone);
        assert_eq!(names(&index.claimants(&store, &key)), ["a", "b"]);
        // A spec edit moves the claim; the old entry is dropped on lookup.
        apply(watcher::Event::Apply(batch("b", "two")));
        assert_eq!(names(&index.claimants(&store, &key)), ["a"]);
        assert_eq!(names(&index.claimants(&store, &other)), ["b"]);
        apply(watcher::Event::Delete(batch("a", "one")));
        assert!(index.claimants(&store, &key).is_empty());
        // A re-list: until InitDone the store keeps the old list and the new object counts
        // once it is in the store; an object deleted while the watch was down is gone after.
        apply(watcher::Event::Init);
        apply(watcher::Event::InitApply(batch("c", "one")));
        assert!(index.claimants(&store, &key).is_empty());
        apply(watcher::Event::InitDone);
        assert_eq!(names(&index.claimants(&store, &key)), ["c"]);
        assert!(
            index.claimants(&store, &other).is_empty(),
            "b vanished in the re-list"
        );
    }

    #[test]
    fn rule4_oldest_claim_wins_then_uid() {
        let a = claim("a", "u2", 10);
        let b = claim("b", "u1", 20);
        let c = claim("c", "u0", 10);
        let all = vec![a.clone(), b.clone(), c.clone()];
        assert_eq!(winner(&b, &all).owner, "c", "same second: lower uid wins");
        assert_eq!(winner(&a, &all).owner, "c");
        let mut other = claim("d", "u", 1);
        other.resource = "other".into();
        let all2 = vec![a.clone(), other];
        assert_eq!(
            winner(&a, &all2).owner,
            "a",
            "claims on other resources do not count"
        );
    }
}
