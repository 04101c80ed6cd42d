//! Table tests of `settle`, like `plan`'s: one outcome in, the status, condition, events, cache
//! edits and next step out. Names carry the rule they check (`docs/design/rules.md`).

use super::*;
use crate::api::Condition;
use crate::azure::AzureFault;
use crate::azure::DetachOutcome;
use crate::azure::models::{ErrorDetail, OperationState, OperationStatus};
use crate::controller::connect::ConnectError;

const NAME: &str = "gpu";
const ID: &str = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/w/computes/gpu";
const RESYNC: Duration = Duration::from_secs(20);

fn time(secs: i64) -> Time {
    Time(k8s_openapi::jiff::Timestamp::from_second(secs).expect("a valid second"))
}

fn facts(old: &TargetStatus) -> Facts<'_> {
    Facts {
        old,
        generation: Some(3),
        compute_name: NAME,
        compute_id: Some(ID.to_owned()),
        deleting: false,
        desired_hash: "h1",
        preflight: crate::api::PreflightMode::Enforce,
        secret_rv: Some("42"),
        resync: RESYNC,
        now: time(1_000),
    }
}

fn with_ready(reason: Reason) -> TargetStatus {
    let mut s = TargetStatus {
        attached_config_hash: Some("h1".into()),
        compute_id: Some(ID.into()),
        ..Default::default()
    };
    set_ready(&mut s.conditions, reason, "before", Some(3), time(10));
    s
}

fn ready(s: &TargetStatus) -> (&str, &str) {
    let c: &Condition = s.ready().expect("a Ready condition");
    (c.status.as_str(), c.reason.as_str())
}

fn summary(state: &str) -> ComputeSummary {
    ComputeSummary {
        matches: true,
        provisioning_state: Some(state.into()),
        id: Some(ID.into()),
        ..Default::default()
    }
}

fn op(kind: OperationKind, reattach: bool) -> PendingOperation {
    PendingOperation {
        kind,
        url: "https://management.azure.com/op/1".into(),
        reattach,
        config_hash: Some("h0".into()),
        started_at: Some(time(900)),
        next_poll_at: Some(time(990)),
    }
}

fn polled(state: OperationState, error: Option<(&str, &str)>) -> Box<OperationStatus> {
    let mut s = OperationStatus::with_state(state);
    s.error = error.map(|(code, message)| ErrorDetail {
        code: Some(code.into()),
        message: Some(message.into()),
        ..Default::default()
    });
    Box::new(s)
}

fn fault() -> AzureFault {
    AzureFault {
        code: "Code".into(),
        message: "message".into(),
    }
}

fn run(old: &TargetStatus, outcome: Outcome) -> Settled {
    settle(&facts(old), old.clone(), outcome)
}

fn event_reasons(s: &Settled) -> Vec<&'static str> {
    s.events.iter().map(|(r, _)| r.as_str()).collect()
}

#[test]
fn rule2_an_accepted_put_records_the_attach_and_plans_again() {
    let old = TargetStatus::default();
    let s = run(
        &old,
        Outcome::Put {
            cause: AttachCause::Initial,
            answer: PutAnswer::Done(summary("Succeeded")),
        },
    );
    assert_eq!(s.status.attached_config_hash.as_deref(), Some("h1"));
    assert_eq!(s.status.secret_resource_version.as_deref(), Some("42"));
    assert_eq!(s.status.compute_id.as_deref(), Some(ID));
    assert_eq!(s.cache, vec![CacheEdit::Upsert("Succeeded".into())]);
    assert!(
        s.events.is_empty(),
        "a first attach announces itself when done"
    );
    assert_eq!(
        s.next,
        Next::Replan(Learned::Azure(AzureView::Present(summary("Succeeded"))))
    );
}

