//! The types of settling: what a step's call returned ([`Outcome`]), the facts of the pass
//! ([`Facts`]) and the result ([`Settled`]).

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::api::{PendingOperation, TargetStatus};
use crate::azure::models::OperationStatus;
use crate::azure::{ArmError, DetachOutcome};
use crate::controller::conditions::Reason;
use crate::controller::connect::ConnectError;
use crate::controller::events::EventReason;
use crate::controller::plan::{AttachCause, AzureView, ComputeSummary};

/// What one step's call returned (or why it made none), typed.
#[derive(Debug)]
pub enum Outcome {
    /// The plan only reports a condition.
    Report {
        /// Reason.
        reason: Reason,
        /// Message.
        message: String,
    },
    /// The plan releases the object (finalizer removed).
    Release {
        /// Why, for the event.
        why: &'static str,
        /// `deletionPolicy: Orphan`.
        orphan: bool,
    },
    /// No ARM client could be made for the workspace.
    ConnectFailed(ConnectError),
    /// The workspace LIST (from the shared cache), as this target sees it.
    Listed(AzureView),
    /// The workspace LIST failed.
    ListFailed(ArmError),
    /// The operation is not due for a poll yet (woken early): no call.
    PollNotDue(Duration),
    /// The operation record expired (404).
    OperationGone,
    /// Azure's answer to a poll of `op`.
    Polled {
        /// The operation polled.
        op: PendingOperation,
        /// Azure's status of it.
        status: Box<OperationStatus>,
    },
    /// The attach could not be sent (Secret missing or unlabeled, key missing, invalid spec).
    AttachBlocked {
        /// Reason.
        reason: Reason,
        /// Message.
        message: String,
    },
    /// Azure accepted the PUT.
    Put {
        /// Why it was sent.
        cause: AttachCause,
        /// What Azure answered.
        answer: PutAnswer,
    },
    /// Azure refused the PUT body (400): permanent for this configuration (rule 11).
    PutRefused {
        /// The kind reads it as its compute type being refused (`AttachTarget::refuses_type`).
        type_refused: bool,
        /// The error, for the condition.
        message: String,
    },
    /// Azure's answer to the DELETE (underlyingResourceAction=Detach).
    Detach {
        /// First half of a re-attach.
        reattach: bool,
        /// What Azure answered.
        outcome: DetachOutcome,
    },
    /// An existing matching attachment is taken over (rule 3): no call.
    Adopt(ComputeSummary),
    /// The attachment is current and terminal: no call.
    InSync(ComputeSummary),
    /// A GET of a compute still provisioning (`None`: it is gone).
    Refreshed(Option<ComputeSummary>),
    /// The connection Secret step (listKeys and a Secret write, or only removing an old one).
    Connection {
        /// The compute it was written for.
        compute: ComputeSummary,
        /// What happened.
        result: ConnectionResult,
    },
    /// What preflight found (rule 13).
    Preflight(PreflightResult),
    /// Any other ARM failure of the step's call.
    ArmFailed(ArmError),
}

/// What preflight's reads found.
#[derive(Clone, Debug, PartialEq)]
pub enum PreflightResult {
    /// Every prerequisite is met.
    Passed,
    /// The underlying resource does not exist (the message names it).
    NotFound(String),
    /// A prerequisite is not met.
    Unmet(crate::azure::Unmet),
}

/// Azure's answer to an accepted PUT.
#[derive(Clone, Debug, PartialEq)]
pub enum PutAnswer {
    /// Finished (200/201 with a terminal or absent provisioningState).
    Done(ComputeSummary),
    /// A long-running operation to poll.
    Operation {
        /// Its URL (persisted in status to survive a restart).
        url: String,
        /// `Retry-After`, if sent.
        retry_after: Option<Duration>,
    },
    /// Provisioning without an operation URL: follow provisioningState with GETs.
    NoOperation {
        /// `Retry-After`, if sent.
        retry_after: Option<Duration>,
    },
}

/// What the connection Secret step did.
#[derive(Clone, Debug, PartialEq)]
pub struct ConnectionResult {
    /// The Secret an earlier name pointed at was handled (removed if still ours).
    pub removed_old: bool,
    /// The write itself.
    pub write: ConnectionWrite,
}

/// The write of the connection Secret.
#[derive(Clone, Debug, PartialEq)]
pub enum ConnectionWrite {
    /// The spec asks for none (only an old one was removed).
    NotWanted,
    /// Written under this name.
    Written(String),
    /// A Secret of that name is not this target's: nothing written (the condition message).
    Conflict(String),
    /// The write (or listKeys, or removing the old one) failed.
    Failed(String),
}

/// An edit of the workspace's LIST cache (rule 7), applied with the object at hand.
#[derive(Clone, Debug, PartialEq)]
pub enum CacheEdit {
    /// This target's compute now has this provisioningState (a secret-free stand-in).
    Upsert(String),
    /// This target's compute is gone.
    Remove,
    /// Forget the whole LIST (it was wrong).
    Invalidate,
}

/// What changes after a step that does not finish the pass.
#[derive(Clone, Debug, PartialEq)]
pub enum Learned {
    /// Only the status changed.
    Nothing,
    /// What the workspace LIST says now.
    Azure(AzureView),
    /// The connection Secret was just written and is ours.
    ConnectionInPlace,
}

/// What happens after a step.
#[derive(Clone, Debug, PartialEq)]
pub enum Next {
    /// Plan again in this pass with what was learned (each step makes at most one call).
    Replan(Learned),
    /// The pass ends; look again after this long (watches bring the object back sooner).
    After(Duration),
    /// Nothing more to do: a deletion may remove the finalizer.
    Done,
}

/// The result of settling one step.
#[derive(Clone, Debug, PartialEq)]
pub struct Settled {
    /// The status after the step.
    pub status: TargetStatus,
    /// Events to publish, in order.
    pub events: Vec<(EventReason, String)>,
    /// Edits of the LIST cache.
    pub cache: Vec<CacheEdit>,
    /// What happens next.
    pub next: Next,
}

/// The facts of a pass that settling reads (all fixed for the pass).
#[derive(Clone, Debug)]
pub struct Facts<'a> {
    /// The status this pass started from (the last written): events fire on a change from it,
    /// and conditions keep its lastTransitionTime.
    pub old: &'a TargetStatus,
    /// `metadata.generation`.
    pub generation: Option<i64>,
    /// The compute's name in the workspace.
    pub compute_name: &'a str,
    /// Its ARM id, when the workspace is known.
    pub compute_id: Option<String>,
    /// The object is being deleted.
    pub deleting: bool,
    /// The fingerprint an attach pushes now.
    pub desired_hash: &'a str,
    /// `spec.preflight`.
    pub preflight: crate::api::PreflightMode,
    /// The credential Secret's resourceVersion, when the kind reads one.
    pub secret_rv: Option<&'a str>,
    /// Resync period.
    pub resync: Duration,
    /// The time of this pass (whole seconds).
    pub now: Time,
}
