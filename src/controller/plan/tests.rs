//! Table tests of `plan`, named after the rules in `docs/design/rules.md`.

use super::*;

fn observed<'a>(status: &'a TargetStatus, azure: Option<AzureView>) -> Observed<'a> {
    Observed {
        deleting: false,
        deletion_policy: DeletionPolicy::Detach,
        status,
        workspace: WorkspaceState::Ready,
        claim: ClaimState::Winner,
        secret: SecretState::Present,
        desired_hash: "h1",
        azure,
        connection: ConnectionView::default(),
        preflight: PreflightView::default(),
    }
}

fn present(matches: bool, state: &str) -> AzureView {
    AzureView::Present(ComputeSummary {
        matches,
        provisioning_state: Some(state.into()),
        ..Default::default()
    })
}

fn attached(hash: &str) -> TargetStatus {
    TargetStatus {
        attached_config_hash: Some(hash.into()),
        compute_id: Some("/x/computes/c".into()),
        ..Default::default()
    }
}

#[test]
fn rule2_get_before_put_then_attach_when_absent() {
    let s = TargetStatus::default();
    assert_eq!(plan(&observed(&s, None)), Decision::NeedAzureView);
    let d = plan(&observed(
        &s,
        Some(AzureView::Absent {
            same_resource_as: None,
        }),
    ));
    assert_eq!(
        d,
        Decision::Attach {
            cause: AttachCause::Initial
        }
    );
}

#[test]
fn rule2_steady_state_writes_nothing() {
    let s = attached("h1");
    assert!(matches!(
        plan(&observed(&s, Some(present(true, "Succeeded")))),
        Decision::InSync(_)
    ));
}

#[test]
fn rule3_adopt_matching_and_refuse_other() {
    let s = TargetStatus::default();
    assert!(matches!(
        plan(&observed(&s, Some(present(true, "Succeeded")))),
        Decision::Adopt(_)
    ));
    let d = plan(&observed(&s, Some(present(false, "Succeeded"))));
    assert!(matches!(
        d,
        Decision::Report {
            reason: Reason::ComputeNameTaken,
            ..
        }
    ));
}

#[test]
fn rule4_a_later_claim_being_deleted_never_detaches_even_if_it_attached() {
    let s = TargetStatus {
        attached_config_hash: Some("h1".into()),
        compute_id: Some("/x/computes/gpu".into()),
        ..Default::default()
    };
    let mut o = observed(&s, Some(present(true, "Succeeded")));
    o.deleting = true;
    o.claim = ClaimState::LosesTo("RemoteVmTarget a/b".into());
    assert!(
        matches!(plan(&o), Decision::Release { .. }),
        "{:?}",
        plan(&o)
    );
}

#[test]
fn rule4_later_claim_makes_no_azure_call() {
    let s = TargetStatus::default();
    let mut o = observed(&s, None);
    o.claim = ClaimState::LosesTo("RemoteVmTarget a/b".into());
    assert!(matches!(
        plan(&o),
        Decision::Report {
            reason: Reason::DuplicateAttachment,
            ..
        }
    ));
    let o2 = observed(
        &s,
        Some(AzureView::Absent {
            same_resource_as: Some("other".into()),
        }),
    );
    assert!(matches!(
        plan(&o2),
        Decision::Report {
            reason: Reason::DuplicateAttachment,
            ..
        }
    ));
}

#[test]
fn rule5_changed_config_reattaches() {
    let s = attached("old");
    assert_eq!(
        plan(&observed(&s, Some(present(true, "Succeeded")))),
        Decision::Detach { reattach: true }
    );
}

#[test]
fn rule6_inflight_operation_is_polled_first() {
    let op = PendingOperation {
        kind: OperationKind::Attach,
        url: "https://arm/op".into(),
        reattach: false,
        config_hash: Some("h1".into()),
        started_at: None,
        next_poll_at: None,
    };
    let s = TargetStatus {
        operation: Some(op.clone()),
        ..Default::default()
    };
    assert_eq!(plan(&observed(&s, None)), Decision::Poll(op));
}

#[test]
fn rule7_vanished_attachment_is_repaired() {
    let s = attached("h1");
    let d = plan(&observed(
        &s,
        Some(AzureView::Absent {
            same_resource_as: None,
        }),
    ));
    assert_eq!(
        d,
        Decision::Attach {
            cause: AttachCause::Drift
        }
    );
}