#[test]
fn rule6_an_operation_url_is_persisted_and_polled_after_retry_after() {
    let old = TargetStatus::default();
    let table = [
        (None, DEFAULT_POLL),
        (Some(Duration::from_secs(7)), Duration::from_secs(7)),
        (Some(Duration::from_millis(10)), Duration::from_secs(1)),
        (Some(Duration::from_secs(999)), Duration::from_secs(120)),
    ];
    for (retry_after, wait) in table {
        for (cause, reason) in [
            (AttachCause::Initial, "Attaching"),
            (AttachCause::Reattach, "Reattaching"),
        ] {
            let s = run(
                &old,
                Outcome::Put {
                    cause,
                    answer: PutAnswer::Operation {
                        url: "https://management.azure.com/op/2".into(),
                        retry_after,
                    },
                },
            );
            let op = s.status.operation.clone().expect("persisted");
            assert_eq!(op.kind, OperationKind::Attach);
            assert_eq!(op.reattach, cause == AttachCause::Reattach);
            assert_eq!(op.config_hash.as_deref(), Some("h1"));
            assert_eq!(op.next_poll_at, Some(after(&time(1_000), wait)));
            assert_eq!(ready(&s.status), ("False", reason));
            assert_eq!(s.status.provisioning_state.as_deref(), Some("Creating"));
            assert_eq!(s.next, Next::After(wait), "{retry_after:?}");
        }
    }
}

#[test]
fn rule11_a_refused_put_is_remembered_and_classified() {
    use crate::api::{BatchTarget, RemoteVmTarget};
    use crate::controller::target::AttachTarget;
    let old = TargetStatus::default();
    // How a 400 is read is the kind's (`AttachTarget::refuses_type`); settle only applies it.
    let table = [
        (RemoteVmTarget::refuses_type(None), Reason::InvalidSpec),
        (
            RemoteVmTarget::refuses_type(Some("InvalidComputeType")),
            Reason::ComputeTypeRefused,
        ),
        (BatchTarget::refuses_type(None), Reason::ComputeTypeRefused),
    ];
    for (type_refused, reason) in table {
        let s = run(
            &old,
            Outcome::PutRefused {
                type_refused,
                message: "Compute_CreateOrUpdate: rejected with HTTP 400".into(),
            },
        );
        assert_eq!(s.status.rejected_config_hash.as_deref(), Some("h1"));
        assert_eq!(ready(&s.status), ("False", reason.as_str()));
        assert_eq!(event_reasons(&s), [reason.as_str()]);
        assert_eq!(s.next, Next::After(Duration::from_secs(300)), "permanent");
        assert_eq!(s.status.secret_resource_version, None, "nothing attached");
    }
}

#[test]
fn rule6_polls() {
    let mut old = with_ready(Reason::Attaching);
    old.operation = Some(op(OperationKind::Attach, false));
    let table: Vec<(&str, Outcome, &str, Next)> = vec![
        (
            "not due",
            Outcome::PollNotDue(Duration::from_secs(2)),
            "Attaching",
            Next::After(Duration::from_secs(2)),
        ),
        (
            "in progress",
            Outcome::Polled {
                op: op(OperationKind::Attach, false),
                status: polled(OperationState::InProgress, None),
            },
            "Attaching",
            Next::After(DEFAULT_POLL),
        ),
        (
            "reattach in progress",
            Outcome::Polled {
                op: op(OperationKind::Attach, true),
                status: polled(OperationState::InProgress, None),
            },
            "Reattaching",
            Next::After(DEFAULT_POLL),
        ),
        (
            "failed",
            Outcome::Polled {
                op: op(OperationKind::Attach, false),
                status: polled(OperationState::Failed, Some(("BadSsh", "no route"))),
            },
            "ProvisioningFailed",
            Next::After(Duration::from_secs(300)),
        ),
        (
            "record expired",
            Outcome::OperationGone,
            "Attaching",
            Next::After(RELIST),
        ),
    ];
    for (name, outcome, reason, next) in table {
        let s = run(&old, outcome);
        assert_eq!(ready(&s.status).1, reason, "{name}");
        assert_eq!(s.next, next, "{name}");
    }
}

