//! Settling the steps that follow Azure operations: polls of an attach or detach, and the
//! answer to a DELETE (rules 1, 5 and 6).

use std::time::Duration;

use crate::api::{OperationKind, PendingOperation, ProvisioningError};
use crate::azure::DetachOutcome;
use crate::azure::models::{OperationState, OperationStatus};
use crate::controller::conditions::Reason;
use crate::controller::events::EventReason;
use crate::controller::plan::{AzureView, ComputeSummary};

use super::{CacheEdit, DETACH_RETRY, Learned, Next, Settling, after, errors_text, poll_delay};

impl Settling<'_, '_> {
    pub(super) fn polled(&mut self, op: PendingOperation, answer: Box<OperationStatus>) {
        match answer.status {
            OperationState::Succeeded => self.operation_succeeded(op),
            OperationState::Failed | OperationState::Canceled => {
                self.out.status.operation = None;
                let errors: Vec<ProvisioningError> = answer
                    .error
                    .iter()
                    .map(|e| ProvisioningError {
                        code: e.code.clone().unwrap_or_default(),
                        message: e.message.clone().unwrap_or_default(),
                    })
                    .collect();
                let detail = errors_text(&errors);
                match op.kind {
                    OperationKind::Attach => {
                        let status = &mut self.out.status;
                        status.attached_config_hash = op.config_hash.clone();
                        status.rejected_config_hash = op.config_hash.clone();
                        status.provisioning_state = Some(answer.status.as_str().to_owned());
                        status.provisioning_errors = errors;
                        self.report(
                            Reason::ProvisioningFailed,
                            format!("Azure could not attach the compute: {detail}"),
                        );
                    }
                    OperationKind::Detach => {
                        self.report(Reason::AzureError, format!("the detach failed: {detail}"));
                        if let Next::After(d) = &mut self.out.next {
                            *d = (*d).min(DETACH_RETRY);
                        }
                    }
                }
            }
            _ => {
                let reason = match (op.kind, op.reattach) {
                    (_, true) => Reason::Reattaching,
                    (OperationKind::Attach, false) => Reason::Attaching,
                    (OperationKind::Detach, false) => Reason::Detaching,
                };
                self.set_ready(
                    reason,
                    format!("waiting for Azure ({:?} in progress)", op.kind),
                );
                let delay = poll_delay(answer.retry_after);
                if let Some(pending) = self.out.status.operation.as_mut() {
                    pending.next_poll_at = Some(after(&self.f.now, delay));
                }
                self.out.next = Next::After(delay);
            }
        }
    }

    fn operation_succeeded(&mut self, op: PendingOperation) {
        self.out.status.operation = None;
        match op.kind {
            OperationKind::Attach => {
                let hash = op
                    .config_hash
                    .unwrap_or_else(|| self.f.desired_hash.to_owned());
                self.attached(hash, "Succeeded");
                let compute = ComputeSummary {
                    matches: true,
                    provisioning_state: Some("Succeeded".to_owned()),
                    id: self.f.compute_id.clone(),
                    ..Default::default()
                };
                self.out.next = Next::Replan(Learned::Azure(AzureView::Present(compute)));
            }
            OperationKind::Detach => {
                self.out.cache.push(CacheEdit::Remove);
                self.out.status.provisioning_state = None;
                if op.reattach && !self.f.deleting {
                    self.detached_for_reattach();
                } else {
                    self.detached();
                }
            }
        }
    }

    pub(super) fn detach(&mut self, reattach: bool, outcome: DetachOutcome) {
        if reattach {
            self.event(
                EventReason::Reattaching,
                "a setting Azure cannot update in place changed: detaching, then attaching again"
                    .to_owned(),
            );
        }
        match outcome {
            DetachOutcome::Done
            | DetachOutcome::Absent
            | DetachOutcome::InProgress {
                operation_url: None,
                ..
            } => {
                self.out.cache.push(CacheEdit::Remove);
                self.out.status.operation = None;
                self.out.status.provisioning_state = None;
                if reattach {
                    self.detached_for_reattach();
                } else {
                    self.detached();
                }
            }
            DetachOutcome::InProgress {
                operation_url: Some(url),
                retry_after,
            } => {
                let delay = poll_delay(retry_after);
                self.out.status.operation = Some(PendingOperation {
                    kind: OperationKind::Detach,
                    url,
                    reattach,
                    config_hash: None,
                    started_at: Some(self.f.now.clone()),
                    next_poll_at: Some(after(&self.f.now, delay)),
                });
                self.out.status.provisioning_state = Some("Deleting".to_owned());
                let reason = if reattach {
                    Reason::Reattaching
                } else {
                    Reason::Detaching
                };
                self.set_ready(
                    reason,
                    "Azure accepted the detach (underlyingResourceAction=Detach)",
                );
                self.out.next = Next::After(delay);
            }
        }
    }

    /// The first half of a re-attach is done. The second is the next pass's: the plan sees the
    /// compute absent with an out-of-date `attachedConfigHash` and attaches (cause Reattach).
    fn detached_for_reattach(&mut self) {
        self.set_ready(
            Reason::Reattaching,
            "detached (underlyingResourceAction=Detach); attaching again with the new settings",
        );
        self.out.next = Next::After(Duration::ZERO);
    }

    fn detached(&mut self) {
        // Forget the attachment in status too: a pass that still sees the finalizer (stale
        // cache) then releases instead of detaching again.
        let status = &mut self.out.status;
        status.compute_id = None;
        status.attached_config_hash = None;
        status.connection_secret_hash = None;
        status.connection_secret_name = None;
        let note = format!(
            "detached compute {:?} (underlyingResourceAction=Detach)",
            self.f.compute_name
        );
        self.event(EventReason::Detached, note);
        self.out.next = Next::Done;
    }
}
