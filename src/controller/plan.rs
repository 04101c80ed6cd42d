//! Pure planning: given the target, what it references and what Azure said, decide the one
//! next action. No I/O here; `reconcile.rs` carries the decision out.

use crate::api::{
    DeletionPolicy, OperationKind, PendingOperation, ProvisioningError, TargetStatus,
};
use crate::controller::conditions::Reason;

/// The referenced MLWorkspace, as far as a target is concerned.
#[derive(Clone, Debug, PartialEq)]
pub enum WorkspaceState {
    /// No MLWorkspace of that name in the namespace.
    Missing,
    /// It exists but has not reached Azure; carries its reason and message.
    NotReady {
        /// The workspace's reason.
        reason: String,
        /// The workspace's message.
        message: String,
    },
    /// It reached Azure.
    Ready,
    /// Its reconciler has not reported on it yet (no `Ready` condition).
    Pending,
}

/// The outcome of the claim index (rule 4).
#[derive(Clone, Debug, PartialEq)]
pub enum ClaimState {
    /// This target holds the oldest claim on its resource.
    Winner,
    /// An older target holds it (`kind namespace/name`).
    LosesTo(String),
}

/// The referenced Secret's metadata.
#[derive(Clone, Debug, PartialEq)]
pub enum SecretState {
    /// The kind needs no Secret.
    NotNeeded,
    /// The Secret does not exist.
    Missing(String),
    /// It exists but is not opted in with the credential label (rule 12): never read.
    NotOptedIn(String),
    /// It exists (only its resourceVersion is known).
    Present,
}

/// What the workspace LIST says about this target's compute name.
#[derive(Clone, Debug, PartialEq)]
pub enum AzureView {
    /// No compute of that name. `same_resource_as` names another compute attaching the same
    /// underlying resource, if there is one.
    Absent {
        /// Another compute (name) attaching the same resource.
        same_resource_as: Option<String>,
    },
    /// A compute of that name exists.
    Present(ComputeSummary),
}

/// The parts of an existing compute that planning needs.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct ComputeSummary {
    /// Same computeType and same underlying resource as the target.
    pub matches: bool,
    /// Azure's provisioningState.
    pub provisioning_state: Option<String>,
    /// Azure's provisioningErrors.
    pub errors: Vec<ProvisioningError>,
    /// ARM id of the compute.
    pub id: Option<String>,
    /// What it attaches (`computeType resource`), for a message naming it.
    pub attaches: Option<String>,
}

impl ComputeSummary {
    fn state_is(&self, s: &str) -> bool {
        self.provisioning_state
            .as_deref()
            .is_some_and(|p| p.eq_ignore_ascii_case(s))
    }

    /// Succeeded, Failed or Canceled (or no state at all, which Azure uses for old computes).
    pub fn is_terminal(&self) -> bool {
        self.provisioning_state.is_none()
            || ["Succeeded", "Failed", "Canceled"]
                .iter()
                .any(|s| self.state_is(s))
    }

    /// Failed or Canceled.
    pub fn is_failed(&self) -> bool {
        self.state_is("Failed") || self.state_is("Canceled")
    }
}

/// Everything planning looks at.
#[derive(Clone, Debug)]
pub struct Observed<'a> {
    /// `metadata.deletionTimestamp` is set.
    pub deleting: bool,
    /// Detach or Orphan.
    pub deletion_policy: DeletionPolicy,
    /// Current status (default when none).
    pub status: &'a TargetStatus,
    /// The workspace.
    pub workspace: WorkspaceState,
    /// The claim.
    pub claim: ClaimState,
    /// The Secret.
    pub secret: SecretState,
    /// Fingerprint of what an attach would push now.
    pub desired_hash: &'a str,
    /// The LIST view; `None` until fetched.
    pub azure: Option<AzureView>,
    /// The connection Secret the spec asks for (rule 12).
    pub connection: ConnectionView,
    /// Whether a preflight precedes a PUT (rule 13).
    pub preflight: PreflightView,
}

/// Preflight as far as planning is concerned (rule 13).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PreflightView {
    /// The kind has something to read (`AttachTarget::preflight_read`).
    pub applies: bool,
    /// `spec.preflight`.
    pub mode: crate::api::PreflightMode,
}

/// What the stores say about the connection Secret (`spec.writeConnectionSecretToRef`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ConnectionView {
    /// The name the spec asks for, if any.
    pub wanted: Option<String>,
    /// The Secret `status.connectionSecretName` names exists and this target controls it.
    pub in_place: bool,
}

