//! Rule 7: one LIST of a workspace's computes per resync period serves every target of that
//! workspace. Entries are single-flight (one LIST at a time per workspace) and written through
//! when the operator itself changes a compute, so its own writes never force a re-LIST.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::azure::models::ComputeResource;
use crate::azure::{ArmClient, ArmError, WorkspaceRef};

/// A workspace's computes, each behind its own `Arc`: a write-through copies the list's
/// pointers, not the computes (at 1,000 computes a workspace, a converge made a deep copy of the
/// whole list for every attach).
pub type Computes = Arc<Vec<Arc<ComputeResource>>>;

#[derive(Default)]
struct Entry {
    fetched: Option<Instant>,
    computes: Computes,
}

/// The per-workspace compute list cache. Holds no secrets: LIST never returns them.
#[derive(Default)]
pub struct ComputeListCache {
    ttl: Duration,
    entries: Mutex<HashMap<WorkspaceRef, Arc<tokio::sync::Mutex<Entry>>>>,
}

impl ComputeListCache {
    /// A cache whose entries live `ttl` (a little less than the resync period, so that each
    /// resync sees a fresh LIST).
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: Mutex::default(),
        }
    }

    fn entry(&self, ws: &WorkspaceRef) -> Arc<tokio::sync::Mutex<Entry>> {
        let mut map = self
            .entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.entry(ws.clone()).or_default().clone()
    }

    /// The workspace's computes, LISTing only when the entry is older than the TTL.
    pub async fn get(&self, arm: &ArmClient, ws: &WorkspaceRef) -> Result<Computes, ArmError> {
        let entry = self.entry(ws);
        let mut e = entry.lock().await;
        if let Some(at) = e.fetched
            && at.elapsed() < self.ttl
        {
            return Ok(e.computes.clone());
        }
        let fresh = arm.list_computes(ws).await?;
        e.computes = Arc::new(fresh.into_iter().map(Arc::new).collect());
        e.fetched = Some(Instant::now());
        Ok(e.computes.clone())
    }

    /// Writes through a compute the operator just attached or refreshed.
    pub async fn upsert(&self, ws: &WorkspaceRef, name: &str, compute: ComputeResource) {
        let entry = self.entry(ws);
        let mut e = entry.lock().await;
        let mut list: Vec<Arc<ComputeResource>> = e
            .computes
            .iter()
            .filter(|c| !same_name(c, name))
            .cloned()
            .collect();
        list.push(Arc::new(compute));
        e.computes = Arc::new(list);
    }

    /// Removes a compute the operator just detached.
    pub async fn remove(&self, ws: &WorkspaceRef, name: &str) {
        let entry = self.entry(ws);
        let mut e = entry.lock().await;
        let list: Vec<Arc<ComputeResource>> = e
            .computes
            .iter()
            .filter(|c| !same_name(c, name))
            .cloned()
            .collect();
        e.computes = Arc::new(list);
    }

    /// Forgets a workspace's list (e.g. after an error that may mean it changed).
    pub async fn invalidate(&self, ws: &WorkspaceRef) {
        let entry = self.entry(ws);
        entry.lock().await.fetched = None;
    }
}

/// Compute names are case-insensitive in ARM.
pub fn same_name(c: &ComputeResource, name: &str) -> bool {
    c.name
        .as_deref()
        .is_some_and(|n| n.eq_ignore_ascii_case(name))
}
