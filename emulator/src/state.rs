//! The emulator's mutable world: resources, computes, async operations, request log, faults.
//!
//! Provisioning and deletion are computed lazily from timestamps (no background tasks): a compute
//! is `Creating` until its `ready_at`, a deleted compute disappears at its `deleting_at`.

use std::collections::{BTreeMap, HashMap, VecDeque};

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use crate::config::{
    Application, EmulatorConfig, ManagedIdentity, Settings, Workspace, WorldResource,
};
use crate::faults::FaultRule;
use crate::throttle::Throttle;

/// Key of a compute: (lower-case workspace id, lower-case compute name).
pub type ComputeKey = (String, String);

/// Kind of long-running operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum OpKind {
    /// PUT.
    CreateOrUpdate,
    /// DELETE.
    Delete,
}

/// An async operation behind a `computeOperationsStatus/{id}` URL.
#[derive(Clone, Debug)]
pub struct Operation {
    /// What it does.
    pub kind: OpKind,
    /// Subscription it belongs to (the status URL must use it).
    pub subscription: String,
    /// When it started.
    pub started: DateTime<Utc>,
    /// When it reaches its terminal state.
    pub ready_at: DateTime<Utc>,
    /// ErrorDetail when it fails.
    pub error: Option<Value>,
}

impl Operation {
    /// `InProgress`, `Succeeded` or `Failed` at `now`.
    pub fn status(&self, now: DateTime<Utc>) -> &'static str {
        if now < self.ready_at {
            "InProgress"
        } else if self.error.is_some() {
            "Failed"
        } else {
            "Succeeded"
        }
    }
}

/// A compute attached to (or created in) a workspace.
#[derive(Clone, Debug)]
pub struct ComputeRecord {
    /// Index of the workspace in [`Inner::workspaces`].
    pub workspace: usize,
    /// Name as first created.
    pub name: String,
    /// The accepted request body (secrets included; never returned except by listKeys).
    pub request: Value,
    /// `properties.computeType`.
    pub compute_type: String,
    /// `properties.resourceId`.
    pub resource_id: Option<String>,
    /// Brought from outside (true) or provisioned by Azure ML (false).
    pub attached: bool,
    /// Address resolved from the underlying resource.
    pub address: Option<String>,
    /// VM size of the underlying resource.
    pub vm_size: Option<String>,
    /// Principal id of a system-assigned identity.
    pub identity_principal: String,
    /// First creation time.
    pub created_on: DateTime<Utc>,
    /// Time of the last PUT.
    pub last_put: DateTime<Utc>,
    /// When provisioning finishes.
    pub ready_at: DateTime<Utc>,
    /// ErrorDetail when provisioning fails.
    pub failure: Option<Value>,
    /// Set by DELETE: when the compute disappears.
    pub deleting_at: Option<DateTime<Utc>>,
}

impl ComputeRecord {
    /// `provisioningState` at `now`.
    pub fn provisioning_state(&self, now: DateTime<Utc>) -> &'static str {
        if self.deleting_at.is_some() {
            "Deleting"
        } else if now < self.ready_at {
            "Creating"
        } else if self.failure.is_some() {
            "Failed"
        } else {
            "Succeeded"
        }
    }

    /// `modifiedOn` at `now`: advances when provisioning finishes.
    pub fn modified_on(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        if now >= self.ready_at {
            self.ready_at
        } else {
            self.last_put
        }
    }
}

/// A world resource deleted through `underlyingResourceAction=Delete`.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeletedResource {
    /// ARM id of the deleted resource.
    pub id: String,
    /// When.
    pub deleted_at: String,
    /// The compute whose DELETE removed it.
    pub compute: String,
    /// The compute's workspace.
    pub workspace: String,
}

/// One logged request.
#[derive(Clone, Debug, Serialize, serde::Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LogEntry {
    /// Sequence number, from 1.
    pub seq: u64,
    /// HTTP method.
    pub method: String,
    /// Path.
    pub path: String,
    /// Query string.
    pub query: Option<String>,
    /// Operation id (`Compute_Get`, `Token`, …).
    pub operation: String,
    /// Status answered (0 when the connection was dropped).
    pub status: u16,
    /// Client id of the caller, when authenticated.
    pub principal: Option<String>,
    /// Id of the fault rule that answered instead of the emulator (an injected status or a
    /// dropped connection); `None` when the emulator answered, even after a latency-only rule.
    /// Tells an injected 429 from one of the emulator's own throttle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault: Option<u64>,
    /// When.
    pub timestamp: String,
}

/// Bounded request log with per-(operation, status) counts.
#[derive(Debug, Default)]
pub struct RequestLog {
    /// Recent entries (oldest dropped past [`RequestLog::CAPACITY`]).
    pub entries: VecDeque<LogEntry>,
    /// Counts by `"<operation> <status>"`.
    pub counts: BTreeMap<String, u64>,
    /// Requests logged since the last clear.
    pub total: u64,
    next_seq: u64,
}