#[test]
fn rule5_the_second_half_of_a_reattach_is_planned_from_an_old_hash() {
    // The first half detached the compute; status still names the old configuration.
    let s = attached("h0");
    let d = plan(&observed(
        &s,
        Some(AzureView::Absent {
            same_resource_as: None,
        }),
    ));
    assert_eq!(
        d,
        Decision::Attach {
            cause: AttachCause::Reattach
        }
    );
}

#[test]
fn rule9_deletion_never_wedges() {
    let never = TargetStatus::default();
    let mut o = observed(&never, None);
    o.deleting = true;
    o.workspace = WorkspaceState::Missing;
    assert!(
        matches!(plan(&o), Decision::Release { .. }),
        "never reached Azure: released at once"
    );

    let s = attached("h1");
    let mut o = observed(&s, None);
    o.deleting = true;
    o.workspace = WorkspaceState::Missing;
    assert!(matches!(
        plan(&o),
        Decision::Report {
            reason: Reason::WorkspaceNotFound,
            ..
        }
    ));
    o.deletion_policy = DeletionPolicy::Orphan;
    assert!(
        matches!(plan(&o), Decision::Release { .. }),
        "Orphan releases without a call"
    );
}

#[test]
fn rule1_deletion_detaches_only_our_compute() {
    let s = attached("h1");
    let mut o = observed(&s, None);
    o.deleting = true;
    assert_eq!(plan(&o), Decision::Detach { reattach: false });
    o.azure = Some(present(true, "Succeeded"));
    assert_eq!(plan(&o), Decision::Detach { reattach: false });
    o.azure = Some(present(false, "Succeeded"));
    assert!(matches!(plan(&o), Decision::Release { .. }));
}

#[test]
fn rule11_refused_config_is_not_retried() {
    let mut s = TargetStatus {
        rejected_config_hash: Some("h1".into()),
        ..Default::default()
    };
    s.conditions.push(crate::api::Condition {
        type_: "Ready".into(),
        status: "False".into(),
        reason: "ComputeTypeRefused".into(),
        message: "m".into(),
        last_transition_time: None,
        observed_generation: None,
    });
    let d = plan(&observed(
        &s,
        Some(AzureView::Absent {
            same_resource_as: None,
        }),
    ));
    assert!(matches!(
        d,
        Decision::Report {
            reason: Reason::ComputeTypeRefused,
            ..
        }
    ));
}

#[test]
fn missing_references_block_before_azure() {
    let s = TargetStatus::default();
    let mut o = observed(&s, None);
    o.secret = SecretState::Missing("ssh".into());
    assert!(matches!(
        plan(&o),
        Decision::Report {
            reason: Reason::SecretNotFound,
            ..
        }
    ));
    o.workspace = WorkspaceState::Missing;
    assert!(matches!(
        plan(&o),
        Decision::Report {
            reason: Reason::WorkspaceNotFound,
            ..
        }
    ));
}

#[test]
fn rule13_preflight_precedes_the_first_put_of_a_configuration() {
    use crate::api::PreflightMode;
    let absent = || {
        Some(AzureView::Absent {
            same_resource_as: None,
        })
    };
    let s = TargetStatus::default();
    let mut o = observed(&s, absent());
    o.preflight = PreflightView {
        applies: true,
        mode: PreflightMode::Enforce,
    };
    assert_eq!(plan(&o), Decision::Preflight);
    o.preflight.mode = PreflightMode::Warn;
    assert_eq!(plan(&o), Decision::Preflight, "Warn reads too");
    o.preflight.mode = PreflightMode::Skip;
    assert!(
        matches!(plan(&o), Decision::Attach { .. }),
        "Skip reads nothing"
    );
    o.preflight = PreflightView {
        applies: false,
        mode: PreflightMode::Enforce,
    };
    assert!(
        matches!(plan(&o), Decision::Attach { .. }),
        "nothing to read"
    );

    // Passed for this configuration: attach; for another one: check again.
    let passed = TargetStatus {
        preflight_hash: Some("h1".into()),
        ..Default::default()
    };
    let mut o = observed(&passed, absent());
    o.preflight = PreflightView {
        applies: true,
        mode: PreflightMode::Enforce,
    };
    assert!(matches!(plan(&o), Decision::Attach { .. }));
    o.desired_hash = "h2";
    assert_eq!(plan(&o), Decision::Preflight);

    // A Ready target makes no PUT, so it is never read again.
    let attached = attached("h1");
    let mut o = observed(&attached, Some(present(true, "Succeeded")));
    o.preflight = PreflightView {
        applies: true,
        mode: PreflightMode::Enforce,
    };
    assert!(matches!(plan(&o), Decision::InSync(_)));
}
