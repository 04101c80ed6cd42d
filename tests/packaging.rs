//! Packaging tests: the Helm chart, the kustomize base and the samples, proved on a real
//! kube-apiserver (server-side apply, Pod Security admission, CRD validation), not by reading YAML.
//!
//! Every test shares this binary's control plane (`TestEnv::global()`) and works in its own
//! namespace and release name, so they run in parallel.

use std::{
    collections::BTreeSet,
    io::Write,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::OnceLock,
};

#[allow(dead_code)] // shared with tests/node, which reads built archives
#[path = "common/image.rs"]
mod image;
#[allow(dead_code)] // shared with tests/e2e/monitoring.rs
#[path = "common/monitoring.rs"]
mod monitoring;
#[allow(dead_code)] // shared with examples/demo.rs, which uses all of it
#[path = "../examples/demo/stack.rs"]
mod stack;

use serde::Deserialize as _;
use serde_yaml::Value;
use testenv::TestEnv;

/// The repository root (this package is the root package).
fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn chart() -> PathBuf {
    repo().join("charts/azureml-attach")
}

/// Output of a command that must succeed; panics with its stderr otherwise.
fn run_ok(what: &str, cmd: &mut Command, stdin: Option<&str>) -> String {
    let (ok, stdout, stderr) = run(cmd, stdin);
    assert!(
        ok,
        "{what} failed:\n--- stderr ---\n{stderr}\n--- stdout ---\n{stdout}"
    );
    stdout
}

/// Stderr (and stdout) of a command that must fail; panics if it succeeds.
fn run_err(what: &str, cmd: &mut Command, stdin: Option<&str>) -> String {
    let (ok, stdout, stderr) = run(cmd, stdin);
    assert!(!ok, "{what} succeeded but must fail:\n{stdout}");
    format!("{stderr}{stdout}")
}

fn run(cmd: &mut Command, stdin: Option<&str>) -> (bool, String, String) {
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        pipe.write_all(input.as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The documents of a multi-document YAML stream (empty documents dropped).
fn documents(yaml: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(yaml)
        .map(|d| Value::deserialize(d).unwrap())
        .filter(|v| !v.is_null())
        .collect()
}

fn kind(doc: &Value) -> &str {
    doc["kind"].as_str().unwrap_or_default()
}

fn find<'a>(docs: &'a [Value], kind_: &str) -> &'a Value {
    docs.iter()
        .find(|d| kind(d) == kind_)
        .unwrap_or_else(|| panic!("no {kind_} in the rendered manifests"))
}

fn kubectl(env: &TestEnv) -> Command {
    let mut cmd = env.kubectl();
    cmd.arg("--request-timeout=60s");
    cmd
}

/// `helm template` of the chart with `--set` pairs and an optional values file.
fn helm_template(
    env: &TestEnv,
    release: &str,
    namespace: &str,
    sets: &[&str],
    values: Option<&Path>,
) -> Command {
    let mut cmd = env.helm();
    cmd.args(["template", release])
        .arg(chart())
        .args(["--namespace", namespace, "--include-crds"]);
    for set in sets {
        cmd.args(["--set", set]);
    }
    if let Some(file) = values {
        cmd.arg("--values").arg(file);
    }
    cmd
}

fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(future)
}

/// A fresh namespace that enforces the `restricted` Pod Security Standard.
fn restricted_namespace(env: &TestEnv, prefix: &str) -> String {
    let ns = block_on(env.create_namespace(prefix));
    run_ok(
        "labelling the namespace restricted",
        kubectl(env).args([
            "label",
            "namespace",
            &ns,
            "pod-security.kubernetes.io/enforce=restricted",
            "pod-security.kubernetes.io/enforce-version=latest",
            "--overwrite",
        ]),
        None,
    );
    ns
}

fn apply_server_side(env: &TestEnv, what: &str, manifests: &str) -> String {
    run_ok(
        what,
        kubectl(env).args([
            "apply",
            "--server-side",
            "--force-conflicts",
            "--field-manager=packaging-test",
            "-f",
            "-",
        ]),
        Some(manifests),
    )
}

/// Creates the Deployment's pod template as a Pod with `dryRun=All` in `namespace`, so the
/// Pod Security admission plugin judges exactly what the Deployment would run.
fn create_pod_dry_run(
    env: &TestEnv,
    deployment: &Value,
    namespace: &str,
) -> Result<String, String> {
    let template = &deployment["spec"]["template"];
    let mut pod = serde_yaml::Mapping::new();
    pod.insert("apiVersion".into(), "v1".into());
    pod.insert("kind".into(), "Pod".into());
    let mut meta = serde_yaml::Mapping::new();
    meta.insert("name".into(), "pod-template-dry-run".into());
    meta.insert("namespace".into(), namespace.into());
    meta.insert("labels".into(), template["metadata"]["labels"].clone());
    meta.insert(
        "annotations".into(),
        template["metadata"]["annotations"].clone(),
    );
    pod.insert("metadata".into(), Value::Mapping(meta));
    pod.insert("spec".into(), template["spec"].clone());
    let yaml = serde_yaml::to_string(&Value::Mapping(pod)).unwrap();
    let (ok, stdout, stderr) = run(
        kubectl(env).args(["create", "--dry-run=server", "-o", "name", "-f", "-"]),
        Some(&yaml),
    );
    if ok { Ok(stdout) } else { Err(stderr) }
}

