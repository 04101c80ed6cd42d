//! Pure settling, the fourth step of a pass: from what the one call of a step returned (an
//! [`Outcome`]), the new status, the `Ready` condition, the events, the edits to the LIST cache
//! and what happens next. No I/O here; `reconcile.rs` runs the call before and applies the
//! result after.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::api::{OperationKind, PendingOperation, ProvisioningError, TargetStatus};
use crate::azure::ArmError;
use crate::controller::conditions::{Reason, set_ready};
use crate::controller::error::chain;
use crate::controller::events::EventReason;
use crate::controller::failure::{self, Failure};
use crate::controller::plan::{AttachCause, AzureView, ComputeSummary};

/// Default wait before polling an operation when Azure sends no Retry-After (FINDINGS §3).
pub const DEFAULT_POLL: Duration = Duration::from_secs(3);
/// Longest wait after a failed write of the connection Secret.
pub const TRANSIENT_RETRY: Duration = Duration::from_secs(15);
/// Least wait for a reason only a person (or another object) can clear.
const PERMANENT_RETRY: Duration = Duration::from_secs(300);
/// Longest wait before retrying a detach Azure reported as failed.
const DETACH_RETRY: Duration = Duration::from_secs(60);
/// The condition a failed check gets with `preflight: Warn`.
pub const PREFLIGHT: &str = "Preflight";
/// Wait before planning again when the LIST cache must be refilled.
const RELIST: Duration = Duration::from_secs(1);

mod operations;
mod outcome;
pub use outcome::{
    CacheEdit, ConnectionResult, ConnectionWrite, Facts, Learned, Next, Outcome, PreflightResult,
    PutAnswer, Settled,
};

/// Settles one step: the new status and what follows from `outcome`.
pub fn settle(f: &Facts<'_>, status: TargetStatus, outcome: Outcome) -> Settled {
    let mut s = Settling {
        f,
        out: Settled {
            status,
            events: Vec::new(),
            cache: Vec::new(),
            next: Next::After(f.resync),
        },
    };
    s.apply(outcome);
    s.out
}

struct Settling<'f, 'a> {
    f: &'f Facts<'a>,
    out: Settled,
}

