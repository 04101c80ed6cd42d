//! The operator's RBAC compared with the calls it really makes.
//!
//! The operator runs as a process under its ServiceAccount against testenv's kube-apiserver
//! (which writes an audit log) and the Azure ML emulator; it attaches every sample in
//! deploy/samples/, holds a leader-election Lease, re-attaches the VM target and renames its
//! connection Secret, and detaches everything again. The audit log
//! then says which (group, resource, subresource, verb, scope) it used, and the test asserts
//! that every call was allowed, that every call is granted by the chart's rules, and that every
//! verb the chart grants was used — or is in [`NOT_EXERCISED`] with the reason.
//!
//! Twice, one after the other (a cluster-wide operator would reconcile the other run's objects):
//! with the cluster-wide RBAC (deploy/base, equal to the chart's default), and with the chart's
//! namespaced RBAC (`controller.watchNamespaces`), where a second namespace holds the same
//! samples and must never be touched.

mod audit;
mod cluster;

use std::{
    path::Path,
    time::{Duration, Instant},
};

use azureml_emulator::{ControlClient, EmulatorConfig};
use serde_yaml::Value;
use testenv::TestEnv;

use audit::{Grant, Request};
use cluster::{Operator, kind};

/// deploy/base's ServiceAccount, which the chart's default values also give.
const OPERATOR_NS: &str = "azureml-attach-system";
const OPERATOR_SA: &str = "azureml-attach";
/// The namespace of deploy/samples/.
const SAMPLES_NS: &str = "ml-team-a";

/// Granted verbs the scenario does not use, each with why (group, resource, verb, reason).
/// Empty: attaching, re-attaching (and so repeating an event: the Recorder's patch), renaming
/// the connection Secret and detaching uses every verb the chart grants. A verb listed here
/// that shows up in the audit log is reported, so the list cannot go stale.
const NOT_EXERCISED: &[(&str, &str, &str, &str)] = &[];

/// Non-resource URLs the operator calls, granted to every authenticated user by Kubernetes'
/// own default roles (so not in our RBAC), and why it calls them.
const DEFAULT_GRANTED: &[(&str, &str)] = &[(
    "/version",
    "the server version, logged at start (the default role system:discovery allows it)",
)];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_calls_match_its_rbac_cluster_wide_and_namespaced() {
    let env = TestEnv::global();
    let started = Instant::now();
    cluster::install_crds(env);
    cluster_wide(env).await;
    let first = started.elapsed();
    namespaced(env).await;
    eprintln!(
        "rbac_audit: cluster-wide {first:.1?}, namespaced {:.1?} (control plane start {:.1?})",
        started.elapsed() - first,
        env.startup_duration()
    );
}

/// deploy/base's RBAC, deploy/samples/ as they are, leader election on.
async fn cluster_wide(env: &TestEnv) {
    let repo = cluster::repo();
    for file in ["deploy/base/namespace.yaml", "deploy/base/rbac.yaml"] {
        let text = std::fs::read_to_string(repo.join(file)).unwrap();
        cluster::apply(env, file, &text);
    }
    let emulator = azureml_emulator::spawn(EmulatorConfig::fast())
        .await
        .expect("emulator");
    let control = emulator.control().expect("emulator control client");
    let mut operator = Operator::start(
        env,
        &emulator,
        (OPERATOR_NS, OPERATOR_SA),
        &args(&["--leader-elect", "--lease-namespace", OPERATOR_NS]),
        &env.dir().join("operator-cluster-wide.log"),
    )
    .await;
    cluster::run(
        "kubectl apply -f deploy/samples/",
        cluster::kubectl(env)
            .args(["apply", "--server-side", "-f"])
            .arg(repo.join("deploy/samples")),
        None,
    );
    let expected = azureml_objects(&cluster::samples(None));
    cluster::wait_all_ready(
        env,
        SAMPLES_NS,
        expected,
        Duration::from_secs(120),
        &mut operator,
    )
    .await;
    assert_eq!(
        computes(&control).await,
        expected - 1,
        "one compute per target"
    );
    let holder = cluster::run(
        "reading the Lease",
        cluster::kubectl(env).args([
            "get",
            "lease",
            "azureml-attach",
            "-n",
            OPERATOR_NS,
            "-o",
            "jsonpath={.spec.holderIdentity}",
        ]),
        None,
    );
    assert!(holder.starts_with("rbac-audit-"), "Lease holder {holder:?}");
    change_the_vm_target(env, SAMPLES_NS, &operator).await;
    cluster::delete_samples(env, SAMPLES_NS, &operator);
    wait_detached(&control, &operator).await;
    let status = operator.stop();
    assert!(status.success(), "{status}\n{}", operator.log_tail());

    let requests = settled_requests(env, &service_account_user(OPERATOR_NS, OPERATOR_SA)).await;
    let chart = cluster::helm_template(env, OPERATOR_NS, &[]);
    let report = audit::table(&requests, false);
    eprintln!("cluster-wide RBAC, the operator's calls:\n{report}");
    check_against_rbac("cluster-wide", &requests, &chart, &report);
}

