//! Prometheus metrics (prometheus-client, OpenMetrics text on `/metrics`).
//!
//! Every metric is prefixed `azureml_attach_`. Labels are low-cardinality by construction:
//! kinds, results, error reasons (`metric_label()`s), ARM operation ids, HTTP status codes and
//! op classes; never object names.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels `{kind, result}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindResultLabels {
    /// Resource kind (`RemoteVmTarget`, `MLWorkspace`, …).
    pub kind: String,
    /// `success` or `error`.
    pub result: String,
}

/// Labels `{kind, reason}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindReasonLabels {
    /// Resource kind.
    pub kind: String,
    /// Error reason (an error's `metric_label()`).
    pub reason: String,
}

/// Labels `{kind}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    /// Resource kind.
    pub kind: String,
}

/// Labels `{operation, status}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationStatusLabels {
    /// ARM operation id (`Compute_Get`, …).
    pub operation: String,
    /// HTTP status code, or `error` when no response arrived.
    pub status: String,
}

/// Labels `{operation}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationLabels {
    /// ARM operation id.
    pub operation: String,
}

/// Labels `{class}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClassLabels {
    /// `read`, `write` or `delete`.
    pub class: String,
}

/// Labels `{kind, state}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindStateLabels {
    /// Resource kind.
    pub kind: String,
    /// Target state (`Ready`, `Attaching`, `Error`, …).
    pub state: String,
}

fn reconcile_histogram() -> Histogram {
    // 5 ms … ~40 s.
    Histogram::new(exponential_buckets(0.005, 2.0, 14))
}

fn arm_histogram() -> Histogram {
    // 10 ms … ~40 s.
    Histogram::new(exponential_buckets(0.01, 2.0, 13))
}