/// Proves that the namespace really enforces `restricted`: a plain pod is refused.
fn assert_restricted_is_enforced(env: &TestEnv, namespace: &str) {
    let pod = format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: plain, namespace: {namespace}}}\n\
         spec: {{containers: [{{name: c, image: busybox}}]}}\n"
    );
    let err = run_err(
        "a pod without a securityContext in a restricted namespace",
        kubectl(env).args(["create", "--dry-run=server", "-f", "-"]),
        Some(&pod),
    );
    assert!(
        err.contains("violates PodSecurity"),
        "unexpected refusal: {err}"
    );
}

/// Installs the CRDs from `crds/` once per test binary and waits until they are served.
fn install_crds(env: &TestEnv) {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        run_ok(
            "applying crds/",
            kubectl(env)
                .args(["apply", "--server-side", "--force-conflicts", "-f"])
                .arg(repo().join("crds")),
            None,
        );
        run_ok(
            "waiting for the CRDs",
            kubectl(env)
                .args(["wait", "--for=condition=Established", "--timeout=60s", "-f"])
                .arg(repo().join("crds")),
            None,
        );
    });
}

/// Every rule's (apiGroups, resources, verbs, resourceNames, nonResourceURLs) as sorted sets,
/// so that ordering inside a rule does not matter.
fn normalized_rules(role: &Value) -> BTreeSet<String> {
    let set = |v: &Value| -> Vec<String> {
        let mut items: Vec<String> = v
            .as_sequence()
            .map(|s| {
                s.iter()
                    .map(|i| i.as_str().unwrap_or_default().to_owned())
                    .collect()
            })
            .unwrap_or_default();
        items.sort();
        items
    };
    role["rules"]
        .as_sequence()
        .expect("rules")
        .iter()
        .map(|r| {
            format!(
                "{:?} {:?} {:?} {:?} {:?}",
                set(&r["apiGroups"]),
                set(&r["resources"]),
                set(&r["verbs"]),
                set(&r["resourceNames"]),
                set(&r["nonResourceURLs"])
            )
        })
        .collect()
}

fn assert_no_wildcards(role: &Value) {
    for rule in role["rules"].as_sequence().expect("rules") {
        for field in ["apiGroups", "resources", "verbs"] {
            for item in rule[field].as_sequence().into_iter().flatten() {
                assert_ne!(item.as_str(), Some("*"), "wildcard in {field} of {rule:?}");
            }
        }
    }
}

#[test]
fn helm_lint_is_clean() {
    let env = TestEnv::global();
    let out = run_ok(
        "helm lint --strict",
        env.helm().args(["lint", "--strict"]).arg(chart()),
        None,
    );
    assert!(out.contains("0 chart(s) failed"), "{out}");
    assert!(
        !out.contains("[WARNING]") && !out.contains("[ERROR]"),
        "{out}"
    );
    let values = chart().join("ci/nondefault-values.yaml");
    let out = run_ok(
        "helm lint --strict with non-default values",
        env.helm()
            .args(["lint", "--strict"])
            .arg(chart())
            .arg("--values")
            .arg(values),
        None,
    );
    assert!(
        !out.contains("[WARNING]") && !out.contains("[ERROR]"),
        "{out}"
    );
}

#[test]
fn chart_rbac_equals_deploy_base_rbac_and_has_no_wildcards() {
    let env = TestEnv::global();
    let rendered = run_ok(
        "helm template",
        &mut helm_template(env, "azureml-attach", "azureml-attach-system", &[], None),
        None,
    );
    let chart_docs = documents(&rendered);
    let base_docs =
        documents(&std::fs::read_to_string(repo().join("deploy/base/rbac.yaml")).unwrap());
    for kind_ in ["ClusterRole", "Role"] {
        let ours: Vec<&Value> = chart_docs.iter().filter(|d| kind(d) == kind_).collect();
        let theirs: Vec<&Value> = base_docs.iter().filter(|d| kind(d) == kind_).collect();
        assert_eq!(
            ours.len(),
            theirs.len(),
            "number of {kind_}s: chart vs deploy/base/rbac.yaml"
        );
        for (a, b) in ours.iter().zip(&theirs) {
            assert_no_wildcards(a);
            assert_eq!(
                normalized_rules(a),
                normalized_rules(b),
                "{kind_} rules differ between the chart and deploy/base/rbac.yaml"
            );
        }
    }
    // With the conventional release name the chart's names match deploy/base.
    let sa = find(&chart_docs, "ServiceAccount");
    assert_eq!(
        sa["metadata"]["name"],
        find(&base_docs, "ServiceAccount")["metadata"]["name"]
    );
}

/// Renders, applies (server side) and checks the pod template against `restricted`.
fn apply_chart_and_check(
    env: &TestEnv,
    release: &str,
    sets: &[&str],
    values: Option<&Path>,
) -> Vec<Value> {
    let ns = restricted_namespace(env, release);
    let rendered = run_ok(
        "helm template",
        &mut helm_template(env, release, &ns, sets, values),
        None,
    );
    let docs = documents(&rendered);
    apply_server_side(env, "applying the rendered chart", &rendered);
    let deployment = find(&docs, "Deployment");
    let name = deployment["metadata"]["name"].as_str().unwrap();
    run_ok(
        "reading back the Deployment",
        kubectl(env).args(["get", "deployment", name, "-n", &ns, "-o", "name"]),
        None,
    );
    assert_restricted_is_enforced(env, &ns);
    if let Err(err) = create_pod_dry_run(env, deployment, &ns) {
        panic!("the chart's pod template is refused in a restricted namespace:\n{err}");
    }
    docs
}

