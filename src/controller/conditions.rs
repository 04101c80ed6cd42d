//! The `Ready` condition: documented reasons and how a condition is (re)built without
//! churning `lastTransitionTime`.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::api::Condition;

/// Why a target (or workspace) is or is not Ready. The list is documented in
/// `docs/reference/conditions.md`; each reason says what a person does about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    /// The compute is attached and Azure reports Succeeded.
    Attached,
    /// An attach is in flight (PUT accepted, provisioning not finished).
    Attaching,
    /// A detach is in flight (object being deleted).
    Detaching,
    /// A setting Azure cannot update in place changed: detaching, then attaching again.
    Reattaching,
    /// The MLWorkspace object, or the Azure workspace it names, does not exist.
    WorkspaceNotFound,
    /// The MLWorkspace exists but could not reach Azure yet (see its own condition).
    WorkspaceNotReady,
    /// The MLWorkspace exists but its reconciler has not looked at it yet (a workspace and its
    /// targets applied together): waiting, not a problem.
    WorkspacePending,
    /// Preflight found the underlying resource missing (rule 13): no PUT.
    ResourceNotFound,
    /// Preflight found a prerequisite of the seed unmet, e.g. a Windows VM, no public IP, a
    /// stopped cluster, no Azure ML extension (rule 13): no PUT with `preflight: Enforce`.
    PrerequisiteNotMet,
    /// The referenced Secret does not exist.
    SecretNotFound,
    /// The referenced Secret lacks a key the target needs.
    SecretKeyMissing,
    /// The referenced Secret exists but is not labeled `attach.azureml.io/credential=true`, so
    /// the operator does not read it (rule 12).
    SecretNotLabeled,
    /// `writeConnectionSecretToRef` names a Secret that exists and is not this target's; the
    /// operator writes nothing to it (rule 12).
    ConnectionSecretConflict,
    /// The connection Secret the spec asks for could not be written; retried.
    ConnectionSecretFailed,
    /// Azure or Entra ID refused the identity (401/403, token refused).
    CredentialRejected,
    /// A compute with this name exists in the workspace and is something else.
    ComputeNameTaken,
    /// Another target (older claim) or an attachment outside Kubernetes already holds this resource.
    DuplicateAttachment,
    /// Azure reports provisioningState Failed/Canceled, or the attach operation failed.
    ProvisioningFailed,
    /// The service refused the compute type (e.g. `Batch`); no retry until the spec changes.
    ComputeTypeRefused,
    /// Azure refused the request body (400) or the spec is invalid; fix the spec.
    InvalidSpec,
    /// ARM throttled the operator (429) or its own budget is spent; retried after Retry-After.
    Throttled,
    /// Any other Azure error (5xx, transport); retried with backoff.
    AzureError,
    /// The MLWorkspace reached Azure.
    Reached,
    /// The MLWorkspace is being deleted and waits until no target references it (rule 9):
    /// its targets still need it to detach.
    InUse,
}

impl Reason {
    /// Every reason, in documentation order.
    pub const ALL: [Reason; 24] = [
        Reason::Attached,
        Reason::Attaching,
        Reason::Detaching,
        Reason::Reattaching,
        Reason::WorkspaceNotFound,
        Reason::WorkspaceNotReady,
        Reason::WorkspacePending,
        Reason::ResourceNotFound,
        Reason::PrerequisiteNotMet,
        Reason::SecretNotFound,
        Reason::SecretKeyMissing,
        Reason::SecretNotLabeled,
        Reason::ConnectionSecretConflict,
        Reason::ConnectionSecretFailed,
        Reason::CredentialRejected,
        Reason::ComputeNameTaken,
        Reason::DuplicateAttachment,
        Reason::ProvisioningFailed,
        Reason::ComputeTypeRefused,
        Reason::InvalidSpec,
        Reason::Throttled,
        Reason::AzureError,
        Reason::Reached,
        Reason::InUse,
    ];

