//! The reasons of the events the operator publishes, as an enum like [`Reason`]: attach and
//! detach steps are Normal events; a `Ready` reason that means something went wrong is a
//! Warning. Documented in `docs/reference/conditions.md` (a test keeps the two in step).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ObjectReference;
use kube::Client;
use kube::runtime::events::{Event, Recorder, Reporter};

use crate::controller::conditions::Reason;

/// How long kube's `Recorder` keeps a published event (its `CACHE_TTL`, 6 minutes), plus a
/// margin.
const RECORDER_MEMORY: Duration = Duration::from_secs(7 * 60);

/// kube's event `Recorder`, renewed when its cache can hold nothing current.
///
/// The Recorder keeps every event it published for 6 minutes (to turn a repeat into a series)
/// and drops the old ones only when it publishes the next. After a converge of 10,000 targets
/// (one `Attached` each) a quiet operator kept all 10,000 for as long as it stayed quiet.
/// [`Events::expire`], called every 15 s, replaces the Recorder once nothing was published for
/// longer than that TTL: every cached event is past it then, so no series is lost.
pub struct Events {
    client: Client,
    reporter: Reporter,
    /// How long nothing must be published before the Recorder is renewed.
    memory: Duration,
    current: Mutex<Current>,
}

struct Current {
    recorder: Recorder,
    /// The last publish, if any since the Recorder was made.
    last: Option<Instant>,
}

impl Events {
    /// A recorder that reports as `reporter`.
    pub fn new(client: Client, reporter: Reporter) -> Self {
        Self::with_memory(client, reporter, RECORDER_MEMORY)
    }

    fn with_memory(client: Client, reporter: Reporter, memory: Duration) -> Self {
        let recorder = Recorder::new(client.clone(), reporter.clone());
        Self {
            client,
            reporter,
            memory,
            current: Mutex::new(Current {
                recorder,
                last: None,
            }),
        }
    }

    /// Publishes `event` about `regarding` (a repeat within 6 minutes becomes a series).
    pub async fn publish(
        &self,
        event: &Event,
        regarding: &ObjectReference,
    ) -> Result<(), kube::Error> {
        let recorder = {
            let mut current = self.lock();
            current.last = Some(Instant::now());
            current.recorder.clone()
        };
        recorder.publish(event, regarding).await
    }

    /// Drops the Recorder's cache when nothing was published for longer than it keeps events;
    /// says whether it did.
    pub fn expire(&self) -> bool {
        let mut current = self.lock();
        match current.last {
            Some(at) if at.elapsed() > self.memory => {
                current.recorder = Recorder::new(self.client.clone(), self.reporter.clone());
                current.last = None;
                true
            }
            _ => false,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Current> {
        self.current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

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

    /// A client whose every request fails (no API server is needed to see the cache renewed).
    fn offline_client() -> Client {
        let service = tower::service_fn(|_req: http::Request<kube::client::Body>| async {
            Err::<http::Response<kube::client::Body>, std::io::Error>(std::io::Error::other(
                "offline",
            ))
        });
        Client::new(service, "default")
    }

    #[tokio::test]
    async fn the_recorder_is_renewed_only_after_a_quiet_ttl() {
        let reporter = Reporter {
            controller: "test".into(),
            instance: None,
        };
        let event = Event {
            type_: kube::runtime::events::EventType::Normal,
            reason: "Attached".into(),
            note: None,
            action: "Attached".into(),
            secondary: None,
        };
        let regarding = ObjectReference::default();
        // Nothing published yet: nothing to renew.
        let events = Events::with_memory(offline_client(), reporter.clone(), Duration::ZERO);
        assert!(!events.expire());
        let _ = events.publish(&event, &regarding).await;
        std::thread::sleep(Duration::from_millis(2));
        assert!(events.expire(), "quiet for longer than the TTL: renewed");
        assert!(
            !events.expire(),
            "renewed once, not again until the next publish"
        );
        // Within the TTL: kept.
        let events = Events::new(offline_client(), reporter);
        let _ = events.publish(&event, &regarding).await;
        assert!(!events.expire());
    }

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