#[test]
fn rule6_a_failed_attach_operation_is_not_retried_for_its_configuration() {
    let mut old = with_ready(Reason::Attaching);
    old.operation = Some(op(OperationKind::Attach, false));
    let s = run(
        &old,
        Outcome::Polled {
            op: op(OperationKind::Attach, false),
            status: polled(OperationState::Failed, Some(("BadSsh", "no route"))),
        },
    );
    assert_eq!(s.status.operation, None);
    assert_eq!(s.status.rejected_config_hash.as_deref(), Some("h0"));
    assert_eq!(s.status.provisioning_state.as_deref(), Some("Failed"));
    assert_eq!(s.status.provisioning_errors[0].code, "BadSsh");
    let message = &s.status.ready().expect("ready").message;
    assert!(message.contains("BadSsh: no route"), "{message}");
}

#[test]
fn rule6_a_finished_attach_operation_records_its_own_configuration() {
    let mut old = with_ready(Reason::Attaching);
    old.operation = Some(op(OperationKind::Attach, false));
    let s = run(
        &old,
        Outcome::Polled {
            op: op(OperationKind::Attach, false),
            status: polled(OperationState::Succeeded, None),
        },
    );
    assert_eq!(s.status.operation, None);
    assert_eq!(
        s.status.attached_config_hash.as_deref(),
        Some("h0"),
        "the hash the PUT carried, not today's: a change meanwhile re-attaches"
    );
    assert_eq!(s.cache, vec![CacheEdit::Upsert("Succeeded".into())]);
    assert!(matches!(
        s.next,
        Next::Replan(Learned::Azure(AzureView::Present(_)))
    ));
    assert!(s.events.is_empty());
}

#[test]
fn rule5_a_finished_detach_of_a_reattach_requeues_at_once() {
    let mut old = with_ready(Reason::Reattaching);
    old.operation = Some(op(OperationKind::Detach, true));
    let s = run(
        &old,
        Outcome::Polled {
            op: op(OperationKind::Detach, true),
            status: polled(OperationState::Succeeded, None),
        },
    );
    assert_eq!(s.next, Next::After(Duration::ZERO));
    assert_eq!(ready(&s.status), ("False", "Reattaching"));
    assert_eq!(s.cache, vec![CacheEdit::Remove]);
    assert_eq!(
        s.status.attached_config_hash.as_deref(),
        Some("h1"),
        "kept: the next plan sees an old hash and an absent compute, and attaches"
    );
}

#[test]
fn rule1_a_detach_forgets_the_attachment_and_finishes() {
    let mut old = with_ready(Reason::Attached);
    old.connection_secret_name = Some("conn".into());
    old.connection_secret_hash = Some("h1".into());
    for outcome in [
        DetachOutcome::Done,
        DetachOutcome::Absent,
        DetachOutcome::InProgress {
            operation_url: None,
            retry_after: None,
        },
    ] {
        let f = Facts {
            deleting: true,
            ..facts(&old)
        };
        let s = settle(
            &f,
            old.clone(),
            Outcome::Detach {
                reattach: false,
                outcome,
            },
        );
        assert_eq!(s.next, Next::Done);
        assert_eq!(event_reasons(&s), ["Detached"]);
        assert_eq!(s.status.compute_id, None);
        assert_eq!(s.status.attached_config_hash, None);
        assert_eq!(s.status.connection_secret_name, None);
        assert_eq!(s.cache, vec![CacheEdit::Remove]);
    }
}

