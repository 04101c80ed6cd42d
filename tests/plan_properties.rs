//! Property tests of the planner (`controller::plan::plan`) over arbitrary `Observed` inputs:
//! every enum variant, every combination of status fields, through the public API only.
//!
//! The properties are the planner's safety rules (docs/reference/behaviour.md): a detach is
//! only ever the detach of this object's own attachment, a losing claim never touches Azure on
//! its own behalf, nothing is attached while deleting, every Azure call needs a workspace that
//! reached Azure, and the result is a function of the input.

use azureml_attach::api::{
    Condition, DeletionPolicy, OperationKind, PendingOperation, PreflightMode, ProvisioningError,
    TargetStatus,
};
use azureml_attach::controller::conditions::Reason;
use azureml_attach::controller::plan::{
    AttachCause, AzureView, ClaimState, ComputeSummary, ConnectionView, Decision, Observed,
    PreflightView, SecretState, WorkspaceState, connection_stale, plan, reached_azure,
};
use proptest::prelude::*;
use proptest::sample::select;
use proptest::test_runner::FileFailurePersistence;

/// Compile-time guard: adding a variant to any enum the planner reads fails to compile here,
/// as a reminder to add it to its strategy below (one line each).
#[allow(dead_code)]
fn every_variant_has_a_strategy(
    w: &WorkspaceState,
    c: &ClaimState,
    s: &SecretState,
    a: &AzureView,
    p: DeletionPolicy,
    k: OperationKind,
) {
    match w {
        WorkspaceState::Missing
        | WorkspaceState::NotReady { .. }
        | WorkspaceState::Pending
        | WorkspaceState::Ready => {}
    }
    match c {
        ClaimState::Winner | ClaimState::LosesTo(_) => {}
    }
    match s {
        SecretState::NotNeeded
        | SecretState::Missing(_)
        | SecretState::NotOptedIn(_)
        | SecretState::Present => {}
    }
    match a {
        AzureView::Absent { .. } | AzureView::Present(_) => {}
    }
    match p {
        DeletionPolicy::Detach | DeletionPolicy::Orphan => {}
    }
    match k {
        OperationKind::Attach | OperationKind::Detach => {}
    }
}

fn short_text() -> impl Strategy<Value = String> {
    prop_oneof!["[a-z]{1,8}", ".{0,12}"]
}

fn workspace_state() -> impl Strategy<Value = WorkspaceState> {
    prop_oneof![
        1 => Just(WorkspaceState::Missing),
        1 => (short_text(), short_text())
            .prop_map(|(reason, message)| WorkspaceState::NotReady { reason, message }),
        1 => Just(WorkspaceState::Pending),
        3 => Just(WorkspaceState::Ready),
    ]
}

fn claim_state() -> impl Strategy<Value = ClaimState> {
    prop_oneof![
        2 => Just(ClaimState::Winner),
        1 => short_text().prop_map(|owner| ClaimState::LosesTo(format!("RemoteVmTarget ns/{owner}"))),
    ]
}

/// One line per variant. A Secret that exists without the opt-in label (being added on main)
/// goes here as one more `Just(SecretState::…)` line, plus its arm in the guard above.
fn secret_state() -> impl Strategy<Value = SecretState> {
    prop_oneof![
        Just(SecretState::NotNeeded),
        short_text().prop_map(SecretState::Missing),
        short_text().prop_map(SecretState::NotOptedIn),
        Just(SecretState::Present),
    ]
}

fn deletion_policy() -> impl Strategy<Value = DeletionPolicy> {
    prop_oneof![
        3 => Just(DeletionPolicy::Detach),
        1 => Just(DeletionPolicy::Orphan),
    ]
}

fn operation_kind() -> impl Strategy<Value = OperationKind> {
    prop_oneof![Just(OperationKind::Attach), Just(OperationKind::Detach)]
}

/// Few distinct hashes, so "same as desired" and "different" both happen often.
fn hash() -> impl Strategy<Value = String> {
    select(&["h1", "h2", "h3"][..]).prop_map(str::to_owned)
}