fn container_args(docs: &[Value]) -> Vec<String> {
    find(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn chart_with_default_values_applies_and_passes_restricted() {
    let env = TestEnv::global();
    let docs = apply_chart_and_check(env, "pkg-default", &[], None);
    let deployment = find(&docs, "Deployment");
    assert_eq!(deployment["spec"]["replicas"], 1);
    let args = container_args(&docs);
    assert!(args.contains(&"--cloud=AzurePublic".to_owned()), "{args:?}");
    assert!(!args.iter().any(|a| a == "--leader-elect"), "{args:?}");
    assert!(docs.iter().any(|d| kind(d) == "CustomResourceDefinition"));
    assert!(
        !docs.iter().any(|d| matches!(
            kind(d),
            "ServiceMonitor" | "PodDisruptionBudget" | "PrometheusRule" | "ConfigMap"
        )),
        "monitoring objects are off by default"
    );
}

/// Minimal stand-in for the prometheus-operator CRD, so the ServiceMonitor can be applied.
const SERVICE_MONITOR_CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: servicemonitors.monitoring.coreos.com}
spec:
  group: monitoring.coreos.com
  names: {kind: ServiceMonitor, listKind: ServiceMonitorList, plural: servicemonitors, singular: servicemonitor}
  scope: Namespaced
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}
"#;

/// The same for PrometheusRule.
const PROMETHEUS_RULE_CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: prometheusrules.monitoring.coreos.com}
spec:
  group: monitoring.coreos.com
  names: {kind: PrometheusRule, listKind: PrometheusRuleList, plural: prometheusrules, singular: prometheusrule}
  scope: Namespaced
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}
"#;