/// The chart's RBAC with controller.watchNamespaces=[watched]: Roles only. The samples go into
/// `watched` and, as decoys, into `other`, which the operator must never touch.
async fn namespaced(env: &TestEnv) {
    let watched = env.create_namespace("rbac-watched").await;
    let other = env.create_namespace("rbac-other").await;
    let home = env.create_namespace("rbac-operator").await;
    let chart = cluster::helm_template(
        env,
        &home,
        &[&format!("controller.watchNamespaces={{{watched}}}")],
    );
    let rbac: Vec<Value> = chart
        .iter()
        .filter(|d| {
            matches!(
                kind(d),
                "ServiceAccount" | "Role" | "RoleBinding" | "ClusterRole" | "ClusterRoleBinding"
            )
        })
        .cloned()
        .collect();
    let cluster_scoped: Vec<&str> = rbac
        .iter()
        .map(kind)
        .filter(|k| k.starts_with("Cluster"))
        .collect();
    assert!(
        cluster_scoped.is_empty(),
        "namespaced chart RBAC has {cluster_scoped:?}"
    );
    cluster::apply(env, "the chart's namespaced RBAC", &cluster::to_yaml(&rbac));
    // The flag exactly as the chart passes it to the pod.
    let watch_flag = chart
        .iter()
        .find(|d| kind(d) == "Deployment")
        .and_then(|d| d["spec"]["template"]["spec"]["containers"][0]["args"].as_sequence())
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .find(|a| a.starts_with("--watch-namespaces="))
        .expect("the chart passes --watch-namespaces")
        .to_owned();
    assert_eq!(watch_flag, format!("--watch-namespaces={watched}"));
    let samples = cluster::samples(None);
    for ns in [&watched, &other] {
        let docs = cluster::samples(Some(ns));
        cluster::apply(
            env,
            &format!("the samples in {ns}"),
            &cluster::to_yaml(&docs),
        );
    }

    let emulator = azureml_emulator::spawn(EmulatorConfig::fast())
        .await
        .expect("emulator");
    let control = emulator.control().expect("emulator control client");
    let mut operator = Operator::start(
        env,
        &emulator,
        (&home, OPERATOR_SA),
        &args(&[&watch_flag, "--leader-elect", "--lease-namespace", &home]),
        &env.dir().join("operator-namespaced.log"),
    )
    .await;
    let expected = azureml_objects(&samples);
    cluster::wait_all_ready(
        env,
        &watched,
        expected,
        Duration::from_secs(120),
        &mut operator,
    )
    .await;
    assert_eq!(
        computes(&control).await,
        expected - 1,
        "only the watched targets attached"
    );
    change_the_vm_target(env, &watched, &operator).await;
    assert_untouched(env, &other, expected);
    cluster::delete_samples(env, &watched, &operator);
    wait_detached(&control, &operator).await;
    let status = operator.stop();
    assert!(status.success(), "{status}\n{}", operator.log_tail());
    assert_untouched(env, &other, expected);

    let requests = settled_requests(env, &service_account_user(&home, OPERATOR_SA)).await;
    let report = audit::table(&requests, true);
    eprintln!("namespaced RBAC (watching {watched}), the operator's calls:\n{report}");
    check_against_rbac("namespaced", &requests, &chart, &report);
    // Nowhere but the watched namespace, except its Lease at home and the default-granted URLs.
    let outside: Vec<&Request> = requests
        .iter()
        .filter(|r| match &r.call.namespace {
            Some(ns) if *ns == watched => false,
            Some(ns) if *ns == home => r.call.resource != "leases",
            Some(_) => true,
            None => r.call.group != "-",
        })
        .collect();
    assert!(
        outside.is_empty(),
        "requests outside {watched} (and the Lease in {home}):\n{}\n{report}",
        uris(&outside)
    );
}