#[test]
fn rule1_an_accepted_detach_is_followed() {
    let old = with_ready(Reason::Attached);
    for (reattach, reason, events) in [
        (false, "Detaching", vec![]),
        (true, "Reattaching", vec!["Reattaching"]),
    ] {
        let s = run(
            &old,
            Outcome::Detach {
                reattach,
                outcome: DetachOutcome::InProgress {
                    operation_url: Some("https://management.azure.com/op/3".into()),
                    retry_after: Some(Duration::from_secs(5)),
                },
            },
        );
        let op = s.status.operation.clone().expect("persisted");
        assert_eq!((op.kind, op.reattach), (OperationKind::Detach, reattach));
        assert_eq!(ready(&s.status).1, reason);
        assert_eq!(s.status.provisioning_state.as_deref(), Some("Deleting"));
        assert_eq!(event_reasons(&s), events);
        assert_eq!(s.next, Next::After(Duration::from_secs(5)));
    }
}

#[test]
fn rule11_a_failed_resync_list_keeps_a_ready_target_ready() {
    let throttled = || ArmError::Throttled {
        operation: "Compute_List",
        retry_after: Duration::from_secs(8),
        client_side: false,
    };
    let server = || ArmError::Server {
        operation: "Compute_List",
        status: 503,
        fault: fault(),
        retry_after: None,
    };
    let ready_before = with_ready(Reason::Attached);
    for e in [throttled(), server()] {
        let s = run(&ready_before, Outcome::ListFailed(e));
        assert_eq!(s.status, ready_before, "no change at all");
        assert!(s.events.is_empty());
        assert!(matches!(s.next, Next::After(_)));
    }
    let attaching = with_ready(Reason::Attaching);
    let s = run(&attaching, Outcome::ListFailed(throttled()));
    assert_eq!(ready(&s.status), ("False", "Throttled"));
    assert_eq!(event_reasons(&s), ["Throttled"]);
    assert_eq!(s.next, Next::After(Duration::from_secs(8)));
    let s = run(
        &ready_before,
        Outcome::ListFailed(ArmError::Forbidden {
            operation: "Compute_List",
            fault: fault(),
        }),
    );
    assert_eq!(
        ready(&s.status),
        ("False", "CredentialRejected"),
        "not transient"
    );
}

#[test]
fn rule11_a_missing_workspace_forgets_its_list() {
    let old = with_ready(Reason::Attached);
    let s = run(
        &old,
        Outcome::ArmFailed(ArmError::NotFound {
            operation: "Compute_Get",
            fault: fault(),
        }),
    );
    assert_eq!(ready(&s.status).1, "WorkspaceNotFound");
    assert_eq!(s.cache, vec![CacheEdit::Invalidate]);
    assert_eq!(s.next, Next::After(Duration::from_secs(60)));
}

#[test]
fn rule2_in_sync_is_ready_and_announces_only_the_first_time() {
    for (old, events) in [
        (with_ready(Reason::Attaching), vec!["Attached"]),
        (with_ready(Reason::Attached), vec![]),
    ] {
        let s = run(&old, Outcome::InSync(summary("Succeeded")));
        assert_eq!(ready(&s.status), ("True", "Attached"));
        assert_eq!(event_reasons(&s), events);
        assert_eq!(s.next, Next::After(RESYNC));
        assert!(s.cache.is_empty());
    }
    let first = run(
        &with_ready(Reason::Attached),
        Outcome::InSync(summary("Succeeded")),
    );
    let again = run(&first.status, Outcome::InSync(summary("Succeeded")));
    assert_eq!(
        again.status, first.status,
        "steady state: nothing to write, lastTransitionTime kept"
    );
}

#[test]
fn rule2_azure_failure_states_are_reported() {
    let old = with_ready(Reason::Attached);
    let mut failed = summary("Failed");
    failed.errors = vec![ProvisioningError {
        code: "E".into(),
        message: "m".into(),
    }];
    let s = run(&old, Outcome::InSync(failed));
    assert_eq!(ready(&s.status), ("False", "ProvisioningFailed"));
    assert_eq!(s.status.provisioning_errors.len(), 1);
    assert_eq!(event_reasons(&s), ["ProvisioningFailed"]);
}