impl RequestLog {
    /// Entries kept.
    pub const CAPACITY: usize = 100_000;

    /// Append one entry, assigning its sequence number.
    pub fn push(&mut self, mut e: LogEntry) {
        self.next_seq += 1;
        e.seq = self.next_seq;
        self.total += 1;
        *self
            .counts
            .entry(format!("{} {}", e.operation, e.status))
            .or_default() += 1;
        if self.entries.len() >= Self::CAPACITY {
            self.entries.pop_front();
        }
        self.entries.push_back(e);
    }

    /// Forget entries and counts (sequence numbers keep growing).
    pub fn clear(&mut self) {
        self.entries.clear();
        self.counts.clear();
        self.total = 0;
    }
}

/// Everything behind the lock.
#[derive(Debug)]
pub struct Inner {
    /// Behaviour settings.
    pub settings: Settings,
    /// Entra tenant.
    pub tenant_id: String,
    /// Applications.
    pub applications: Vec<Application>,
    /// Managed identities.
    pub managed_identities: Vec<ManagedIdentity>,
    /// Workspaces (never removed, so indexes are stable).
    pub workspaces: Vec<Workspace>,
    /// Underlying resources by lower-case id.
    pub resources: BTreeMap<String, WorldResource>,
    /// Deletion records.
    pub deleted_resources: Vec<DeletedResource>,
    /// Computes, ordered by workspace then name (LIST pages in this order).
    pub computes: BTreeMap<ComputeKey, ComputeRecord>,
    /// Computes being deleted.
    pub pending_deletes: Vec<ComputeKey>,
    /// Async operations by id.
    pub operations: HashMap<String, Operation>,
    /// Request log.
    pub log: RequestLog,
    /// Fault rules in match order.
    pub faults: Vec<FaultRule>,
    /// Next fault id.
    pub next_fault_id: u64,
    /// Throttling buckets.
    pub throttle: Throttle,
}

impl Inner {
    /// The world of a configuration (seed computes are added by the caller).
    pub fn new(cfg: &EmulatorConfig) -> Self {
        Self {
            settings: cfg.settings.clone(),
            tenant_id: cfg.tenant_id.clone(),
            applications: cfg.applications.clone(),
            managed_identities: cfg.managed_identities.clone(),
            workspaces: cfg.workspaces.clone(),
            resources: cfg
                .resources
                .iter()
                .map(|r| (r.id.to_ascii_lowercase(), r.clone()))
                .collect(),
            deleted_resources: Vec::new(),
            computes: BTreeMap::new(),
            pending_deletes: Vec::new(),
            operations: HashMap::new(),
            log: RequestLog::default(),
            faults: Vec::new(),
            next_fault_id: 1,
            throttle: Throttle::default(),
        }
    }

    /// Apply deletions that are due.
    pub fn settle(&mut self, now: DateTime<Utc>) {
        if self.pending_deletes.is_empty() {
            return;
        }
        let computes = &mut self.computes;
        self.pending_deletes.retain(|key| {
            let due = computes
                .get(key)
                .and_then(|c| c.deleting_at)
                .is_none_or(|at| at <= now);
            if due {
                computes.remove(key);
            }
            !due
        });
    }

    /// Index of a workspace by subscription, group and name (case-insensitive).
    pub fn workspace_index(&self, sub: &str, rg: &str, name: &str) -> Option<usize> {
        self.workspaces.iter().position(|w| {
            w.subscription_id.eq_ignore_ascii_case(sub)
                && w.resource_group.eq_ignore_ascii_case(rg)
                && w.name.eq_ignore_ascii_case(name)
        })
    }

    /// Index of a workspace named by the control API: a name or an ARM id.
    pub fn workspace_by_ref(&self, r: &str) -> Option<usize> {
        self.workspaces
            .iter()
            .position(|w| w.name.eq_ignore_ascii_case(r) || w.id().eq_ignore_ascii_case(r))
    }

    /// Key of a compute.
    pub fn compute_key(&self, ws: usize, name: &str) -> ComputeKey {
        let ws_id = self
            .workspaces
            .get(ws)
            .map(|w| w.id().to_ascii_lowercase())
            .unwrap_or_default();
        (ws_id, name.to_ascii_lowercase())
    }

    /// Whether a subscription is known (has a workspace or resource).
    pub fn subscription_known(&self, sub: &str) -> bool {
        self.workspaces
            .iter()
            .any(|w| w.subscription_id.eq_ignore_ascii_case(sub))
    }

    /// Whether a resource group is known.
    pub fn resource_group_known(&self, sub: &str, rg: &str) -> bool {
        self.workspaces.iter().any(|w| {
            w.subscription_id.eq_ignore_ascii_case(sub) && w.resource_group.eq_ignore_ascii_case(rg)
        }) || self.resources.keys().any(|id| {
            id.starts_with(&format!(
                "/subscriptions/{}/resourcegroups/{}/",
                sub.to_ascii_lowercase(),
                rg.to_ascii_lowercase()
            ))
        })
    }
}