/// Whether the connection Secret must be written (or an old one removed) before the target is
/// Ready: it is written once per attached configuration, and again if it went missing.
pub fn connection_stale(status: &TargetStatus, view: &ConnectionView) -> bool {
    let recorded = status.connection_secret_name.as_deref();
    match view.wanted.as_deref() {
        None => recorded.is_some(),
        Some(wanted) => {
            recorded != Some(wanted)
                || status.connection_secret_hash.is_none()
                || status.connection_secret_hash != status.attached_config_hash
                || !view.in_place
        }
    }
}

/// The one next step.
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    /// Fetch the workspace's compute list (from the shared cache) and plan again.
    NeedAzureView,
    /// Remove the finalizer: nothing (more) to do in Azure.
    Release {
        /// Why (for the event).
        why: &'static str,
    },
    /// Only report a condition; no Azure call.
    Report {
        /// Reason.
        reason: Reason,
        /// Message.
        message: String,
    },
    /// Poll the in-flight operation.
    Poll(PendingOperation),
    /// Read the underlying resource and check its prerequisites before a PUT (rule 13).
    Preflight,
    /// PUT the compute.
    Attach {
        /// Why: first attach, re-attach after a change, or a repair of drift.
        cause: AttachCause,
    },
    /// DELETE with underlyingResourceAction=Detach.
    Detach {
        /// First half of a re-attach (rule 5) rather than a deletion.
        reattach: bool,
    },
    /// Take over an existing matching attachment (rule 3) and report its state.
    Adopt(ComputeSummary),
    /// The attachment is current; report Azure's state (one GET first if it is still
    /// provisioning).
    InSync(ComputeSummary),
    /// The attachment is current and Succeeded, but the connection Secret is not written for
    /// it (or an old one must go): listKeys, then write it (rule 12).
    WriteConnection(ComputeSummary),
}

/// Why an attach happens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachCause {
    /// Never attached by this object.
    Initial,
    /// The second half of a re-attach.
    Reattach,
    /// The attachment vanished from Azure (detached in the portal): repair it.
    Drift,
}

/// Whether this object ever caused state in Azure (so deleting it must detach).
pub fn reached_azure(status: &TargetStatus) -> bool {
    status.attached_config_hash.is_some()
        || status.operation.is_some()
        || status.compute_id.is_some()
}

/// The planning function (rules 1-5 and 9).
pub fn plan(o: &Observed<'_>) -> Decision {
    if o.deleting {
        return plan_delete(o);
    }
    match &o.workspace {
        WorkspaceState::Missing => {
            return report(
                Reason::WorkspaceNotFound,
                "the referenced MLWorkspace does not exist in this namespace",
            );
        }
        WorkspaceState::NotReady { reason, message } => {
            return report(
                Reason::WorkspaceNotReady,
                format!("the MLWorkspace is not ready ({reason}): {message}"),
            );
        }
        WorkspaceState::Pending => {
            return report(
                Reason::WorkspacePending,
                "waiting for the MLWorkspace to be reconciled",
            );
        }
        WorkspaceState::Ready => {}
    }
    if let Some(op) = &o.status.operation {
        return Decision::Poll(op.clone());
    }
    if let ClaimState::LosesTo(owner) = &o.claim {
        // Rule 4: a later claim causes no Azure call at all.
        return report(
            Reason::DuplicateAttachment,
            format!(
                "{owner} already claims this resource in the same workspace (the oldest claim wins)"
            ),
        );
    }
    match &o.secret {
        SecretState::Missing(name) => {
            return report(
                Reason::SecretNotFound,
                format!("Secret {name:?} does not exist in this namespace"),
            );
        }
        SecretState::NotOptedIn(name) => {
            return report(
                Reason::SecretNotLabeled,
                crate::controller::secrets::not_opted_in_message(name),
            );
        }
        SecretState::NotNeeded | SecretState::Present => {}
    }
    let Some(view) = &o.azure else {
        return Decision::NeedAzureView;
    };
    match view {
        AzureView::Present(c) if !c.matches => report(
            Reason::ComputeNameTaken,
            format!(
                "a compute with this name already exists in the workspace and attaches {}; \
                 it is left alone: choose another spec.computeName",
                c.attaches.as_deref().unwrap_or("something else")
            ),
        ),
        AzureView::Present(c) => match o.status.attached_config_hash.as_deref() {
            None => Decision::Adopt(c.clone()),
            Some(h) if h == o.desired_hash => {
                if c.is_terminal() && !c.is_failed() && connection_stale(o.status, &o.connection) {
                    Decision::WriteConnection(c.clone())
                } else {
                    Decision::InSync(c.clone())
                }
            }
            Some(_) if !c.is_terminal() => Decision::InSync(c.clone()),
            Some(_) => Decision::Detach { reattach: true },
        },
        AzureView::Absent {
            same_resource_as: Some(other),
        } => report(
            Reason::DuplicateAttachment,
            format!(
                "the resource is already attached to this workspace as compute {other:?} (outside this object)"
            ),
        ),
        AzureView::Absent {
            same_resource_as: None,
        } => {
            if o.status.rejected_config_hash.as_deref() == Some(o.desired_hash) {
                // Azure refused exactly this configuration before: wait for a change (rule 11).
                let previous = o.status.ready();
                return Decision::Report {
                    reason: previous
                        .and_then(|c| Reason::parse(&c.reason))
                        .filter(|r| r.is_permanent())
                        .unwrap_or(Reason::InvalidSpec),
                    message: previous.map(|c| c.message.clone()).unwrap_or_default(),
                };
            }
            if o.preflight.applies
                && o.preflight.mode != crate::api::PreflightMode::Skip
                && o.status.preflight_hash.as_deref() != Some(o.desired_hash)
            {
                // Rule 13: the seed's prerequisites are checked before this configuration's
                // first PUT (never again for a Ready target: it makes no PUT).
                return Decision::Preflight;
            }
            let cause = match o.status.attached_config_hash.as_deref() {
                None => AttachCause::Initial,
                // Gone with the configuration it was attached with: detached behind our back.
                Some(h) if h == o.desired_hash => AttachCause::Drift,
                // Gone with an older configuration: the second half of a re-attach (rule 5).
                Some(_) => AttachCause::Reattach,
            };
            Decision::Attach { cause }
        }
    }
}