#[test]
fn rule7_a_compute_still_provisioning_is_followed_with_gets() {
    let old = with_ready(Reason::Attaching);
    let s = run(&old, Outcome::Refreshed(Some(summary("Creating"))));
    assert_eq!(s.cache, vec![CacheEdit::Upsert("Creating".into())]);
    assert_eq!(ready(&s.status).1, "Attaching");
    assert_eq!(s.next, Next::After(DEFAULT_POLL));
    let s = run(&old, Outcome::Refreshed(Some(summary("Succeeded"))));
    assert!(matches!(s.next, Next::Replan(Learned::Azure(_))));
    let s = run(&old, Outcome::Refreshed(None));
    assert_eq!(s.cache, vec![CacheEdit::Remove]);
    assert_eq!(s.next, Next::After(RELIST));
}

#[test]
fn rule12_connection_secret_outcomes() {
    let old = with_ready(Reason::Attaching);
    let written = run(
        &old,
        Outcome::Connection {
            compute: summary("Succeeded"),
            result: ConnectionResult {
                removed_old: true,
                write: ConnectionWrite::Written("conn".into()),
            },
        },
    );
    assert_eq!(
        written.status.connection_secret_name.as_deref(),
        Some("conn")
    );
    assert_eq!(written.status.connection_secret_hash.as_deref(), Some("h1"));
    assert_eq!(written.next, Next::Replan(Learned::ConnectionInPlace));

    let removed = run(
        &TargetStatus {
            connection_secret_name: Some("old".into()),
            connection_secret_hash: Some("h1".into()),
            ..old.clone()
        },
        Outcome::Connection {
            compute: summary("Succeeded"),
            result: ConnectionResult {
                removed_old: true,
                write: ConnectionWrite::NotWanted,
            },
        },
    );
    assert_eq!(removed.status.connection_secret_name, None);
    assert_eq!(removed.next, Next::Replan(Learned::Nothing));

    let conflict = run(
        &old,
        Outcome::Connection {
            compute: summary("Succeeded"),
            result: ConnectionResult {
                removed_old: false,
                write: ConnectionWrite::Conflict("taken".into()),
            },
        },
    );
    assert_eq!(
        ready(&conflict.status),
        ("False", "ConnectionSecretConflict")
    );
    assert_eq!(
        conflict.status.provisioning_state.as_deref(),
        Some("Succeeded")
    );

    let failed = run(
        &old,
        Outcome::Connection {
            compute: summary("Succeeded"),
            result: ConnectionResult {
                removed_old: false,
                write: ConnectionWrite::Failed("503".into()),
            },
        },
    );
    assert_eq!(ready(&failed.status), ("False", "ConnectionSecretFailed"));
    assert!(matches!(failed.next, Next::After(d) if d <= TRANSIENT_RETRY));
}

#[test]
fn reports_announce_a_new_reason_once_and_wait_by_permanence() {
    let fresh = TargetStatus::default();
    let table = [
        (Reason::WorkspaceNotFound, RESYNC, true),
        (Reason::SecretNotFound, RESYNC, true),
        (Reason::ComputeNameTaken, Duration::from_secs(300), true),
    ];
    for (reason, wait, event) in table {
        let s = run(
            &fresh,
            Outcome::Report {
                reason,
                message: "m".into(),
            },
        );
        assert_eq!(ready(&s.status), ("False", reason.as_str()));
        assert_eq!(s.next, Next::After(wait), "{reason:?}");
        assert_eq!(!s.events.is_empty(), event);
        let again = run(
            &s.status,
            Outcome::Report {
                reason,
                message: "m".into(),
            },
        );
        assert!(again.events.is_empty(), "no second event for {reason:?}");
        assert_eq!(again.status, s.status, "nothing to write");
    }
}

