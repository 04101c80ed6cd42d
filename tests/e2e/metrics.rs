//! The chart's alerts and dashboard query only what the operator exports: every metric name and
//! label in their PromQL is read back from a running operator's `/metrics`. The scenario gives
//! every family a sample (prometheus-client leaves out a family until it has one): a target
//! attached after a 429 and a 500 from ARM (ARM counters, throttling, per-kind `targets`), and a
//! second target whose finalizer an admission policy refuses (reconcile errors are
//! Kubernetes-side failures; Azure's answers become target states instead).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use azureml_attach::api::RemoteVmTarget;
use azureml_emulator::FaultSpec;

use crate::harness::*;
use crate::monitoring;

/// Labels Prometheus adds to every scraped series (the ServiceMonitor's target labels).
const TARGET_LABELS: [&str; 4] = ["job", "namespace", "instance", "pod"];
/// Series Prometheus makes itself.
const SYNTHETIC: [&str; 1] = ["up"];

/// A ValidatingAdmissionPolicy refusing finalizers on targets labelled [`REFUSE_LABEL`] in
/// namespace `ns`, so the operator's reconcile of such a target fails in Kubernetes.
fn refuse_finalizers_policy(ns: &str) -> String {
    format!(
        r#"apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {{name: {ns}-refuse-finalizers}}
spec:
  failurePolicy: Fail
  matchConstraints:
    resourceRules:
      - apiGroups: [attach.azureml.io]
        apiVersions: ["*"]
        operations: [CREATE, UPDATE]
        resources: [remotevmtargets]
  validations:
    - expression: "!has(object.metadata.finalizers) || size(object.metadata.finalizers) == 0"
      message: finalizers are refused here (tests/e2e/metrics.rs)
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {{name: {ns}-refuse-finalizers}}
spec:
  policyName: {ns}-refuse-finalizers
  validationActions: [Deny]
  matchResources:
    namespaceSelector:
      matchLabels: {{kubernetes.io/metadata.name: {ns}}}
    objectSelector:
      matchLabels: {{{REFUSE_LABEL}: "true"}}
"#
    )
}

const REFUSE_LABEL: &str = "e2e.azureml-attach.io/refuse-finalizers";

/// A target (credentials of `metrics-vm`) with the refusing label and, optionally, a finalizer.
fn refused_target(name: &str, finalizer: bool) -> String {
    let finalizers = if finalizer {
        "\n  finalizers: [e2e.azureml-attach.io/probe]"
    } else {
        ""
    };
    format!(
        r#"apiVersion: attach.azureml.io/v1alpha1
kind: RemoteVmTarget
metadata:
  name: {name}
  labels: {{{REFUSE_LABEL}: "true"}}{finalizers}
spec:
  workspaceRef: {{name: prod-workspace}}
  resourceId: {VM2}
  sshPort: 22
  credentials:
    secretRef: {{name: metrics-vm-ssh}}
    passwordKey: password
"#
    )
}

/// Every PromQL query of the rendered alerts and of the chart's dashboards, by name.
fn queries(w: &World) -> Vec<(String, String, monitoring::Refs)> {
    let rule = monitoring::render_prometheus_rule(w.env.helm());
    let mut queries: Vec<(String, String)> = monitoring::alerts(&rule)
        .into_iter()
        .map(|a| {
            (
                format!("alert {}", a["alert"].as_str().unwrap()),
                a["expr"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    for (file, dashboard) in monitoring::dashboards() {
        queries.extend(
            monitoring::dashboard_queries(&dashboard)
                .into_iter()
                .map(|(panel, expr)| (format!("{file}: {panel}"), expr)),
        );
    }
    queries
        .into_iter()
        .map(|(name, expr)| {
            let refs = monitoring::refs(&expr);
            assert!(!refs.metrics.is_empty(), "{name}: no metric in {expr}");
            (name, expr, refs)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_and_dashboard_query_only_metrics_the_operator_exports() {
    let w = World::new("e2e-metrics").await;
    for status in [429, 500] {
        w.control
            .add_fault(&FaultSpec {
                method: Some("PUT".into()),
                path_pattern: "/computes/".into(),
                status: Some(status),
                retry_after: Some(1),
                count: Some(1),
                ..FaultSpec::default()
            })
            .await
            .unwrap();
    }
    // The policy is in force once a probe with a finalizer is refused (a server-side dry run).
    w.env
        .apply_yaml(None, &refuse_finalizers_policy(&w.ns))
        .await
        .expect("admission policy");
    let probe = refused_target("probe", true);
    let start = Instant::now();
    loop {
        let out = w
            .env
            .kubectl()
            .args(["create", "--dry-run=server", "-n", &w.ns, "-f", "-"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut child| {
                use std::io::Write as _;
                child.stdin.take().unwrap().write_all(probe.as_bytes())?;
                child.wait_with_output()
            })
            .unwrap();
        if String::from_utf8_lossy(&out.stderr).contains("finalizers are refused") {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the admission policy is not in force: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let op = Operator::start(&w, &[&w.ns], &[("LOG_FORMAT", "json")], "3s").await;
    let addr = op.admin_addr().await;
    w.apply(&vm_yaml("metrics-vm", VM1, 22)).await;
    let api = w.api::<RemoteVmTarget>();
    wait_reason(&api, "metrics-vm", "Attached", Duration::from_secs(90), &op).await;
    w.apply(&refused_target("refused-vm", false)).await;

    let refs = queries(&w);
    let wanted: BTreeSet<&str> = refs
        .iter()
        .flat_map(|(_, _, r)| r.metrics.iter().map(String::as_str))
        .filter(|m| !SYNTHETIC.contains(m))
        .collect();

    // `targets{kind,state}` is published every 15 s; the rest as it happens.
    let http = reqwest::Client::new();
    let start = Instant::now();
    let (text, samples) = loop {
        let text = http
            .get(format!("http://{addr}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let samples = monitoring::exposition(&text);
        let attached =
            text.contains(r#"azureml_attach_targets{kind="RemoteVmTarget",state="Attached"} 1"#);
        let missing: Vec<&&str> = wanted
            .iter()
            .filter(|m| !samples.contains_key(**m))
            .collect();
        if attached && missing.is_empty() {
            break (text, samples);
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "queried but no sample exported: {missing:?}; target Attached in the gauge: {attached}\n\
             /metrics:\n{text}\noperator log:\n{}",
            tail(&op.logs())
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };

    let mut problems = Vec::new();
    for (name, expr, r) in &refs {
        let mut known: BTreeSet<&str> = TARGET_LABELS.into_iter().collect();
        for m in &r.metrics {
            known.extend(samples.get(m).into_iter().flatten().map(String::as_str));
        }
        let unknown: BTreeSet<&str> = r
            .labels
            .iter()
            .map(String::as_str)
            .filter(|l| !known.contains(l))
            .collect();
        if !unknown.is_empty() {
            problems.push(format!(
                "{name}: labels {unknown:?} are on none of {:?}\n  {expr}",
                r.metrics
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "{}\n/metrics:\n{text}",
        problems.join("\n")
    );
}