/// The sample VM target's connection Secret through its other writes, as a user causes them:
/// a changed `sshPort` re-attaches and rewrites the Secret the target controls (patch), then a
/// renamed `writeConnectionSecretToRef` writes the new Secret (create) and removes the old one
/// (delete).
async fn change_the_vm_target(env: &TestEnv, namespace: &str, operator: &Operator) {
    let status = || {
        let text = cluster::run(
            "reading gpu-dsvm",
            cluster::kubectl(env).args([
                "get",
                "remotevmtarget",
                "gpu-dsvm",
                "-n",
                namespace,
                "-o",
                "json",
            ]),
            None,
        );
        let obj: serde_json::Value = serde_json::from_str(&text).unwrap();
        let ready = cluster::ready_of(&obj).1 == "\"True\" \"Attached\"";
        (ready, obj["status"].clone())
    };
    let patch = |what: &str, spec: &str| {
        cluster::run(
            what,
            cluster::kubectl(env).args([
                "patch",
                "remotevmtarget",
                "gpu-dsvm",
                "-n",
                namespace,
                "--type=merge",
                "-p",
                spec,
            ]),
            None,
        );
    };
    let secret_exists = |name: &str| {
        cluster::kubectl(env)
            .args(["get", "secret", name, "-n", namespace, "-o", "name"])
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
            .status
            .success()
    };
    let before = status().1["attachedConfigHash"].clone();
    patch("changing sshPort", r#"{"spec":{"sshPort":2222}}"#);
    let reattached = testenv::wait_for(
        "gpu-dsvm re-attached",
        Duration::from_secs(60),
        async || {
            let (ready, s) = status();
            (ready
                && s["attachedConfigHash"] != before
                && s["connectionSecretHash"] == s["attachedConfigHash"])
                .then_some(())
        },
    )
    .await;
    if let Err(err) = reattached {
        panic!("{err}: {}\n{}", status().1, operator.log_tail());
    }
    patch(
        "renaming writeConnectionSecretToRef",
        r#"{"spec":{"writeConnectionSecretToRef":{"name":"gpu-dsvm-connection-2"}}}"#,
    );
    let renamed = testenv::wait_for(
        "the renamed connection Secret",
        Duration::from_secs(60),
        async || {
            (status().1["connectionSecretName"] == "gpu-dsvm-connection-2"
                && secret_exists("gpu-dsvm-connection-2")
                && !secret_exists("gpu-dsvm-connection"))
            .then_some(())
        },
    )
    .await;
    if let Err(err) = renamed {
        panic!("{err}: {}\n{}", status().1, operator.log_tail());
    }
}

fn args(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

fn service_account_user(namespace: &str, name: &str) -> String {
    format!("system:serviceaccount:{namespace}:{name}")
}

/// How many objects of the `azureml` category (the MLWorkspace and the targets) `docs` holds.
fn azureml_objects(docs: &[Value]) -> usize {
    docs.iter()
        .filter(|d| kind(d) == "MLWorkspace" || kind(d).ends_with("Target"))
        .count()
}

async fn computes(control: &ControlClient) -> usize {
    control
        .state()
        .await
        .expect("emulator state")
        .computes
        .len()
}

/// Every compute is gone from the workspace (detached; the finalizers went after the DELETEs).
async fn wait_detached(control: &ControlClient, operator: &Operator) {
    let detached = testenv::wait_for(
        "every compute detached",
        Duration::from_secs(30),
        async || (computes(control).await == 0).then_some(()),
    )
    .await;
    if let Err(err) = detached {
        panic!("{err}\n{}", operator.log_tail());
    }
}

/// The decoys in `namespace`: still all there, without status or finalizer, and no connection
/// Secret was written for them.
fn assert_untouched(env: &TestEnv, namespace: &str, expected: usize) {
    let objects = cluster::azureml_objects(env, namespace);
    assert_eq!(objects.len(), expected, "decoys in {namespace}");
    for obj in &objects {
        let status_empty = obj["status"].as_object().is_none_or(|s| s.is_empty());
        let no_finalizers = obj["metadata"]["finalizers"]
            .as_array()
            .is_none_or(Vec::is_empty);
        assert!(
            status_empty && no_finalizers,
            "{:?} in unwatched {namespace} was touched: status {} finalizers {}",
            cluster::ready_of(obj).0,
            obj["status"],
            obj["metadata"]["finalizers"]
        );
    }
    let secrets = cluster::run(
        "listing Secrets",
        cluster::kubectl(env).args(["get", "secrets", "-n", namespace, "-o", "name"]),
        None,
    );
    assert!(
        !secrets.contains("gpu-dsvm-connection"),
        "a connection Secret in unwatched {namespace}: {secrets}"
    );
}

/// The requests of `username`, read once the audit log stopped growing (entries are written as
/// requests finish, so the last ones — the Lease release, watches ending — may trail the exit).
async fn settled_requests(env: &TestEnv, username: &str) -> Vec<Request> {
    let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    let log = env.audit_log();
    let mut last = size(log);
    let started = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = size(log);
        if now == last || started.elapsed() > Duration::from_secs(10) {
            break;
        }
        last = now;
    }
    let requests = audit::requests_of(log, username);
    assert!(
        !requests.is_empty(),
        "no request by {username} in {}",
        log.display()
    );
    requests
}

fn uris(requests: &[&Request]) -> String {
    requests
        .iter()
        .map(|r| {
            format!(
                "  {} {} -> {:?} {} ({})",
                r.call.verb, r.uri, r.code, r.decision, r.reason
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// (a) nothing was refused, (b) every call is granted by the chart's rules (or is a
/// default-granted URL), (c) every granted verb was used or is in [`NOT_EXERCISED`].
fn check_against_rbac(scenario: &str, requests: &[Request], chart: &[Value], report: &str) {
    let refused: Vec<&Request> = requests
        .iter()
        .filter(|r| r.code == Some(403) || r.decision == "forbid")
        .collect();
    assert!(
        refused.is_empty(),
        "{scenario}: the operator was refused:\n{}\n{report}",
        uris(&refused)
    );

    let grants = audit::grants(chart);
    let ungranted: Vec<&Request> = requests
        .iter()
        .filter(|r| {
            if r.call.group == "-" {
                !DEFAULT_GRANTED
                    .iter()
                    .any(|(path, _)| *path == r.call.resource)
            } else {
                !grants.iter().any(|g| g.allows(&r.call))
            }
        })
        .collect();
    assert!(
        ungranted.is_empty(),
        "{scenario}: calls the chart's rules do not grant (allowed by something else):\n{}\n{report}",
        uris(&ungranted)
    );

    let exempt = |g: &Grant| {
        NOT_EXERCISED.iter().any(|(group, resource, verb, _)| {
            g.group == *group && g.resource == *resource && g.verb == *verb
        })
    };
    let used = |g: &Grant| requests.iter().any(|r| g.allows(&r.call));
    let mut unused: Vec<String> = grants
        .iter()
        .filter(|g| !used(g) && !exempt(g))
        .map(|g| {
            let resource = if g.subresource.is_empty() {
                g.resource.clone()
            } else {
                format!("{}/{}", g.resource, g.subresource)
            };
            format!(
                "  {} {:?}: {:?} {resource} {}",
                g.kind, g.namespace, g.group, g.verb
            )
        })
        .collect();
    unused.dedup();
    assert!(
        unused.is_empty(),
        "{scenario}: granted but never used (narrow the rule, exercise it, or add it to \
         NOT_EXERCISED with the reason):\n{}\n{report}",
        unused.join("\n")
    );
    for (group, resource, verb, _) in NOT_EXERCISED {
        if grants
            .iter()
            .any(|g| g.group == *group && g.resource == *resource && g.verb == *verb && used(g))
        {
            eprintln!(
                "{scenario}: {group:?} {resource} {verb} is in NOT_EXERCISED but was used: \
                 remove it from the list"
            );
        }
    }
}