#[test]
fn chart_with_non_default_values_applies_and_passes_restricted() {
    let env = TestEnv::global();
    apply_server_side(env, "a ServiceMonitor CRD", SERVICE_MONITOR_CRD);
    apply_server_side(env, "a PrometheusRule CRD", PROMETHEUS_RULE_CRD);
    run_ok(
        "waiting for the ServiceMonitor and PrometheusRule CRDs",
        kubectl(env).args([
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd/servicemonitors.monitoring.coreos.com",
            "crd/prometheusrules.monitoring.coreos.com",
        ]),
        None,
    );
    // Its controller.watchNamespaces puts a Role in each, so they must exist (as on a cluster);
    // its dashboard goes to Grafana's namespace.
    ensure_namespaces(env, &["ml-team-a", "ml-team-b", "monitoring"]);
    let values = chart().join("ci/nondefault-values.yaml");
    let docs = apply_chart_and_check(env, "pkg-custom", &[], Some(&values));

    let deployment = find(&docs, "Deployment");
    assert_eq!(deployment["spec"]["replicas"], 2);
    let args = container_args(&docs);
    for expected in [
        "--cloud=Custom",
        "--arm-endpoint=https://management.azurestack.example.com",
        "--authority-host=https://login.azurestack.example.com",
        "--extra-ca-file=/etc/azureml-attach/ca/ca-bundle.pem",
        "--api-version=2025-12-01",
        "--resync-period=90s",
        "--watch-namespaces=ml-team-a,ml-team-b",
        "--log-format=text",
        "--leader-elect",
    ] {
        assert!(
            args.iter().any(|a| a == expected),
            "missing {expected} in {args:?}"
        );
    }
    let pod = &deployment["spec"]["template"];
    assert_eq!(
        pod["metadata"]["labels"]["azure.workload.identity/use"],
        "true"
    );
    assert_eq!(
        pod["metadata"]["annotations"]["example.com/team"],
        "ml-platform"
    );
    assert_eq!(pod["spec"]["nodeSelector"]["agentpool"], "system");
    assert!(
        pod["spec"]["tolerations"]
            .as_sequence()
            .is_some_and(|t| !t.is_empty())
    );
    assert!(pod["spec"]["affinity"]["podAntiAffinity"].is_mapping());
    let ca_volume = pod["spec"]["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "extra-ca")
        .expect("extra-ca volume");
    assert_eq!(ca_volume["configMap"]["name"], "corp-ca");
    let ca_mount = pod["spec"]["containers"][0]["volumeMounts"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "extra-ca")
        .expect("extra-ca mount");
    assert_eq!(ca_mount["readOnly"], true);
    let sa = find(&docs, "ServiceAccount");
    assert_eq!(
        sa["metadata"]["annotations"]["azure.workload.identity/client-id"],
        "44444444-4444-4444-4444-444444444444"
    );
    find(&docs, "ServiceMonitor");
    find(&docs, "PodDisruptionBudget");

    let rule = find(&docs, "PrometheusRule");
    assert_eq!(
        rule["metadata"]["labels"]["release"],
        "kube-prometheus-stack"
    );
    let alerts = monitoring::alerts(rule);
    assert_eq!(alerts.len(), 7, "{alerts:?}");
    for alert in &alerts {
        assert_eq!(alert["labels"]["team"], "ml-platform", "{alert:?}");
        // The job is the metrics Service's name, whatever the release is called.
        let expr = alert["expr"].as_str().unwrap();
        assert!(
            expr.contains(r#"job="pkg-custom-azureml-attach-metrics""#),
            "{expr}"
        );
    }
    let by_name = |name: &str| *alerts.iter().find(|a| a["alert"] == name).unwrap();
    assert_eq!(by_name("AzureMLAttachTargetNotReady")["for"], "30m");
    assert_eq!(by_name("AzureMLAttachNoLeader")["for"], "10m");
    assert_eq!(by_name("AzureMLAttachDetachStuck")["for"], "30m");

    let dashboards = find(&docs, "ConfigMap");
    assert_eq!(dashboards["metadata"]["namespace"], "monitoring");
    assert_eq!(dashboards["metadata"]["labels"]["grafana_dashboard"], "1");
    assert_eq!(
        dashboards["metadata"]["annotations"]["grafana_folder"],
        "Operators"
    );
    let files = monitoring::dashboards();
    let data = dashboards["data"].as_mapping().unwrap();
    assert_eq!(data.len(), files.len(), "one key per dashboards/*.json");
    for (file, json) in &files {
        let shipped: serde_json::Value =
            serde_json::from_str(data[file.as_str()].as_str().unwrap()).unwrap();
        assert_eq!(
            &shipped, json,
            "{file} in the ConfigMap differs from the file"
        );
    }
}

/// Creates the namespaces if they are missing. Server-side apply, so tests may race on them,
/// with a field manager of its own that owns only the names: it never takes away labels that
/// another test applied (deploy/base labels its namespace `restricted`).
fn ensure_namespaces(env: &TestEnv, names: &[&str]) {
    let manifests: String = names
        .iter()
        .map(|n| format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: {n}}}\n---\n"))
        .collect();
    run_ok(
        "creating namespaces",
        kubectl(env).args([
            "apply",
            "--server-side",
            "--field-manager=packaging-test-namespaces",
            "-f",
            "-",
        ]),
        Some(&manifests),
    );
}

/// The list of `--watch-namespaces=a,b`, if the flag is there.
fn watch_namespaces(args: &[String]) -> Option<Vec<String>> {
    args.iter()
        .find_map(|a| a.strip_prefix("--watch-namespaces="))
        .map(|list| list.split(',').map(str::to_owned).collect())
}

fn grants_secrets(role: &Value) -> bool {
    role["rules"]
        .as_sequence()
        .into_iter()
        .flatten()
        .any(|rule| {
            rule["resources"]
                .as_sequence()
                .into_iter()
                .flatten()
                .any(|r| r.as_str() == Some("secrets"))
        })
}

/// `namespace/name` of every `kind_` document, with what must agree: the normalized rules of a
/// Role, the roleRef and subjects of a RoleBinding.
fn rbac_by_name(docs: &[Value], kind_: &str) -> std::collections::BTreeMap<String, Value> {
    docs.iter()
        .filter(|d| kind(d) == kind_)
        .map(|d| {
            let key = format!(
                "{}/{}",
                d["metadata"]["namespace"].as_str().unwrap_or_default(),
                d["metadata"]["name"].as_str().unwrap_or_default()
            );
            let what = if kind_ == "Role" {
                Value::String(format!("{:?}", normalized_rules(d)))
            } else {
                Value::Sequence(vec![d["roleRef"].clone(), d["subjects"].clone()])
            };
            (key, what)
        })
        .collect()
}

/// With `--watch-namespaces`, the chart (controller.watchNamespaces) and
/// deploy/overlays/namespaced grant the same: the operator's rules as a Role in each watched
/// namespace, the leader-election Role in its own, and no ClusterRole at all.
#[test]
fn chart_with_watch_namespaces_equals_the_namespaced_overlay() {
    let env = TestEnv::global();
    let overlay = documents(&run_ok(
        "kubectl kustomize deploy/overlays/namespaced",
        kubectl(env)
            .arg("kustomize")
            .arg(repo().join("deploy/overlays/namespaced")),
        None,
    ));
    let namespaces = watch_namespaces(&container_args(&overlay))
        .expect("deploy/overlays/namespaced sets --watch-namespaces");
    assert!(
        namespaces.len() >= 2,
        "the example shows a list: {namespaces:?}"
    );
    let set = format!("controller.watchNamespaces={{{}}}", namespaces.join(","));
    let chart = documents(&run_ok(
        "helm template --set controller.watchNamespaces",
        &mut helm_template(
            env,
            "azureml-attach",
            "azureml-attach-system",
            &[&set],
            None,
        ),
        None,
    ));
    // The operator is told the same namespaces that it is granted.
    assert_eq!(
        watch_namespaces(&container_args(&chart)),
        Some(namespaces.clone())
    );
    for (what, docs) in [("the chart", &chart), ("the overlay", &overlay)] {
        for doc in docs.iter().filter(|d| kind(d) == "ClusterRole") {
            assert!(
                !grants_secrets(doc),
                "{what}: a ClusterRole grants Secrets: {doc:?}"
            );
        }
        // Nothing the operator calls is cluster-scoped in this mode: no ClusterRole at all.
        let cluster: Vec<&str> = docs
            .iter()
            .filter(|d| matches!(kind(d), "ClusterRole" | "ClusterRoleBinding"))
            .map(|d| d["metadata"]["name"].as_str().unwrap_or_default())
            .collect();
        assert!(cluster.is_empty(), "{what}: cluster-wide RBAC {cluster:?}");
        for doc in docs.iter().filter(|d| kind(d) == "Role") {
            assert_no_wildcards(doc);
            let ns = doc["metadata"]["namespace"].as_str().unwrap_or_default();
            assert_eq!(
                grants_secrets(doc),
                namespaces.iter().any(|n| n == ns),
                "{what}: Secrets must be granted in exactly the watched namespaces ({ns})"
            );
        }
    }
    let roles = rbac_by_name(&chart, "Role");
    assert_eq!(
        roles,
        rbac_by_name(&overlay, "Role"),
        "Roles: chart vs overlay"
    );
    assert_eq!(
        rbac_by_name(&chart, "RoleBinding"),
        rbac_by_name(&overlay, "RoleBinding"),
        "RoleBindings: chart vs overlay"
    );
    let mut expected: BTreeSet<String> = namespaces
        .iter()
        .map(|n| format!("{n}/azureml-attach"))
        .collect();
    expected.insert("azureml-attach-system/azureml-attach-leader-election".to_owned());
    assert_eq!(roles.keys().cloned().collect::<BTreeSet<_>>(), expected);
    // A watched namespace gets exactly the rules the cluster-wide mode grants everywhere.
    let base_docs =
        documents(&std::fs::read_to_string(repo().join("deploy/base/rbac.yaml")).unwrap());
    let watched_role = chart
        .iter()
        .find(|d| kind(d) == "Role" && d["metadata"]["namespace"].as_str() == Some(&namespaces[0]))
        .unwrap();
    assert_eq!(
        normalized_rules(watched_role),
        normalized_rules(find(&base_docs, "ClusterRole")),
        "the per-namespace Role and deploy/base's ClusterRole differ"
    );
    // The API server takes the overlay as it is once the namespaces exist (a dry run creates
    // none, not even the overlay's own).
    let mut names: Vec<&str> = namespaces.iter().map(String::as_str).collect();
    names.push("azureml-attach-system");
    ensure_namespaces(env, &names);
    let rendered = run_ok(
        "kubectl kustomize deploy/overlays/namespaced",
        kubectl(env)
            .arg("kustomize")
            .arg(repo().join("deploy/overlays/namespaced")),
        None,
    );
    run_ok(
        "server-side dry run of the namespaced overlay",
        kubectl(env).args([
            "apply",
            "--server-side",
            "--force-conflicts",
            "--dry-run=server",
            "--field-manager=packaging-test",
            "-f",
            "-",
        ]),
        Some(&rendered),
    );
}

#[test]
fn values_schema_refuses_bad_values_with_the_field_name() {
    let env = TestEnv::global();
    for (set, field) in [
        ("replicaCount=-1", "replicaCount"),
        ("controller.logFormat=xml", "logFormat"),
        ("controller.resyncPeriod=5 minutes", "resyncPeriod"),
        ("azure.cloud=Mars", "cloud"),
        (
            "azure.armEndpoint=http://insecure.example.com",
            "armEndpoint",
        ),
        ("controller.adminPort=70000", "adminPort"),
        ("unknownKey=1", "unknownKey"),
        (
            "prometheusRule.for.targetNotReady=15 minutes",
            "targetNotReady",
        ),
        ("prometheusRule.alertLabels.team-name=x", "team-name"),
        ("prometheusRule.runbookBaseUrl=README.md", "runbookBaseUrl"),
        ("grafanaDashboard.namespace=Monitoring", "namespace"),
    ] {
        let err = run_err(
            &format!("helm template --set {set}"),
            &mut helm_template(env, "pkg-bad", "default", &[set], None),
            None,
        );
        assert!(
            err.contains("values don't meet the specifications of the schema")
                && err.contains(field),
            "--set {set}: the error does not name {field}:\n{err}"
        );
    }
    // Combinations the schema cannot phrase well fail in the templates, with a sentence.
    for (sets, words) in [
        (
            &["azure.cloud=Custom"][..],
            "azure.cloud=Custom needs azure.armEndpoint",
        ),
        (
            &["workloadIdentity.enabled=true"][..],
            "workloadIdentity.clientId",
        ),
        (
            &[
                "azure.extraCA.configMap.name=a",
                "azure.extraCA.secret.name=b",
            ][..],
            "not both",
        ),
        (
            &["replicaCount=2", "controller.leaderElection=false"][..],
            "needs leader election",
        ),
        (
            &[
                "prometheusRule.enabled=true",
                "metrics.service.enabled=false",
            ][..],
            "prometheusRule.enabled needs metrics.service.enabled",
        ),
    ] {
        let err = run_err(
            &format!("helm template --set {sets:?}"),
            &mut helm_template(env, "pkg-bad", "default", sets, None),
            None,
        );
        assert!(
            err.contains(words),
            "--set {sets:?}: expected {words:?} in:\n{err}"
        );
    }
}

#[test]
fn kustomize_base_applies_and_passes_restricted() {
    let env = TestEnv::global();
    let rendered = run_ok(
        "kubectl kustomize deploy/base",
        kubectl(env)
            .arg("kustomize")
            .arg(repo().join("deploy/base")),
        None,
    );
    let docs = documents(&rendered);
    for kind_ in [
        "Namespace",
        "CustomResourceDefinition",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Deployment",
        "Service",
    ] {
        find(&docs, kind_);
    }
    let namespace = find(&docs, "Namespace");
    assert_eq!(namespace["metadata"]["name"], "azureml-attach-system");
    assert_eq!(
        namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"],
        "restricted"
    );
    apply_server_side(env, "applying deploy/base", &rendered);
    let deployment = find(&docs, "Deployment");
    // In the base's own namespace (labelled restricted by the base) and in a fresh one.
    assert_restricted_is_enforced(env, "azureml-attach-system");
    if let Err(err) = create_pod_dry_run(env, deployment, "azureml-attach-system") {
        panic!("deploy/base's pod template is refused in its restricted namespace:\n{err}");
    }
    let ns = restricted_namespace(env, "pkg-kustomize");
    run_ok(
        "creating the ServiceAccount",
        kubectl(env).args(["create", "serviceaccount", "azureml-attach", "-n", &ns]),
        None,
    );
    if let Err(err) = create_pod_dry_run(env, deployment, &ns) {
        panic!("deploy/base's pod template is refused in a restricted namespace:\n{err}");
    }
}

#[test]
fn kustomize_workload_identity_overlay_is_accepted() {
    let env = TestEnv::global();
    let rendered = run_ok(
        "kubectl kustomize deploy/overlays/aks-workload-identity",
        kubectl(env)
            .arg("kustomize")
            .arg(repo().join("deploy/overlays/aks-workload-identity")),
        None,
    );
    let docs = documents(&rendered);
    let sa = find(&docs, "ServiceAccount");
    assert!(sa["metadata"]["annotations"]["azure.workload.identity/client-id"].is_string());
    let deployment = find(&docs, "Deployment");
    assert_eq!(
        deployment["spec"]["template"]["metadata"]["labels"]["azure.workload.identity/use"],
        "true"
    );
    run_ok(
        "server-side dry run of the overlay",
        kubectl(env).args([
            "apply",
            "--server-side",
            "--force-conflicts",
            "--dry-run=server",
            "--field-manager=packaging-test",
            "-f",
            "-",
        ]),
        Some(&rendered),
    );
}

/// `helm install` and `helm uninstall` themselves (not only `helm template`) on the real API
/// server: Helm's own checks, the CRDs in crds/, the release bookkeeping.
#[test]
fn helm_install_and_uninstall_work() {
    let env = TestEnv::global();
    let ns = restricted_namespace(env, "pkg-install");
    let out = run_ok(
        "helm install",
        env.helm()
            .args(["install", "pkg-install"])
            .arg(chart())
            .args(["--namespace", &ns, "--wait=false", "--timeout=120s"]),
        None,
    );
    assert!(out.contains("STATUS: deployed"), "{out}");
    run_ok(
        "the installed Deployment",
        kubectl(env).args([
            "get",
            "deployment",
            "pkg-install-azureml-attach",
            "-n",
            &ns,
            "-o",
            "name",
        ]),
        None,
    );
    run_ok(
        "helm uninstall",
        env.helm().args([
            "uninstall",
            "pkg-install",
            "--namespace",
            &ns,
            "--timeout=120s",
        ]),
        None,
    );
}

#[test]
fn crd_copies_in_chart_and_base_match_crds_dir() {
    let out = Command::new("bash")
        .arg(repo().join("hack/sync-crds.sh"))
        .arg("--check")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the CRD copies are stale (run `make crds`):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The sample files in name order.
fn sample_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo().join("deploy/samples"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_sample_is_accepted_by_the_api_server() {
    let env = TestEnv::global();
    install_crds(env);
    let files = sample_files();
    assert!(
        files.len() >= 7,
        "expected the namespace, the workspace and five targets: {files:?}"
    );
    let mut kinds = BTreeSet::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let docs = documents(&text);
        kinds.extend(docs.iter().map(|d| kind(d).to_owned()));
        // Namespaces are created for real (the rest needs them); everything else is a
        // server-side dry run, so the operator of another test never sees these objects.
        let only_namespaces = docs.iter().all(|d| kind(d) == "Namespace");
        let mut cmd = kubectl(env);
        cmd.args(["apply", "--server-side", "--field-manager=packaging-test"]);
        if !only_namespaces {
            cmd.arg("--dry-run=server");
        }
        cmd.arg("-f").arg(file);
        run_ok(&format!("applying {}", file.display()), &mut cmd, None);
    }
    let target_kinds = azureml_attach::controller::kinds::target_kinds();
    for expected in ["Namespace", "Secret", "MLWorkspace"]
        .into_iter()
        .chain(target_kinds.iter().map(|k| k.kind))
    {
        assert!(
            kinds.contains(expected),
            "no {expected} in deploy/samples/ (have {kinds:?})"
        );
    }
}

/// The samples, unchanged, reach Ready against the emulator's default world with the operator
/// running as its ServiceAccount (deploy/base/rbac.yaml). Same code path as `make demo`.
#[test]
fn every_sample_reaches_ready_against_the_emulator() {
    let env = TestEnv::global();
    let dir = env.dir().join("samples-ready");
    std::fs::create_dir_all(&dir).unwrap();
    let bins = stack::Binaries {
        operator: PathBuf::from(env!("CARGO_BIN_EXE_azureml-attach")),
        emulator: emulator_binary(),
    };
    block_on(async {
        let emulator = stack::start_emulator(&bins, &dir).unwrap();
        stack::apply_crds_and_rbac(env, &repo()).unwrap();
        let mut operator = stack::start_operator(env, &bins, &emulator, &dir)
            .await
            .unwrap();
        stack::apply_samples(env, &repo()).unwrap();
        let expected = stack::expected_targets(&repo()).unwrap();
        assert_eq!(expected, 7, "one target of every kind");
        let states = stack::wait_all_ready(
            env,
            stack::SAMPLES_NAMESPACE,
            expected,
            std::time::Duration::from_secs(240),
            &mut operator,
            |states| eprintln!("{states:?}"),
        )
        .await
        .unwrap_or_else(|err| panic!("{err}"));
        let kinds: BTreeSet<&str> = states.iter().map(|s| s.kind.as_str()).collect();
        assert_eq!(
            kinds.len(),
            8,
            "the workspace and seven target kinds: {states:?}"
        );
        // The connection Secret the VM sample asks for is written, with the ids in it.
        let keys = run_ok(
            "reading the connection Secret",
            kubectl(env).args([
                "get",
                "secret",
                "gpu-dsvm-connection",
                "-n",
                stack::SAMPLES_NAMESPACE,
                "-o",
                "go-template={{range $k, $v := .data}}{{$k}} {{end}}",
            ]),
            None,
        );
        assert!(!keys.trim().is_empty(), "empty connection Secret");
        drop(operator);
        drop(emulator);
    });
}

/// `azureml-emulator` next to this test's binary, built first if needed (another package's
/// binary has no `CARGO_BIN_EXE_*`; cargo allows a nested build while tests run).
fn emulator_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let target_profile_dir = exe.parent().and_then(Path::parent).unwrap().to_path_buf();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    run_ok(
        "building azureml-emulator",
        Command::new(cargo)
            .args([
                "build",
                "--locked",
                "-p",
                "azureml-emulator",
                "--bin",
                "azureml-emulator",
            ])
            .current_dir(repo()),
        None,
    );
    let bin = target_profile_dir.join("azureml-emulator");
    assert!(bin.exists(), "{} was not built", bin.display());
    bin
}

/// Runs `make demo` the way a user does (through hack/demo.sh) with `DEMO_ONCE=1`.
/// Needs the operator, the emulator and the testenv binaries; it starts its own control plane.
#[test]
fn make_demo_once_shows_every_sample_ready() {
    let env = TestEnv::global();
    let out = Command::new("bash")
        .arg(repo().join("hack/demo.sh"))
        .current_dir(repo())
        .env("DEMO_ONCE", "1")
        .env("AZUREML_ATTACH_TESTENV_BIN", env.bin_dir())
        .env_remove("KUBECONFIG")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "make demo failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("every target is Ready"), "{stdout}");
    for name in ["gpu-dsvm", "spark-hdi", "batch-pool", "dbw", "adla"] {
        assert!(
            stdout
                .lines()
                .any(|l| l.contains(name) && l.contains("True")),
            "{name} is not shown Ready:\n{stdout}"
        );
    }
    assert!(stdout.contains("detached"), "{stdout}");
}

/// The rendered PrometheusRule's `spec` as a Prometheus rules file
/// (`azureml-attach-rules.yaml`), next to a copy of charts/azureml-attach/tests/alerts-test.yaml.
fn rules_dir(env: &TestEnv) -> PathBuf {
    let rule = monitoring::render_prometheus_rule(env.helm());
    let dir = env.dir().join("alerts");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("azureml-attach-rules.yaml"),
        serde_yaml::to_string(&rule["spec"]).unwrap(),
    )
    .unwrap();
    std::fs::copy(
        monitoring::chart().join("tests/alerts-test.yaml"),
        dir.join("alerts-test.yaml"),
    )
    .unwrap();
    dir
}

