//! What this process wrote: the last status of each target (the reflector's copy can lag our
//! own write, and a stale copy must not cause a second PUT or DELETE) and the uids whose
//! finalizer it removed (a stale copy is not cleaned up a second time).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::api::TargetStatus;

/// How long a released uid is remembered (far longer than a watch takes to deliver a delete).
const RELEASED_MEMORY: Duration = Duration::from_secs(600);

/// The status memo.
#[derive(Default)]
pub struct StatusMemo {
    /// The last status this process wrote, by uid. The operator is the only writer of target
    /// status, so this is never older than the reflector's copy.
    written: Mutex<HashMap<String, TargetStatus>>,
    /// Uids whose finalizer this process removed, and when.
    released: Mutex<HashMap<String, Instant>>,
}

impl StatusMemo {
    /// The freshest known status of the object `uid`: ours if we wrote one, else `from_store`.
    pub fn fresh_status(&self, uid: &str, from_store: Option<&TargetStatus>) -> TargetStatus {
        let memo = self
            .written
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        memo.get(uid)
            .cloned()
            .or_else(|| from_store.cloned())
            .unwrap_or_default()
    }

    /// Remembers the status just written, or forgets the object's entry when `None`: after a
    /// pass that wrote nothing (the store already holds its status, so the memo is not needed)
    /// and when the object is released. The memo thus holds only the targets whose own write
    /// the watch has not delivered yet, not one status per target for the life of the process.
    pub fn remember_status(&self, uid: &str, status: Option<TargetStatus>) {
        let mut memo = self
            .written
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match status {
            Some(s) => memo.insert(uid.to_owned(), s),
            None => memo.remove(uid),
        };
    }

    /// How many statuses are remembered.
    #[cfg(test)]
    fn remembered(&self) -> usize {
        self.written
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
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
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(hash: &str) -> TargetStatus {
        TargetStatus {
            attached_config_hash: Some(hash.to_owned()),
            ..TargetStatus::default()
        }
    }

    #[test]
    fn a_written_status_is_kept_until_the_store_shows_it() {
        let memo = StatusMemo::default();
        // Written; the store still has the old copy: ours is the fresh one.
        memo.remember_status("u", Some(status("new")));
        assert_eq!(memo.fresh_status("u", Some(&status("old"))), status("new"));
        assert_eq!(memo.remembered(), 1);
        // The next pass found the store caught up and wrote nothing: nothing is kept.
        memo.remember_status("u", None);
        assert_eq!(memo.remembered(), 0);
        assert_eq!(memo.fresh_status("u", Some(&status("new"))), status("new"));
    }
}