    /// Parses a reason written earlier (the wire form of [`Reason::as_str`]).
    pub fn parse(s: &str) -> Option<Reason> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// CamelCase wire form.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Attached => "Attached",
            Reason::Attaching => "Attaching",
            Reason::Detaching => "Detaching",
            Reason::Reattaching => "Reattaching",
            Reason::WorkspaceNotFound => "WorkspaceNotFound",
            Reason::WorkspaceNotReady => "WorkspaceNotReady",
            Reason::WorkspacePending => "WorkspacePending",
            Reason::ResourceNotFound => "ResourceNotFound",
            Reason::PrerequisiteNotMet => "PrerequisiteNotMet",
            Reason::SecretNotFound => "SecretNotFound",
            Reason::SecretKeyMissing => "SecretKeyMissing",
            Reason::SecretNotLabeled => "SecretNotLabeled",
            Reason::ConnectionSecretConflict => "ConnectionSecretConflict",
            Reason::ConnectionSecretFailed => "ConnectionSecretFailed",
            Reason::CredentialRejected => "CredentialRejected",
            Reason::ComputeNameTaken => "ComputeNameTaken",
            Reason::DuplicateAttachment => "DuplicateAttachment",
            Reason::ProvisioningFailed => "ProvisioningFailed",
            Reason::ComputeTypeRefused => "ComputeTypeRefused",
            Reason::InvalidSpec => "InvalidSpec",
            Reason::Throttled => "Throttled",
            Reason::AzureError => "AzureError",
            Reason::Reached => "Reached",
            Reason::InUse => "InUse",
        }
    }

    /// Whether this reason means Ready=True.
    pub fn is_ready(self) -> bool {
        matches!(self, Reason::Attached | Reason::Reached)
    }

    /// Reasons that need a person (or a changed input) before anything changes; the
    /// reconciler requeues them slowly instead of retrying.
    pub fn is_permanent(self) -> bool {
        matches!(
            self,
            Reason::ComputeNameTaken
                | Reason::ResourceNotFound
                | Reason::PrerequisiteNotMet
                | Reason::ComputeTypeRefused
                | Reason::InvalidSpec
                | Reason::ProvisioningFailed
                | Reason::SecretKeyMissing
                | Reason::SecretNotLabeled
                | Reason::ConnectionSecretConflict
        )
    }
}

/// Where an object stands in the terms of kstatus (`sigs.k8s.io/cli-utils` `pkg/kstatus`),
/// which Flux, kpt and `kubectl wait` read: it looks at `Reconciling` and `Stalled`, not at
/// `Ready`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// Nothing left to do (Ready=True): neither condition.
    Done,
    /// Still working, or waiting for something that will come by itself (an operation, a
    /// referenced object, Azure's budget): `Reconciling=True`.
    Reconciling,
    /// Will not get further without a person (a permanent refusal, a refused identity):
    /// `Stalled=True`.
    Stalled,
}