/// `promtool check rules` (with every lint, fatal) and `promtool test rules` on the rules the
/// chart renders: each alert fires on its synthetic series and stays quiet on the others.
#[test]
fn alerts_pass_promtool_check_rules_and_their_unit_tests() {
    let env = TestEnv::global();
    let promtool = testenv::promtool().unwrap_or_else(|e| panic!("{e}"));
    let dir = rules_dir(env);
    let out = run_ok(
        "promtool check rules",
        Command::new(&promtool)
            .args(["check", "rules", "--lint=all", "--lint-fatal"])
            .arg("azureml-attach-rules.yaml")
            .current_dir(&dir),
        None,
    );
    assert!(out.contains("SUCCESS: 7 rules found"), "{out}");
    run_ok(
        "promtool test rules charts/azureml-attach/tests/alerts-test.yaml",
        Command::new(&promtool)
            .args(["test", "rules", "alerts-test.yaml"])
            .current_dir(&dir),
        None,
    );
}

/// GitHub's anchor for a Markdown heading.
fn github_anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

#[test]
fn every_alert_has_a_severity_annotations_a_runbook_in_the_readme_and_tests_both_ways() {
    let env = TestEnv::global();
    let rule = monitoring::render_prometheus_rule(env.helm());
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let anchors: BTreeSet<String> = readme
        .lines()
        .filter_map(|l| l.strip_prefix('#'))
        .map(|h| github_anchor(h.trim_start_matches('#')))
        .collect();
    let tests: Value = serde_yaml::from_str(
        &std::fs::read_to_string(monitoring::chart().join("tests/alerts-test.yaml")).unwrap(),
    )
    .unwrap();
    let cases: Vec<&Value> = tests["tests"]
        .as_sequence()
        .unwrap()
        .iter()
        .flat_map(|t| t["alert_rule_test"].as_sequence().unwrap())
        .collect();
    let base = "https://github.com/azureml-attach/azureml-attach/blob/main/README.md#";
    for alert in monitoring::alerts(&rule) {
        let name = alert["alert"].as_str().unwrap();
        let severity = alert["labels"]["severity"].as_str().unwrap_or_default();
        assert!(
            matches!(severity, "warning" | "critical"),
            "{name}: severity {severity:?}"
        );
        for key in ["summary", "description"] {
            assert!(
                alert["annotations"][key]
                    .as_str()
                    .is_some_and(|s| !s.is_empty()),
                "{name}: no {key}"
            );
        }
        let runbook = alert["annotations"]["runbook_url"].as_str().unwrap();
        let anchor = runbook
            .strip_prefix(base)
            .unwrap_or_else(|| panic!("{name}: runbook_url {runbook} is not in the README"));
        assert_eq!(anchor, name.to_lowercase(), "{name}: runbook anchor");
        assert!(
            anchors.contains(anchor),
            "{name}: README.md has no heading for #{anchor}"
        );
        let of_this = |fires: bool| {
            cases.iter().any(|c| {
                c["alertname"] == name
                    && c["exp_alerts"]
                        .as_sequence()
                        .is_some_and(|a| a.is_empty() != fires)
            })
        };
        assert!(of_this(true), "{name}: no test case where it fires");
        assert!(of_this(false), "{name}: no test case where it stays quiet");
    }
}

