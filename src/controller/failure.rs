//! The one table from a failure to (condition reason, retry delay), used by the target and the
//! MLWorkspace reconcilers alike (rule 11). Before, each had its own copy and they disagreed
//! (a 404 waited 60 s in one and 120 s in the other; a 400 was `InvalidSpec` in one and
//! `AzureError` in the other).

use std::time::Duration;

use crate::azure::{ArmError, ArmErrorKind};
use crate::controller::conditions::Reason;
use crate::controller::connect::ConnectError;

/// Wait after a 429 without `Retry-After`.
const THROTTLED: Duration = Duration::from_secs(10);
/// Wait after a transient error (5xx, transport) without `Retry-After`.
const TRANSIENT: Duration = Duration::from_secs(15);
/// Least wait for something a person must fix (missing workspace, refused identity).
const NEEDS_A_PERSON: Duration = Duration::from_secs(60);
/// Wait after Azure refused a request body: it will refuse it again until the spec changes.
const REFUSED: Duration = Duration::from_secs(300);

/// What a failure means for the object that met it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Failure {
    /// The `Ready=False` reason.
    pub reason: Reason,
    /// When to look again (watches bring the object back sooner on a change).
    pub delay: Duration,
}

/// The reason and delay of an ARM error kind (`retry_after` from the answer, if any).
pub fn arm_kind(kind: ArmErrorKind, retry_after: Option<Duration>, resync: Duration) -> Failure {
    let (reason, delay) = match kind {
        ArmErrorKind::Throttled => (Reason::Throttled, retry_after.unwrap_or(THROTTLED)),
        ArmErrorKind::NotFound => (Reason::WorkspaceNotFound, resync.max(NEEDS_A_PERSON)),
        ArmErrorKind::Unauthorized | ArmErrorKind::Forbidden | ArmErrorKind::Credential => {
            (Reason::CredentialRejected, resync.max(NEEDS_A_PERSON))
        }
        ArmErrorKind::BadRequest | ArmErrorKind::InvalidOperationUrl => {
            (Reason::InvalidSpec, REFUSED)
        }
        ArmErrorKind::Conflict
        | ArmErrorKind::Server
        | ArmErrorKind::Transport
        | ArmErrorKind::Decode => (Reason::AzureError, retry_after.unwrap_or(TRANSIENT)),
    };
    Failure { reason, delay }
}

/// [`arm_kind`] of an error.
pub fn arm(e: &ArmError, resync: Duration) -> Failure {
    arm_kind(e.kind(), e.retry_after(), resync)
}

/// Why no ARM client could be made for a workspace, as the MLWorkspace itself reports it.
pub fn connect(e: &ConnectError, resync: Duration) -> Failure {
    let reason = match e {
        ConnectError::SecretNotFound(_) => Reason::SecretNotFound,
        ConnectError::SecretKeyMissing { .. } => Reason::SecretKeyMissing,
        ConnectError::SecretNotOptedIn(_) => Reason::SecretNotLabeled,
        ConnectError::InvalidSpec(_) => Reason::InvalidSpec,
        ConnectError::Credential(_) | ConnectError::Cloud(_) => Reason::CredentialRejected,
        ConnectError::Kube(_) => Reason::AzureError,
    };
    let delay = match reason {
        Reason::AzureError => TRANSIENT,
        _ => resync.max(NEEDS_A_PERSON),
    };
    Failure { reason, delay }
}

/// The same failure as a target of that workspace reports it: the identity being refused and
/// a transient error keep their reason; anything about the workspace's own configuration is
/// `WorkspaceNotReady` (the workspace's condition names the precise reason).
pub fn connect_for_target(e: &ConnectError, resync: Duration) -> Failure {
    let own = connect(e, resync);
    match own.reason {
        Reason::CredentialRejected | Reason::AzureError => own,
        _ => Failure {
            reason: Reason::WorkspaceNotReady,
            ..own
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RESYNC: Duration = Duration::from_secs(20);

    #[test]
    fn rule11_arm_errors_map_to_one_reason_and_delay() {
        let table = [
            (ArmErrorKind::Throttled, Reason::Throttled, THROTTLED),
            (
                ArmErrorKind::NotFound,
                Reason::WorkspaceNotFound,
                NEEDS_A_PERSON,
            ),
            (
                ArmErrorKind::Unauthorized,
                Reason::CredentialRejected,
                NEEDS_A_PERSON,
            ),
            (
                ArmErrorKind::Forbidden,
                Reason::CredentialRejected,
                NEEDS_A_PERSON,
            ),
            (
                ArmErrorKind::Credential,
                Reason::CredentialRejected,
                NEEDS_A_PERSON,
            ),
            (ArmErrorKind::BadRequest, Reason::InvalidSpec, REFUSED),
            (
                ArmErrorKind::InvalidOperationUrl,
                Reason::InvalidSpec,
                REFUSED,
            ),
            (ArmErrorKind::Conflict, Reason::AzureError, TRANSIENT),
            (ArmErrorKind::Server, Reason::AzureError, TRANSIENT),
            (ArmErrorKind::Transport, Reason::AzureError, TRANSIENT),
            (ArmErrorKind::Decode, Reason::AzureError, TRANSIENT),
        ];
        for (kind, reason, delay) in table {
            assert_eq!(
                arm_kind(kind, None, RESYNC),
                Failure { reason, delay },
                "{kind:?}"
            );
        }
    }

    #[test]
    fn rule11_retry_after_wins_where_azure_sends_it_and_people_are_never_hot_looped() {
        let after = Duration::from_secs(42);
        assert_eq!(
            arm_kind(ArmErrorKind::Throttled, Some(after), RESYNC).delay,
            after
        );
        assert_eq!(
            arm_kind(ArmErrorKind::Server, Some(after), RESYNC).delay,
            after
        );
        // A long resync is never shortened for something a person must fix.
        let long = Duration::from_secs(600);
        assert_eq!(
            arm_kind(ArmErrorKind::Forbidden, Some(after), long).delay,
            long
        );
    }

    #[test]
    fn a_target_sees_the_workspace_configuration_as_workspace_not_ready() {
        let missing = ConnectError::SecretNotFound("sp".into());
        assert_eq!(connect(&missing, RESYNC).reason, Reason::SecretNotFound);
        assert_eq!(
            connect_for_target(&missing, RESYNC).reason,
            Reason::WorkspaceNotReady
        );
        let unlabelled = ConnectError::SecretNotOptedIn("sp".into());
        assert_eq!(
            connect(&unlabelled, RESYNC).reason,
            Reason::SecretNotLabeled
        );
        assert_eq!(
            connect_for_target(&unlabelled, RESYNC).reason,
            Reason::WorkspaceNotReady
        );
    }
}
