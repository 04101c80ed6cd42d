//! The reasons of the events the operator publishes, as an enum like [`Reason`]: attach and
//! detach steps are Normal events; a `Ready` reason that means something went wrong is a
//! Warning. Documented in `docs/reference/conditions.md` (a test keeps the two in step).

use crate::controller::conditions::Reason;

/// Why an event was published.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventReason {
    /// An identical attachment that already existed was adopted (rule 3).
    Adopted,
    /// The compute is attached (first time Ready).
    Attached,
    /// A setting Azure cannot update in place changed: detach, then attach (rule 5).
    Reattaching,
    /// The attachment vanished from the workspace and was attached again (rule 7).
    DriftRepaired,
    /// The compute was detached (`underlyingResourceAction=Detach`).
    Detached,
    /// The object was released without an Azure call (never reached Azure, or nothing left).
    Released,
    /// The object was released and the attachment left in Azure (`deletionPolicy: Orphan`).
    Orphaned,
    /// The `Ready` condition took this reason.
    Condition(Reason),
}

impl EventReason {
    /// The step reasons (every variant but [`EventReason::Condition`]), in documentation order.
    pub const STEPS: [EventReason; 7] = [
        EventReason::Attached,
        EventReason::Adopted,
        EventReason::Reattaching,
        EventReason::DriftRepaired,
        EventReason::Detached,
        EventReason::Released,
        EventReason::Orphaned,
    ];

    /// The event's `reason` (CamelCase).
    pub fn as_str(self) -> &'static str {
        match self {
            EventReason::Adopted => "Adopted",
            EventReason::Attached => "Attached",
            EventReason::Reattaching => "Reattaching",
            EventReason::DriftRepaired => "DriftRepaired",
            EventReason::Detached => "Detached",
            EventReason::Released => "Released",
            EventReason::Orphaned => "Orphaned",
            EventReason::Condition(r) => r.as_str(),
        }
    }

    /// Warning for a condition that needs attention; Normal for steps and for waiting states
    /// (in flight, or a workspace waiting for its targets).
    pub fn is_warning(self) -> bool {
        match self {
            EventReason::Condition(r) => !matches!(
                r,
                Reason::Attached
                    | Reason::Reached
                    | Reason::Attaching
                    | Reason::Detaching
                    | Reason::Reattaching
                    | Reason::InUse
                    | Reason::WorkspacePending
            ),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_step_is_documented_and_no_step_is_a_warning() {
        let docs = include_str!("../../docs/reference/conditions.md");
        for e in EventReason::STEPS {
            assert!(
                docs.contains(&format!("`{}`", e.as_str())),
                "event {} is missing from docs/reference/conditions.md",
                e.as_str()
            );
            assert!(!e.is_warning());
        }
        assert!(EventReason::Condition(Reason::SecretNotLabeled).is_warning());
        assert!(!EventReason::Condition(Reason::InUse).is_warning());
        assert!(!EventReason::Condition(Reason::Reached).is_warning());
    }
}