/// The states of `label=~"a|b"` (or `!~`) in `expr`.
fn regex_states(expr: &str, op: &str) -> BTreeSet<String> {
    let start = format!("state{op}\"");
    let at = expr
        .find(&start)
        .unwrap_or_else(|| panic!("no state{op} in {expr}"));
    let rest = &expr[at + start.len()..];
    rest[..rest.find('"').unwrap()]
        .split('|')
        .map(str::to_owned)
        .collect()
}

/// The refusal alert covers the reasons the operator does not retry (`Reason::is_permanent`)
/// plus DuplicateAttachment (re-checked every resync, but only a person resolves it); the
/// not-Ready alert covers every other state except Attached and Detaching (its own alert).
#[test]
fn refusal_alert_states_are_the_reasons_that_need_a_person() {
    use azureml_attach::controller::conditions::Reason;
    let env = TestEnv::global();
    let rule = monitoring::render_prometheus_rule(env.helm());
    let alerts = monitoring::alerts(&rule);
    let expr = |name: &str| {
        alerts
            .iter()
            .find(|a| a["alert"] == name)
            .and_then(|a| a["expr"].as_str())
            .unwrap_or_else(|| panic!("no alert {name}"))
            .to_owned()
    };
    let refused = regex_states(&expr("AzureMLAttachTargetRefused"), "=~");
    let mut need_a_person: BTreeSet<String> = Reason::ALL
        .into_iter()
        .filter(|r| r.is_permanent())
        .map(|r| r.as_str().to_owned())
        .collect();
    need_a_person.insert(Reason::DuplicateAttachment.as_str().to_owned());
    assert_eq!(refused, need_a_person);
    let mut not_ready_excludes = refused.clone();
    not_ready_excludes.extend(["Attached".to_owned(), "Detaching".to_owned()]);
    assert_eq!(
        regex_states(&expr("AzureMLAttachTargetNotReady"), "!~"),
        not_ready_excludes
    );
    for state in &not_ready_excludes {
        assert!(
            Reason::parse(state).is_some(),
            "{state} is not a reason the operator reports"
        );
    }
}