#[test]
fn rule3_adopting_records_the_configuration_and_plans_again() {
    let old = TargetStatus::default();
    let s = run(&old, Outcome::Adopt(summary("Succeeded")));
    assert_eq!(s.status.attached_config_hash.as_deref(), Some("h1"));
    assert_eq!(s.status.secret_resource_version.as_deref(), Some("42"));
    assert_eq!(event_reasons(&s), ["Adopted"]);
    assert_eq!(s.next, Next::Replan(Learned::Nothing));
}

#[test]
fn rule9_release_finishes_with_the_right_event() {
    let old = TargetStatus::default();
    for (orphan, event) in [(false, "Released"), (true, "Orphaned")] {
        let s = run(&old, Outcome::Release { why: "w", orphan });
        assert_eq!(s.next, Next::Done);
        assert_eq!(event_reasons(&s), [event]);
        assert_eq!(s.status, old);
    }
}

#[test]
fn a_workspace_that_cannot_connect_names_the_cause() {
    let old = TargetStatus::default();
    let s = run(
        &old,
        Outcome::ConnectFailed(ConnectError::SecretNotFound("sp".into())),
    );
    assert_eq!(ready(&s.status).1, "WorkspaceNotReady");
    let message = &s.status.ready().expect("ready").message;
    assert!(message.contains("credential is unusable"), "{message}");
}

#[test]
fn rule13_preflight_outcomes_by_mode() {
    use crate::api::PreflightMode;
    use crate::azure::Unmet;
    let old = TargetStatus::default();
    let unmet = || {
        PreflightResult::Unmet(Unmet {
            fact: "the VM runs Windows".into(),
            remedy: "attach a Linux VM".into(),
        })
    };
    // Passed: remembered for this configuration; plan again (it attaches).
    let s = run(&old, Outcome::Preflight(PreflightResult::Passed));
    assert_eq!(s.status.preflight_hash.as_deref(), Some("h1"));
    assert_eq!(s.next, Next::Replan(Learned::Nothing));
    assert!(s.events.is_empty());

    // Enforce: no PUT, a Warning, re-checked at resync.
    for (result, reason) in [
        (unmet(), "PrerequisiteNotMet"),
        (
            PreflightResult::NotFound("the virtual machine /x".into()),
            "ResourceNotFound",
        ),
    ] {
        let s = run(&old, Outcome::Preflight(result));
        assert_eq!(ready(&s.status), ("False", reason));
        assert_eq!(s.status.preflight_hash, None, "checked again next time");
        assert_eq!(s.next, Next::After(RESYNC));
        assert_eq!(event_reasons(&s), [reason]);
    }
    let s = run(&old, Outcome::Preflight(unmet()));
    let message = &s.status.ready().expect("ready").message;
    assert!(
        message.contains("Windows") && message.contains("preflight: Warn"),
        "{message}"
    );

    // Warn: the Preflight condition, and the attach goes ahead; it survives later steps.
    let f = Facts {
        preflight: PreflightMode::Warn,
        ..facts(&old)
    };
    let s = settle(&f, old.clone(), Outcome::Preflight(unmet()));
    assert_eq!(s.status.preflight_hash.as_deref(), Some("h1"));
    assert_eq!(s.next, Next::Replan(Learned::Nothing));
    let pre = s
        .status
        .conditions
        .iter()
        .find(|c| c.type_ == PREFLIGHT)
        .expect("a Preflight condition");
    assert_eq!(
        (pre.status.as_str(), pre.reason.as_str()),
        ("False", "PrerequisiteNotMet")
    );
    let after = settle(
        &f,
        s.status.clone(),
        Outcome::Put {
            cause: AttachCause::Initial,
            answer: PutAnswer::Operation {
                url: "https://management.azure.com/op/9".into(),
                retry_after: None,
            },
        },
    );
    assert!(after.status.conditions.iter().any(|c| c.type_ == PREFLIGHT));
    assert_eq!(ready(&after.status).1, "Attaching");
}