impl Reason {
    /// The kstatus reading of this reason.
    pub fn progress(self) -> Progress {
        if self.is_ready() {
            Progress::Done
        } else if self.is_permanent()
            || matches!(
                self,
                Reason::CredentialRejected | Reason::DuplicateAttachment
            )
        {
            Progress::Stalled
        } else {
            Progress::Reconciling
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The current time at the precision Kubernetes stores (`metav1.Time` is whole seconds). A
/// status built with finer times never equals the one read back, so "unchanged" would never
/// match and every pass would write the status again.
pub fn now() -> Time {
    let t = k8s_openapi::jiff::Timestamp::now();
    Time(k8s_openapi::jiff::Timestamp::from_second(t.as_second()).unwrap_or(t))
}

/// Builds the `Ready` condition, keeping `lastTransitionTime` when the status is unchanged
/// (so re-writing the same status is a no-op and does not trigger another reconcile).
pub fn ready_condition(
    previous: Option<&Condition>,
    reason: Reason,
    message: impl Into<String>,
    generation: Option<i64>,
    now: Time,
) -> Condition {
    let status = if reason.is_ready() { "True" } else { "False" };
    let last_transition_time = match previous {
        Some(p) if p.status == status => p.last_transition_time.clone().or(Some(now)),
        _ => Some(now),
    };
    Condition {
        type_: "Ready".to_owned(),
        status: status.to_owned(),
        reason: reason.as_str().to_owned(),
        message: message.into(),
        last_transition_time,
        observed_generation: generation,
    }
}

/// Sets `Ready` to `reason` and keeps `Reconciling`/`Stalled` in step with it (present only
/// while True, as kstatus expects); `lastTransitionTime` moves only when a status changes.
pub fn set_ready(
    conditions: &mut Vec<Condition>,
    reason: Reason,
    message: impl Into<String>,
    generation: Option<i64>,
    now: Time,
) {
    let message = message.into();
    let previous = conditions.iter().find(|c| c.type_ == "Ready").cloned();
    set_condition(
        conditions,
        ready_condition(
            previous.as_ref(),
            reason,
            message.clone(),
            generation,
            now.clone(),
        ),
    );
    let progress = reason.progress();
    for (type_, wanted) in [
        ("Reconciling", Progress::Reconciling),
        ("Stalled", Progress::Stalled),
    ] {
        if progress != wanted {
            conditions.retain(|c| c.type_ != type_);
            continue;
        }
        let since = conditions
            .iter()
            .find(|c| c.type_ == type_ && c.status == "True")
            .and_then(|c| c.last_transition_time.clone());
        set_condition(
            conditions,
            Condition {
                type_: type_.to_owned(),
                status: "True".to_owned(),
                reason: reason.as_str().to_owned(),
                message: message.clone(),
                last_transition_time: since.or_else(|| Some(now.clone())),
                observed_generation: generation,
            },
        );
    }
}

/// Replaces (or adds) the condition of the same type.
pub fn set_condition(conditions: &mut Vec<Condition>, condition: Condition) {
    match conditions.iter_mut().find(|c| c.type_ == condition.type_) {
        Some(existing) => *existing = condition,
        None => conditions.push(condition),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn types(c: &[Condition]) -> Vec<(&str, &str)> {
        c.iter()
            .map(|c| (c.type_.as_str(), c.status.as_str()))
            .collect()
    }

    #[test]
    fn kstatus_conditions_follow_ready() {
        let mut c = Vec::new();
        let t = now();
        set_ready(&mut c, Reason::Attaching, "m", Some(1), t.clone());
        assert_eq!(types(&c), [("Ready", "False"), ("Reconciling", "True")]);
        set_ready(&mut c, Reason::Attached, "m", Some(1), t.clone());
        assert_eq!(types(&c), [("Ready", "True")]);
        set_ready(
            &mut c,
            Reason::ComputeNameTaken,
            "taken",
            Some(2),
            t.clone(),
        );
        assert_eq!(types(&c), [("Ready", "False"), ("Stalled", "True")]);
        let stalled = c.iter().find(|c| c.type_ == "Stalled").unwrap();
        assert_eq!(
            (stalled.reason.as_str(), stalled.observed_generation),
            ("ComputeNameTaken", Some(2))
        );
        for r in Reason::ALL {
            let expected = match r {
                Reason::Attached | Reason::Reached => Progress::Done,
                r if r.is_permanent()
                    || r == Reason::CredentialRejected
                    || r == Reason::DuplicateAttachment =>
                {
                    Progress::Stalled
                }
                _ => Progress::Reconciling,
            };
            assert_eq!(r.progress(), expected, "{r}");
        }
    }

    #[test]
    fn now_round_trips_through_the_wire_format() {
        let t = now();
        let back: Time = serde_json::from_value(serde_json::to_value(&t).unwrap()).unwrap();
        assert_eq!(back, t);
    }

    #[test]
    fn every_reason_round_trips_and_is_documented() {
        let docs = include_str!("../../docs/reference/conditions.md");
        for r in Reason::ALL {
            assert_eq!(Reason::parse(r.as_str()), Some(r));
            assert!(
                docs.contains(&format!("`{}`", r.as_str())),
                "{r} is missing from docs/reference/conditions.md"
            );
        }
        assert_eq!(Reason::parse("NoSuchReason"), None);
    }

    fn t(secs: i64) -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(secs).unwrap())
    }

    #[test]
    fn transition_time_kept_while_status_unchanged() {
        let first = ready_condition(None, Reason::Attaching, "a", Some(1), t(10));
        let second = ready_condition(Some(&first), Reason::SecretNotFound, "b", Some(1), t(20));
        assert_eq!(
            second.last_transition_time,
            Some(t(10)),
            "False -> False keeps the time"
        );
        let third = ready_condition(Some(&second), Reason::Attached, "c", Some(1), t(30));
        assert_eq!(third.status, "True");
        assert_eq!(third.last_transition_time, Some(t(30)));
    }

    #[test]
    fn permanent_reasons_do_not_include_transient_ones() {
        assert!(Reason::ComputeTypeRefused.is_permanent());
        assert!(!Reason::Throttled.is_permanent());
        assert!(!Reason::AzureError.is_permanent());
    }
}