fn provisioning_state() -> impl Strategy<Value = Option<String>> {
    prop::option::of(prop_oneof![
        4 => select(&[
            "Succeeded", "Failed", "Canceled", "Creating", "Updating", "Deleting", "Unknown",
            "succeeded", "FAILED",
        ][..])
        .prop_map(str::to_owned),
        1 => short_text(),
    ])
}

fn compute_summary() -> impl Strategy<Value = ComputeSummary> {
    (
        any::<bool>(),
        provisioning_state(),
        prop::collection::vec(
            (short_text(), short_text())
                .prop_map(|(code, message)| ProvisioningError { code, message }),
            0..2,
        ),
        prop::option::of(short_text()),
    )
        .prop_map(|(matches, provisioning_state, errors, id)| ComputeSummary {
            matches,
            provisioning_state,
            errors,
            id,
            attaches: None,
        })
}

fn azure_view() -> impl Strategy<Value = Option<AzureView>> {
    prop::option::of(prop_oneof![
        prop::option::of(short_text())
            .prop_map(|same_resource_as| AzureView::Absent { same_resource_as }),
        compute_summary().prop_map(AzureView::Present),
    ])
}

fn pending_operation() -> impl Strategy<Value = PendingOperation> {
    (
        operation_kind(),
        short_text(),
        any::<bool>(),
        prop::option::of(hash()),
    )
        .prop_map(|(kind, url, reattach, config_hash)| PendingOperation {
            kind,
            url: format!("https://management.azure.com/{url}"),
            reattach,
            config_hash,
            started_at: None,
            next_poll_at: None,
        })
}

fn ready_condition() -> impl Strategy<Value = Condition> {
    (
        prop_oneof![
            4 => select(Reason::ALL.to_vec()).prop_map(|r| r.as_str().to_owned()),
            1 => short_text(),
        ],
        select(&["True", "False", "Unknown"][..]),
        short_text(),
    )
        .prop_map(|(reason, status, message)| Condition {
            type_: "Ready".into(),
            status: status.into(),
            reason,
            message,
            last_transition_time: None,
            observed_generation: None,
        })
}

fn target_status() -> impl Strategy<Value = TargetStatus> {
    (
        prop::option::of(hash()),
        prop::option::of(pending_operation()),
        prop::option::of(short_text()),
        prop::option::of(hash()),
        prop::option::of(ready_condition()),
    )
        .prop_map(
            |(attached, operation, compute_id, rejected, ready)| TargetStatus {
                attached_config_hash: attached,
                operation,
                compute_id,
                rejected_config_hash: rejected,
                conditions: ready.into_iter().collect(),
                ..Default::default()
            },
        )
}

/// The owned parts of an `Observed` (which borrows its status and hash).
#[derive(Clone, Debug)]
struct Input {
    deleting: bool,
    deletion_policy: DeletionPolicy,
    status: TargetStatus,
    workspace: WorkspaceState,
    claim: ClaimState,
    secret: SecretState,
    desired_hash: String,
    azure: Option<AzureView>,
    connection: ConnectionView,
    preflight: PreflightView,
}

impl Input {
    fn observed(&self) -> Observed<'_> {
        Observed {
            deleting: self.deleting,
            deletion_policy: self.deletion_policy,
            status: &self.status,
            workspace: self.workspace.clone(),
            claim: self.claim.clone(),
            secret: self.secret.clone(),
            desired_hash: &self.desired_hash,
            azure: self.azure.clone(),
            connection: self.connection.clone(),
            preflight: self.preflight,
        }
    }
}

fn input() -> impl Strategy<Value = Input> {
    (
        any::<bool>(),
        deletion_policy(),
        target_status(),
        workspace_state(),
        claim_state(),
        secret_state(),
        select(&["h1", "h2"][..]).prop_map(str::to_owned),
        azure_view(),
        (
            prop::option::of(select(&["conn", "other"][..]).prop_map(str::to_owned)),
            any::<bool>(),
        )
            .prop_map(|(wanted, in_place)| ConnectionView { wanted, in_place }),
        (
            any::<bool>(),
            select(
                &[
                    PreflightMode::Enforce,
                    PreflightMode::Warn,
                    PreflightMode::Skip,
                ][..],
            ),
        )
            .prop_map(|(applies, mode)| PreflightView { applies, mode }),
    )
        .prop_map(
            |(
                deleting,
                deletion_policy,
                status,
                workspace,
                claim,
                secret,
                desired_hash,
                azure,
                connection,
                preflight,
            )| {
                Input {
                    deleting,
                    deletion_policy,
                    status,
                    workspace,
                    claim,
                    secret,
                    desired_hash,
                    azure,
                    connection,
                    preflight,
                }
            },
        )
}