/// `make image` (hack/build-image.sh, no daemon) and the Dockerfile's runtime stage describe the
/// same image: user, entrypoint, port, labels and where the binary is. tests/node checks the
/// built archive against the Dockerfile too.
#[test]
fn dockerfile_runtime_stage_equals_the_daemonless_recipe() {
    let (base, dockerfile) = image::dockerfile_runtime();
    let recipe = image::recipe();
    assert_eq!(
        dockerfile, recipe,
        "Dockerfile (left) vs hack/build-image.sh (right)"
    );
    assert_eq!(dockerfile.user, "65532:65532");
    assert_eq!(
        dockerfile.entrypoint,
        ["/usr/local/bin/azureml-attach", "run"]
    );
    // The recipe copies this machine's glibc and CA bundle: the base must be the glibc
    // ("cc") distroless image of the same Debian release, as its nonroot variant.
    assert_eq!(base, "gcr.io/distroless/cc-debian12:nonroot");
    let os_release = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    if !os_release.contains("VERSION_CODENAME=bookworm") {
        eprintln!("note: this machine is not Debian 12; `make image` copies its glibc instead");
    }
    // The chart's probes and Service use the port the image exposes.
    let values: Value =
        serde_yaml::from_str(&std::fs::read_to_string(chart().join("values.yaml")).unwrap())
            .unwrap();
    assert_eq!(
        format!(
            "{}/tcp",
            values["controller"]["adminPort"].as_u64().unwrap()
        ),
        dockerfile.exposed[0]
    );
}