/// All operator metrics and their registry. Share as `Arc<Metrics>`.
pub struct Metrics {
    registry: Registry,
    reconcile_total: Family<KindResultLabels, Counter>,
    reconcile_errors_total: Family<KindReasonLabels, Counter>,
    reconcile_duration: Family<KindLabels, Histogram, fn() -> Histogram>,
    arm_requests_total: Family<OperationStatusLabels, Counter>,
    arm_request_duration: Family<OperationLabels, Histogram, fn() -> Histogram>,
    arm_throttled_total: Family<ClassLabels, Counter>,
    arm_ratelimit_remaining: Family<ClassLabels, Gauge>,
    targets: Family<KindStateLabels, Gauge>,
    leader: Gauge,
    /// States each kind has reported, so `set_targets` can zero the ones that vanished.
    target_states: Mutex<HashMap<String, BTreeSet<String>>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates the metrics and registers them under `azureml_attach_`.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("azureml_attach");
        let reconcile_total = Family::<KindResultLabels, Counter>::default();
        let reconcile_errors_total = Family::<KindReasonLabels, Counter>::default();
        let reconcile_duration =
            Family::<KindLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                reconcile_histogram as fn() -> Histogram,
            );
        let arm_requests_total = Family::<OperationStatusLabels, Counter>::default();
        let arm_request_duration =
            Family::<OperationLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                arm_histogram as fn() -> Histogram,
            );
        let arm_throttled_total = Family::<ClassLabels, Counter>::default();
        let arm_ratelimit_remaining = Family::<ClassLabels, Gauge>::default();
        let targets = Family::<KindStateLabels, Gauge>::default();
        let leader = Gauge::default();

        // Counter names get `_total` appended by the encoder.
        registry.register(
            "reconcile",
            "Reconciliations by kind and result",
            reconcile_total.clone(),
        );
        registry.register(
            "reconcile_errors",
            "Reconciliation errors by kind and reason",
            reconcile_errors_total.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Duration of one reconciliation",
            reconcile_duration.clone(),
        );
        registry.register(
            "arm_requests",
            "ARM requests by operation and HTTP status",
            arm_requests_total.clone(),
        );
        registry.register(
            "arm_request_duration_seconds",
            "ARM request latency by operation",
            arm_request_duration.clone(),
        );
        registry.register(
            "arm_throttled",
            "ARM throttling events (429 or client-side budget exhausted) by op class",
            arm_throttled_total.clone(),
        );
        registry.register(
            "arm_ratelimit_remaining",
            "Requests ARM last reported left in a subscription's bucket (x-ms-ratelimit-remaining-subscription-*), by op class",
            arm_ratelimit_remaining.clone(),
        );
        registry.register(
            "targets",
            "Compute targets by kind and state",
            targets.clone(),
        );
        registry.register(
            "leader",
            "1 while this process runs the controllers (holds the Lease, or leader election is off), else 0",
            leader.clone(),
        );

        Self {
            registry,
            reconcile_total,
            reconcile_errors_total,
            reconcile_duration,
            arm_requests_total,
            arm_request_duration,
            arm_throttled_total,
            arm_ratelimit_remaining,
            targets,
            leader,
            target_states: Mutex::new(HashMap::new()),
        }
    }

    /// Records one finished reconciliation (`result` is `success` or `error`).
    pub fn reconcile_finished(&self, kind: &str, success: bool, duration: Duration) {
        let result = if success { "success" } else { "error" };
        self.reconcile_total
            .get_or_create(&KindResultLabels {
                kind: kind.to_string(),
                result: result.to_string(),
            })
            .inc();
        self.reconcile_duration
            .get_or_create(&KindLabels {
                kind: kind.to_string(),
            })
            .observe(duration.as_secs_f64());
    }

    /// Records a reconciliation error by reason (an error's `metric_label()`).
    pub fn reconcile_error(&self, kind: &str, reason: &str) {
        self.reconcile_errors_total
            .get_or_create(&KindReasonLabels {
                kind: kind.to_string(),
                reason: reason.to_string(),
            })
            .inc();
    }

    /// Records one ARM request; `status` is `None` when no response arrived.
    pub fn arm_request(&self, operation: &str, status: Option<u16>, duration: Duration) {
        let status = status.map_or_else(|| "error".to_string(), |s| s.to_string());
        self.arm_requests_total
            .get_or_create(&OperationStatusLabels {
                operation: operation.to_string(),
                status,
            })
            .inc();
        self.arm_request_duration
            .get_or_create(&OperationLabels {
                operation: operation.to_string(),
            })
            .observe(duration.as_secs_f64());
    }

    /// Records a throttling event for `class` (`read`, `write`, `delete`).
    pub fn arm_throttled(&self, class: &str) {
        self.arm_throttled_total
            .get_or_create(&ClassLabels {
                class: class.to_string(),
            })
            .inc();
    }

    /// Records ARM's last reported remaining requests for `class` (the latest answer wins,
    /// whichever subscription it came from: subscriptions are not a label, so the series stay
    /// three).
    pub fn arm_ratelimit_remaining(&self, class: &str, remaining: u32) {
        self.arm_ratelimit_remaining
            .get_or_create(&ClassLabels {
                class: class.to_string(),
            })
            .set(i64::from(remaining));
    }

    /// Replaces the target counts of `kind`: states reported before but absent now read 0
    /// (not a stale count).
    pub fn set_targets<'a>(&self, kind: &str, counts: impl IntoIterator<Item = (&'a str, i64)>) {
        let mut seen = self.target_states.lock().unwrap_or_else(|p| p.into_inner());
        let states = seen.entry(kind.to_string()).or_default();
        let counts: Vec<(&str, i64)> = counts.into_iter().collect();
        for state in states.iter() {
            if !counts.iter().any(|(s, _)| s == state) {
                self.set_target_count(kind, state, 0);
            }
        }
        for (state, count) in counts {
            states.insert(state.to_string());
            self.set_target_count(kind, state, count);
        }
    }

    /// Sets one `targets{kind,state}` gauge.
    pub fn set_target_count(&self, kind: &str, state: &str, count: i64) {
        self.targets
            .get_or_create(&KindStateLabels {
                kind: kind.to_string(),
                state: state.to_string(),
            })
            .set(count);
    }

    /// Records whether this process runs the controllers. Stepping down also drops the
    /// `targets` series: only the leader's counts are current, and a standby that led before
    /// must not keep exporting its last ones next to the new leader's.
    pub fn set_leader(&self, leading: bool) {
        self.leader.set(i64::from(leading));
        if !leading {
            self.targets.clear();
            self.target_states
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clear();
        }
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_encode_with_prefix_and_labels() {
        let m = Metrics::new();
        m.reconcile_finished("RemoteVmTarget", true, Duration::from_millis(20));
        m.reconcile_error("RemoteVmTarget", "throttled");
        m.arm_request("Compute_Get", Some(200), Duration::from_millis(15));
        m.arm_request("Compute_Get", None, Duration::from_millis(15));
        m.arm_throttled("read");
        m.arm_ratelimit_remaining("write", 7);
        m.arm_ratelimit_remaining("write", 5);
        m.set_targets("RemoteVmTarget", [("Ready", 3), ("Error", 1)]);
        m.set_targets("RemoteVmTarget", [("Ready", 4)]);
        let text = m.encode().unwrap();
        for needle in [
            r#"azureml_attach_reconcile_total{kind="RemoteVmTarget",result="success"} 1"#,
            r#"azureml_attach_reconcile_errors_total{kind="RemoteVmTarget",reason="throttled"} 1"#,
            r#"azureml_attach_reconcile_duration_seconds_count{kind="RemoteVmTarget"} 1"#,
            r#"azureml_attach_arm_requests_total{operation="Compute_Get",status="200"} 1"#,
            r#"azureml_attach_arm_requests_total{operation="Compute_Get",status="error"} 1"#,
            r#"azureml_attach_arm_request_duration_seconds_count{operation="Compute_Get"} 2"#,
            r#"azureml_attach_arm_throttled_total{class="read"} 1"#,
            r#"azureml_attach_arm_ratelimit_remaining{class="write"} 5"#,
            r#"azureml_attach_targets{kind="RemoteVmTarget",state="Ready"} 4"#,
            r#"azureml_attach_targets{kind="RemoteVmTarget",state="Error"} 0"#,
            "azureml_attach_leader 0",
            "# EOF",
        ] {
            assert!(text.contains(needle), "missing {needle} in\n{text}");
        }
    }

    #[test]
    fn stepping_down_drops_the_target_counts() {
        let m = Metrics::new();
        m.set_leader(true);
        m.set_targets("RemoteVmTarget", [("Attached", 2)]);
        assert!(m.encode().unwrap().contains("azureml_attach_leader 1"));
        m.set_leader(false);
        let text = m.encode().unwrap();
        assert!(text.contains("azureml_attach_leader 0"), "{text}");
        assert!(!text.contains("azureml_attach_targets"), "{text}");
    }
}