impl Settling<'_, '_> {
    fn apply(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Report { reason, message } | Outcome::AttachBlocked { reason, message } => {
                self.report(reason, message)
            }
            Outcome::Release { why, orphan } => {
                let reason = if orphan {
                    EventReason::Orphaned
                } else {
                    EventReason::Released
                };
                self.event(reason, why.to_owned());
                self.out.next = Next::Done;
            }
            Outcome::ConnectFailed(e) => {
                let failure = failure::connect_for_target(&e, self.f.resync);
                let message = match failure.reason {
                    Reason::WorkspaceNotReady => {
                        format!("the MLWorkspace's credential is unusable: {e}")
                    }
                    _ => chain(&e),
                };
                self.report(failure.reason, message);
            }
            Outcome::Listed(view) => self.out.next = Next::Replan(Learned::Azure(view)),
            Outcome::ListFailed(e) => self.list_failed(&e),
            Outcome::PollNotDue(wait) => self.out.next = Next::After(wait),
            Outcome::OperationGone => {
                // The record expired: forget it and plan again from a fresh LIST.
                self.out.status.operation = None;
                self.out.cache.push(CacheEdit::Invalidate);
                self.out.next = Next::After(RELIST);
            }
            Outcome::Polled { op, status } => self.polled(op, status),
            Outcome::Put { cause, answer } => self.put(cause, answer),
            Outcome::PutRefused {
                type_refused,
                message,
            } => {
                // Permanent for this configuration: remember it so it is not PUT again (rule 11).
                self.out.status.rejected_config_hash = Some(self.f.desired_hash.to_owned());
                let reason = if type_refused {
                    Reason::ComputeTypeRefused
                } else {
                    Reason::InvalidSpec
                };
                self.report(reason, format!("Azure refused the attach: {message}"));
            }
            Outcome::Detach { reattach, outcome } => self.detach(reattach, outcome),
            Outcome::Adopt(c) => {
                self.out.status.attached_config_hash = Some(self.f.desired_hash.to_owned());
                self.out.status.secret_resource_version = self.f.secret_rv.map(str::to_owned);
                self.record(&c);
                let note = format!("adopted existing compute {:?}", self.f.compute_name);
                self.event(EventReason::Adopted, note);
                self.out.next = Next::Replan(Learned::Nothing);
            }
            Outcome::InSync(c) => self.in_sync(&c),
            Outcome::Refreshed(Some(c)) => {
                let state = c.provisioning_state.clone().unwrap_or_default();
                self.out.cache.push(CacheEdit::Upsert(state));
                self.record(&c);
                if c.is_terminal() {
                    self.out.next = Next::Replan(Learned::Azure(AzureView::Present(c)));
                } else {
                    self.provisioning(&c);
                }
            }
            Outcome::Refreshed(None) => {
                self.out.cache.push(CacheEdit::Remove);
                self.out.next = Next::After(RELIST);
            }
            Outcome::Connection { compute, result } => self.connection(&compute, result),
            Outcome::Preflight(result) => self.preflight(result),
            Outcome::ArmFailed(e) => self.arm_failed(&e),
        }
    }

    /// Rule 13: a pass is remembered for this configuration; a failure stops the attach
    /// (Enforce, re-checked every resync) or is reported beside `Ready` (Warn).
    fn preflight(&mut self, result: PreflightResult) {
        let (reason, message) = match result {
            PreflightResult::Passed => {
                self.out.status.preflight_hash = Some(self.f.desired_hash.to_owned());
                self.out.status.conditions.retain(|c| c.type_ != PREFLIGHT);
                self.out.next = Next::Replan(Learned::Nothing);
                return;
            }
            PreflightResult::NotFound(what) => (
                Reason::ResourceNotFound,
                format!("{what} does not exist; fix spec.resourceId (nothing was attached)"),
            ),
            PreflightResult::Unmet(u) => (
                Reason::PrerequisiteNotMet,
                format!(
                    "{}; {} (or set spec.preflight: Warn to attach anyway)",
                    u.fact, u.remedy
                ),
            ),
        };
        if self.f.preflight == crate::api::PreflightMode::Warn {
            self.out.status.preflight_hash = Some(self.f.desired_hash.to_owned());
            let previous = self.f.old.conditions.iter().find(|c| c.type_ == PREFLIGHT);
            let mut condition = crate::controller::conditions::ready_condition(
                previous,
                reason,
                message.clone(),
                self.f.generation,
                self.f.now.clone(),
            );
            condition.type_ = PREFLIGHT.to_owned();
            if previous.is_none_or(|p| p.reason != reason.as_str()) {
                self.event(EventReason::Condition(reason), message);
            }
            crate::controller::conditions::set_condition(
                &mut self.out.status.conditions,
                condition,
            );
            self.out.next = Next::Replan(Learned::Nothing);
            return;
        }
        self.report(reason, message);
        // Re-read at every resync: the fix is usually made to the resource, not to the spec.
        self.out.next = Next::After(self.f.resync);
    }

    fn event(&mut self, reason: EventReason, note: String) {
        self.out.events.push((reason, note));
    }

    fn set_ready(&mut self, reason: Reason, message: impl Into<String>) {
        // Start from the pass's first conditions so lastTransitionTime is kept; the Preflight
        // condition is whatever this pass made of it.
        let mut conditions = self.f.old.conditions.clone();
        conditions.retain(|c| c.type_ != PREFLIGHT);
        if let Some(p) = self
            .out
            .status
            .conditions
            .iter()
            .find(|c| c.type_ == PREFLIGHT)
        {
            conditions.push(p.clone());
        }
        set_ready(
            &mut conditions,
            reason,
            message,
            self.f.generation,
            self.f.now.clone(),
        );
        self.out.status.conditions = conditions;
    }

    fn changed_from_old(&self, reason: Reason) -> bool {
        self.f
            .old
            .ready()
            .is_none_or(|c| c.reason != reason.as_str())
    }

    /// A condition, an event when the reason is new and not Ready, and the wait it implies.
    fn report(&mut self, reason: Reason, message: String) {
        if self.changed_from_old(reason) && !reason.is_ready() {
            self.event(EventReason::Condition(reason), message.clone());
        }
        self.set_ready(reason, message);
        self.out.next = Next::After(if reason.is_permanent() {
            self.f.resync.max(PERMANENT_RETRY)
        } else {
            self.f.resync
        });
    }

    /// The workspace LIST failed. For a Ready target a transient failure (429, 5xx,
    /// transport) says nothing new about its attachment: it stays Ready and looks again after
    /// the delay, instead of flapping Ready (and paging someone) on every failed resync read.
    fn list_failed(&mut self, e: &ArmError) {
        let failure = failure::arm(e, self.f.resync);
        let ready = self.f.old.ready().is_some_and(|c| c.status == "True");
        if ready && matches!(failure.reason, Reason::Throttled | Reason::AzureError) {
            self.out.next = Next::After(failure.delay);
            return;
        }
        self.arm_failed(e);
    }

    /// An ARM error as a condition and a delay (rule 11, one table in `failure.rs`).
    fn arm_failed(&mut self, e: &ArmError) {
        let Failure { reason, delay } = failure::arm(e, self.f.resync);
        if reason == Reason::WorkspaceNotFound {
            self.out.cache.push(CacheEdit::Invalidate);
        }
        let message = chain(e);
        if self.changed_from_old(reason) {
            self.event(EventReason::Condition(reason), message.clone());
        }
        self.set_ready(reason, message);
        self.out.next = Next::After(delay);
    }

    /// Azure's view of an attached compute, copied to status.
    fn record(&mut self, c: &ComputeSummary) {
        let status = &mut self.out.status;
        status.provisioning_state = c.provisioning_state.clone();
        status.provisioning_errors = c.errors.clone();
        status.compute_id = c.id.clone().or_else(|| self.f.compute_id.clone());
    }

    /// A finished attach of configuration `hash`, written through to the LIST cache.
    fn attached(&mut self, hash: String, state: &str) {
        let status = &mut self.out.status;
        status.attached_config_hash = Some(hash);
        status.rejected_config_hash = None;
        status.provisioning_state = Some(state.to_owned());
        status.provisioning_errors.clear();
        status.compute_id = self.f.compute_id.clone();
        self.out.cache.push(CacheEdit::Upsert(state.to_owned()));
    }

    /// The compute is still provisioning: follow it with a GET after a short wait.
    fn provisioning(&mut self, c: &ComputeSummary) {
        let state = c.provisioning_state.as_deref().unwrap_or("");
        self.set_ready(
            Reason::Attaching,
            format!("Azure reports provisioningState {state}"),
        );
        self.out.next = Next::After(DEFAULT_POLL);
    }

    fn in_sync(&mut self, c: &ComputeSummary) {
        self.record(c);
        if c.is_failed() {
            let detail = errors_text(&c.errors);
            let state = c.provisioning_state.as_deref().unwrap_or("Failed");
            return self.report(
                Reason::ProvisioningFailed,
                format!(
                    "Azure reports provisioningState {state}: {detail}; change the spec or rotate the Secret to retry"
                ),
            );
        }
        if !c.is_terminal() {
            return self.provisioning(c);
        }
        let was_ready = self.f.old.ready().is_some_and(|c| c.status == "True");
        let name = self.f.compute_name;
        self.set_ready(
            Reason::Attached,
            format!("compute {name:?} is attached and Succeeded"),
        );
        if !was_ready {
            self.event(EventReason::Attached, format!("compute {name:?} attached"));
        }
        self.out.next = Next::After(self.f.resync);
    }

    fn put(&mut self, cause: AttachCause, answer: PutAnswer) {
        self.out.status.secret_resource_version = self.f.secret_rv.map(str::to_owned);
        // A first attach announces itself once, when done (`Attached`); a re-attach or a
        // repair is news on its own.
        let step = match cause {
            AttachCause::Initial => None,
            AttachCause::Reattach => {
                Some((EventReason::Reattaching, "re-attaching after a change"))
            }
            AttachCause::Drift => Some((
                EventReason::DriftRepaired,
                "re-attaching: the attachment vanished from the workspace",
            )),
        };
        if let Some((event, verb)) = step {
            let note = format!("{verb}: PUT compute {:?}", self.f.compute_name);
            self.event(event, note);
        }
        let hash = self.f.desired_hash.to_owned();
        match answer {
            PutAnswer::Done(c) => {
                let state = c.provisioning_state.as_deref().unwrap_or("Succeeded");
                self.attached(hash, state);
                self.out.next = Next::Replan(Learned::Azure(AzureView::Present(c)));
            }
            PutAnswer::Operation { url, retry_after } => {
                let delay = poll_delay(retry_after);
                self.out.status.operation = Some(PendingOperation {
                    kind: OperationKind::Attach,
                    url,
                    reattach: cause == AttachCause::Reattach,
                    config_hash: Some(hash),
                    started_at: Some(self.f.now.clone()),
                    next_poll_at: Some(after(&self.f.now, delay)),
                });
                self.out.status.provisioning_state = Some("Creating".to_owned());
                self.out.status.compute_id = self.f.compute_id.clone();
                let reason = if cause == AttachCause::Reattach {
                    Reason::Reattaching
                } else {
                    Reason::Attaching
                };
                self.set_ready(reason, "Azure accepted the attach; provisioning");
                self.out.next = Next::After(delay);
            }
            PutAnswer::NoOperation { retry_after } => {
                // No operation URL: follow provisioningState with GETs (InSync refreshes).
                self.attached(hash, "Creating");
                self.set_ready(Reason::Attaching, "Azure accepted the attach; provisioning");
                self.out.next = Next::After(poll_delay(retry_after));
            }
        }
    }

    fn connection(&mut self, compute: &ComputeSummary, result: ConnectionResult) {
        self.record(compute);
        if result.removed_old {
            self.out.status.connection_secret_name = None;
            self.out.status.connection_secret_hash = None;
        }
        match result.write {
            ConnectionWrite::NotWanted => self.out.next = Next::Replan(Learned::Nothing),
            ConnectionWrite::Written(name) => {
                let status = &mut self.out.status;
                status.connection_secret_hash = status.attached_config_hash.clone();
                status.connection_secret_name = Some(name);
                self.out.next = Next::Replan(Learned::ConnectionInPlace);
            }
            ConnectionWrite::Conflict(message) => {
                self.report(Reason::ConnectionSecretConflict, message)
            }
            ConnectionWrite::Failed(error) => {
                self.report(
                    Reason::ConnectionSecretFailed,
                    format!(
                        "the compute is attached, but the connection Secret could not be written: {error}"
                    ),
                );
                if let Next::After(d) = &mut self.out.next {
                    *d = (*d).min(TRANSIENT_RETRY);
                }
            }
        }
    }
}

fn errors_text(errors: &[ProvisioningError]) -> String {
    errors
        .iter()
        .map(|e| format!("{}: {}", e.code, e.message))
        .collect::<Vec<_>>()
        .join("; ")
}

/// The wait before a poll: Azure's `Retry-After`, else [`DEFAULT_POLL`], within 1–120 s.
pub fn poll_delay(retry_after: Option<Duration>) -> Duration {
    retry_after
        .unwrap_or(DEFAULT_POLL)
        .clamp(Duration::from_secs(1), Duration::from_secs(120))
}

fn after(now: &Time, d: Duration) -> Time {
    let d = k8s_openapi::jiff::SignedDuration::try_from(d).unwrap_or_default();
    Time(now.0.checked_add(d).unwrap_or(now.0))
}

#[cfg(test)]
mod tests;