fn plan_delete(o: &Observed<'_>) -> Decision {
    if o.deletion_policy == DeletionPolicy::Orphan {
        return Decision::Release {
            why: "deletionPolicy is Orphan: the attachment is left in Azure",
        };
    }
    if !reached_azure(o.status) {
        return Decision::Release {
            why: "the target never reached Azure",
        };
    }
    match &o.workspace {
        WorkspaceState::Ready => {}
        WorkspaceState::Missing => {
            return report(
                Reason::WorkspaceNotFound,
                "cannot detach: the MLWorkspace does not exist; recreate it, or set spec.deletionPolicy: Orphan to release this object",
            );
        }
        WorkspaceState::NotReady { reason, message } => {
            return report(
                Reason::WorkspaceNotReady,
                format!(
                    "cannot detach: the MLWorkspace is not ready ({reason}: {message}); fix it, or set spec.deletionPolicy: Orphan to release this object"
                ),
            );
        }
        WorkspaceState::Pending => {
            return report(
                Reason::WorkspacePending,
                "waiting for the MLWorkspace to be reconciled before detaching",
            );
        }
    }
    if let Some(op) = &o.status.operation
        && op.kind == OperationKind::Detach
    {
        return Decision::Poll(op.clone());
    }
    if let ClaimState::LosesTo(_) = &o.claim {
        // Rule 4: a later claim never detaches. If it attached before it lost (a race the
        // claim index could not see), the compute of its name may now be the winner's, which
        // adopted it: leaving it costs an attachment the winner reports; detaching could take
        // the winner's compute away.
        return Decision::Release {
            why: "an older target claims this resource; its attachment is left to that target",
        };
    }
    match &o.azure {
        // The status proves this object attached the compute; a DELETE of an absent compute
        // is a harmless 204, so deletion does not spend a LIST (rule 7 budget).
        None => Decision::Detach { reattach: false },
        // Never detach a compute that is not ours (rule 3).
        Some(AzureView::Present(c)) if !c.matches => Decision::Release {
            why: "the compute of this name is not this target's",
        },
        Some(AzureView::Absent { .. }) if o.status.operation.is_none() => Decision::Release {
            why: "the compute is already gone from the workspace",
        },
        Some(_) => Decision::Detach { reattach: false },
    }
}

fn report(reason: Reason, message: impl Into<String>) -> Decision {
    Decision::Report {
        reason,
        message: message.into(),
    }
}

#[cfg(test)]
mod tests;