/// Decisions that call Azure (or read its state through the LIST cache).
fn touches_azure(d: &Decision) -> bool {
    !matches!(d, Decision::Release { .. } | Decision::Report { .. })
}

fn ours_in_azure(azure: &Option<AzureView>) -> Option<&ComputeSummary> {
    match azure {
        Some(AzureView::Present(c)) if c.matches => Some(c),
        _ => None,
    }
}

proptest! {
    // The planner is pure and fast: many cases cost about a second. Failures are saved
    // next to this file (tests/plan_properties.regressions) and re-run first.
    #![proptest_config(ProptestConfig {
        cases: 1024,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("regressions"))),
        ..ProptestConfig::default()
    })]

    /// The connection Secret is written only for a compute that is ours, attached with today's
    /// configuration and Succeeded, and never while deleting (rule 12).
    #[test]
    fn connection_secret_only_for_a_current_attachment(i in input()) {
        if let Decision::WriteConnection(c) = plan(&i.observed()) {
            prop_assert!(!i.deleting);
            prop_assert!(c.matches && c.is_terminal() && !c.is_failed(), "{:?}", c);
            prop_assert_eq!(i.status.attached_config_hash.as_deref(), Some(i.desired_hash.as_str()));
            prop_assert!(connection_stale(&i.status, &i.connection));
        }
    }

    /// The planner is a function of its input.
    #[test]
    fn deterministic(i in input()) {
        let o = i.observed();
        prop_assert_eq!(plan(&o), plan(&o.clone()));
    }

    /// Detach means "DELETE …?underlyingResourceAction=Detach of this object's own compute"
    /// (the ARM client can send nothing else): only when deleting an object whose status
    /// proves it reached Azure and whose deletion policy is Detach, or as the first half of a
    /// re-attach of a compute that is ours and idle; never of a compute that is not ours.
    #[test]
    fn detach_only_of_our_own_attachment(i in input()) {
        let o = i.observed();
        if let Decision::Detach { reattach } = plan(&o) {
            prop_assert_eq!(reattach, !i.deleting, "a deletion never re-attaches");
            prop_assert_eq!(&i.workspace, &WorkspaceState::Ready);
            prop_assert!(
                !matches!(&i.azure, Some(AzureView::Present(c)) if !c.matches),
                "detaching a compute that is not ours"
            );
            if i.deleting {
                prop_assert_eq!(i.deletion_policy, DeletionPolicy::Detach);
                prop_assert!(reached_azure(&i.status));
            } else {
                let ours = ours_in_azure(&i.azure);
                prop_assert!(ours.is_some_and(ComputeSummary::is_terminal), "{:?}", i.azure);
                let attached = i.status.attached_config_hash.as_deref();
                prop_assert!(attached.is_some_and(|h| h != i.desired_hash), "{:?}", attached);
                prop_assert_eq!(&i.claim, &ClaimState::Winner);
                prop_assert!(i.status.operation.is_none());
            }
        }
    }

    /// Rule 4: a losing claim causes no Azure call of its own: no attach, adoption, LIST or
    /// report of Azure's state. What remains is finishing what it already started (a pending
    /// operation) and, when it is deleted, detaching the attachment its status proves it made.
    #[test]
    fn a_losing_claim_never_attaches_or_adopts(
        i in input(),
        owner in short_text(),
    ) {
        let i = Input { claim: ClaimState::LosesTo(owner), ..i };
        let d = plan(&i.observed());
        prop_assert!(
            !matches!(
                d,
                Decision::Attach { .. }
                    | Decision::Adopt(_)
                    | Decision::InSync(_)
                    | Decision::NeedAzureView
                    | Decision::Detach { reattach: true }
            ),
            "{:?}",
            d
        );
        if !i.deleting {
            prop_assert!(
                matches!(
                    d,
                    Decision::Report { .. } | Decision::Poll(_)
                ),
                "{:?}",
                d
            );
        }
        if matches!(d, Decision::Detach { .. }) {
            prop_assert!(i.deleting && reached_azure(&i.status));
        }
    }

    /// The strict form of rule 4: a losing claim never detaches, not even when it is deleted
    /// with a status that names an attachment (it attached before it lost): the compute of its
    /// name may be the winner's by adoption. (Found by this test; `plan_delete` now releases.)
    #[test]
    fn a_losing_claim_never_detaches(i in input(), owner in short_text()) {
        let i = Input { claim: ClaimState::LosesTo(owner), ..i };
        let d = plan(&i.observed());
        prop_assert!(!matches!(d, Decision::Detach { .. }), "{:?} for {:?}", d, i);
    }

    /// Deleting: never an attach, adoption or LIST; Orphan and never-reached release at once;
    /// only a detach operation is polled.
    #[test]
    fn deleting_never_attaches(i in input()) {
        let i = Input { deleting: true, ..i };
        let d = plan(&i.observed());
        prop_assert!(
            matches!(
                d,
                Decision::Release { .. }
                    | Decision::Report { .. }
                    | Decision::Poll(_)
                    | Decision::Detach { reattach: false }
            ),
            "{:?}",
            d
        );
        if let Decision::Poll(op) = &d {
            prop_assert_eq!(op.kind, OperationKind::Detach);
        }
        if i.deletion_policy == DeletionPolicy::Orphan || !reached_azure(&i.status) {
            prop_assert!(matches!(d, Decision::Release { .. }), "{:?}", d);
        }
    }

    /// Every Azure call needs a workspace that reached Azure.
    #[test]
    fn azure_calls_need_a_ready_workspace(i in input()) {
        let d = plan(&i.observed());
        if touches_azure(&d) {
            prop_assert_eq!(&i.workspace, &WorkspaceState::Ready, "{:?}", d);
        }
        if !i.deleting && i.workspace != WorkspaceState::Ready {
            prop_assert!(matches!(d, Decision::Report { .. }), "{:?}", d);
        }
    }

    /// Attach: only when the LIST shows neither the name nor the resource, for the winning
    /// claim with its Secret, nothing in flight, and not a configuration Azure already refused.
    #[test]
    fn attach_only_into_a_free_slot(i in input()) {
        let d = plan(&i.observed());
        if let Decision::Attach { cause } = d {
            prop_assert!(!i.deleting);
            prop_assert_eq!(&i.azure, &Some(AzureView::Absent { same_resource_as: None }));
            prop_assert_eq!(&i.claim, &ClaimState::Winner);
            // Rule 12: an unlabelled Secret is never read, so nothing is attached with it.
            prop_assert!(!matches!(i.secret, SecretState::Missing(_) | SecretState::NotOptedIn(_)));
            prop_assert!(i.status.operation.is_none());
            prop_assert_ne!(i.status.rejected_config_hash.as_deref(), Some(i.desired_hash.as_str()));
            let expected = match i.status.attached_config_hash.as_deref() {
                None => AttachCause::Initial,
                Some(h) if h == i.desired_hash => AttachCause::Drift,
                Some(_) => AttachCause::Reattach,
            };
            prop_assert_eq!(cause, expected);
        }
    }

    /// Adopt and InSync only for a compute that is ours; adoption only when this object never
    /// attached anything; a pending operation is always polled first.
    #[test]
    fn adopt_and_poll(i in input()) {
        let d = plan(&i.observed());
        match &d {
            Decision::Adopt(c) | Decision::InSync(c) => {
                prop_assert!(!i.deleting);
                prop_assert!(c.matches);
                prop_assert_eq!(Some(c), ours_in_azure(&i.azure));
                if matches!(d, Decision::Adopt(_)) {
                    prop_assert!(i.status.attached_config_hash.is_none());
                }
            }
            Decision::NeedAzureView => {
                prop_assert!(!i.deleting && i.azure.is_none());
            }
            _ => {}
        }
        if !i.deleting
            && i.workspace == WorkspaceState::Ready
            && let Some(op) = &i.status.operation
        {
            prop_assert_eq!(d, Decision::Poll(op.clone()));
        }
    }
}
