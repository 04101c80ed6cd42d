//! The chart on a real node, the way a platform team installs it: `helm install` runs the
//! operator image (built without a daemon by `make image`) as a pod on a real kubelet
//! (testenv::Node), under the `restricted` Pod Security level, with workload identity through a
//! kubelet-projected ServiceAccount token and the emulator's CA from the extra-CA ConfigMap.
//!
//! The emulator listens on the node's bridge address (testenv::GATEWAY), the only host address
//! pods can reach; the operator reaches the API server through the `kubernetes` Service as any
//! in-cluster client does. One scenario, in order, because every step needs the previous one.

#[allow(dead_code)]
#[path = "../common/image.rs"]
mod image;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use azureml_emulator::{EmulatorConfig, EmulatorHandle};
use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Event, Pod};
use kube::api::{DeleteParams, DynamicObject, ListParams, PostParams};
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};
use serde_json::{Value, json};
use testenv::{GATEWAY, Node, TestEnv, wait_for};

const NS: &str = "azureml-attach-system";
const RELEASE: &str = "azureml-attach";
const SAMPLES_NS: &str = "ml-team-a";
const IMAGE_REPOSITORY: &str = "localhost/azureml-attach/azureml-attach";
const IMAGE_TAG: &str = "node-test";
const SELECTOR: &str = "app.kubernetes.io/name=azureml-attach";
const FEDERATED_CLIENT: &str = azureml_emulator::config::DEFAULT_FEDERATED_CLIENT_ID;
const TENANT: &str = azureml_emulator::config::DEFAULT_TENANT;
const TARGET_KINDS: [&str; 5] = [
    "RemoteVmTarget",
    "HdInsightTarget",
    "BatchTarget",
    "DatabricksTarget",
    "DataLakeAnalyticsTarget",
];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn run_ok(what: &str, cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run: {e}"));
    assert!(
        out.status.success(),
        "{what} failed:\n{}{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The operator image archive: `AZUREML_ATTACH_IMAGE` (what `make test` built once), else built
/// now with hack/build-image.sh (a release build; cached by cargo).
fn image_archive() -> PathBuf {
    if let Some(path) = std::env::var_os("AZUREML_ATTACH_IMAGE").filter(|p| !p.is_empty()) {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().unwrap();
    // target/debug/deps/node-… → target
    let target = exe.ancestors().nth(3).unwrap().to_path_buf();
    let out = run_ok(
        "hack/build-image.sh",
        Command::new("bash")
            .arg(repo().join("hack/build-image.sh"))
            .env("CARGO_TARGET_DIR", &target)
            .env("IMAGE", format!("{IMAGE_REPOSITORY}:{IMAGE_TAG}"))
            .env("IMAGE_OUT", target.join("image/node-test.oci.tar"))
            .current_dir(repo()),
    );
    PathBuf::from(out.lines().last().unwrap().trim())
}

fn kubectl(env: &TestEnv) -> Command {
    env.kubectl()
}

fn helm(env: &TestEnv, args: &[&str], values: &Path) -> String {
    let mut cmd = env.helm();
    cmd.args(args)
        .arg(repo().join("charts/azureml-attach"))
        .args(["--namespace", NS, "-f"])
        .arg(values);
    run_ok(&format!("helm {}", args.join(" ")), &mut cmd)
}

fn rollout_status(env: &TestEnv) {
    run_ok(
        "kubectl rollout status",
        kubectl(env).args([
            "rollout",
            "status",
            &format!("deployment/{RELEASE}"),
            "-n",
            NS,
            "--timeout=180s",
        ]),
    );
}

/// The operator pods, Ready or not, that are not being deleted.
async fn operator_pods(client: &Client) -> Vec<Pod> {
    Api::<Pod>::namespaced(client.clone(), NS)
        .list(&ListParams::default().labels(SELECTOR))
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect()
}

fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn restarts(pod: &Pod) -> i32 {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .map_or(0, |cs| cs.iter().map(|c| c.restart_count).sum())
}

/// Every object of the `azureml` category in the samples' namespace: kind/name → Ready status.
fn ready_states(env: &TestEnv) -> BTreeMap<String, (String, String)> {
    let text = run_ok(
        "kubectl get azureml",
        kubectl(env).args(["get", "azureml", "-n", SAMPLES_NS, "-o", "json"]),
    );
    let list: Value = serde_json::from_str(&text).unwrap();
    list["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|item| {
            let ready = item["status"]["conditions"]
                .as_array()
                .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"));
            let field = |k: &str| {
                ready
                    .and_then(|c| c[k].as_str())
                    .unwrap_or_default()
                    .to_string()
            };
            (
                format!(
                    "{}/{}",
                    item["kind"].as_str().unwrap_or_default(),
                    item["metadata"]["name"].as_str().unwrap_or_default()
                ),
                (field("status"), field("reason")),
            )
        })
        .collect()
}

async fn wait_all_ready(env: &TestEnv, node: &Node, expected: usize, timeout: Duration) {
    let start = Instant::now();
    loop {
        let states = ready_states(env);
        if states.len() >= expected && states.values().all(|(s, _)| s == "True") {
            return;
        }
        if start.elapsed() > timeout {
            panic!(
                "not all Ready after {timeout:?}: {states:?}\noperator log:\n{}",
                operator_log(env, node).await
            );
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

async fn operator_log(env: &TestEnv, node: &Node) -> String {
    let client = env.client();
    let mut out = String::new();
    for pod in Api::<Pod>::namespaced(client, NS)
        .list(&ListParams::default().labels(SELECTOR))
        .await
        .map(|l| l.items)
        .unwrap_or_default()
    {
        let log = node.pod_logs(NS, &pod.name_any());
        let lines: Vec<&str> = log.lines().collect();
        out.push_str(&format!("--- {} ---\n", pod.name_any()));
        out.push_str(&lines[lines.len().saturating_sub(40)..].join("\n"));
        out.push('\n');
    }
    out
}

/// Counts Ready transitions of the samples' targets and Warning events in their namespace.
#[derive(Default)]
struct Flaps {
    transitions: Vec<String>,
    warnings: Vec<String>,
}

/// Watches every target kind and the events of the samples' namespace from now on.
fn watch_flaps(client: &Client) -> Arc<Mutex<Flaps>> {
    let flaps = Arc::new(Mutex::new(Flaps::default()));
    for kind in TARGET_KINDS {
        let resource = kube::api::ApiResource {
            group: "attach.azureml.io".into(),
            version: "v1alpha1".into(),
            api_version: "attach.azureml.io/v1alpha1".into(),
            kind: kind.into(),
            plural: format!("{}s", kind.to_lowercase()),
        };
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), SAMPLES_NS, &resource);
        let flaps = flaps.clone();
        tokio::spawn(async move {
            let mut last: BTreeMap<String, String> = BTreeMap::new();
            let mut stream = watcher(api, watcher::Config::default()).boxed();
            while let Some(event) = stream.next().await {
                let objects = match event {
                    Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) => vec![o],
                    _ => continue,
                };
                for o in objects {
                    let ready = o.data["status"]["conditions"]
                        .as_array()
                        .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"))
                        .and_then(|c| c["status"].as_str())
                        .unwrap_or_default()
                        .to_string();
                    let name = format!("{kind}/{}", o.name_any());
                    if let Some(before) = last.insert(name.clone(), ready.clone())
                        && before != ready
                    {
                        flaps
                            .lock()
                            .unwrap()
                            .transitions
                            .push(format!("{name}: {before} -> {ready}"));
                    }
                }
            }
        });
    }
    let events: Api<Event> = Api::namespaced(client.clone(), SAMPLES_NS);
    {
        let flaps = flaps.clone();
        tokio::spawn(async move {
            let mut stream = watcher(events, watcher::Config::default()).boxed();
            while let Some(event) = stream.next().await {
                // Only events after the initial list: the ones this test's steps cause.
                if let Ok(watcher::Event::Apply(e)) = event
                    && e.type_.as_deref() == Some("Warning")
                {
                    flaps.lock().unwrap().warnings.push(format!(
                        "{}: {}",
                        e.reason.unwrap_or_default(),
                        e.message.unwrap_or_default()
                    ));
                }
            }
        });
    }
    flaps
}

/// ARM writes (PUT, POST, PATCH, DELETE outside Entra ID and the control API) since `clear`.
async fn arm_writes(emu: &EmulatorHandle) -> Vec<String> {
    let log = emu.control().unwrap().requests(None).await.unwrap();
    log.entries
        .into_iter()
        .filter(|e| {
            e.method != "GET" && !e.path.contains("/oauth2/") && !e.path.starts_with("/_emulator")
        })
        .map(|e| format!("{} {}", e.method, e.path))
        .collect()
}

/// `(uid, pid)` of a Ready operator pod's main process (the one not named pause).
fn manager_process(node: &Node, pod: &Pod) -> i32 {
    let uid = pod.metadata.uid.clone().unwrap();
    node.pod_processes(&uid)
        .into_iter()
        .find(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains("azureml-attach"))
                .unwrap_or(false)
        })
        .unwrap_or_else(|| panic!("no azureml-attach process in pod {uid}"))
}

fn jwt_claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    // base64url without padding (RFC 7515); no base64 crate in this package's dependencies.
    let mut bits = 0u32;
    let mut count = 0;
    let mut bytes = Vec::new();
    for c in payload.bytes().filter(|c| *c != b'=') {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => panic!("not base64url: {c}"),
        };
        bits = (bits << 6) | u32::from(v);
        count += 6;
        if count >= 8 {
            count -= 8;
            bytes.push((bits >> count) as u8);
            bits &= (1 << count) - 1;
        }
    }
    serde_json::from_slice(&bytes).unwrap()
}

/// Imports the image, starts the emulator on the bridge address (with `config`'s world), puts
/// its CA in a ConfigMap of the restricted release namespace and runs `helm install` with the
/// user's values, then `kubectl rollout status`. Returns the emulator, the values file and when
/// `helm install` started.
async fn install(
    env: &'static TestEnv,
    node: &'static Node,
    config: EmulatorConfig,
) -> (EmulatorHandle, PathBuf, Instant) {
    let client = env.client();
    // The emulator on the bridge address, its CA in a ConfigMap of the release namespace.
    let emu = azureml_emulator::spawn(EmulatorConfig {
        listen: (GATEWAY, 0).into(),
        tls_names: vec![GATEWAY.to_string()],
        ..config
    })
    .await
    .unwrap();
    let url = emu.base_url().to_string();
    assert!(url.contains(&GATEWAY.to_string()), "{url}");
    env.apply_yaml(
        None,
        &format!(
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {NS}\n  labels:\n    \
             pod-security.kubernetes.io/enforce: restricted\n    \
             pod-security.kubernetes.io/enforce-version: latest\n"
        ),
    )
    .await
    .unwrap();
    let ca = ConfigMap {
        metadata: kube::api::ObjectMeta {
            name: Some("emulator-ca".into()),
            ..Default::default()
        },
        data: Some([("ca.crt".to_string(), emu.ca_pem().to_string())].into()),
        ..Default::default()
    };
    Api::<ConfigMap>::namespaced(client.clone(), NS)
        .create(&PostParams::default(), &ca)
        .await
        .unwrap();

    // The user's values: the chart's defaults plus the cloud, the identity and the image.
    let values = node.dir().join("values.yaml");
    std::fs::write(
        &values,
        format!(
            "image:\n  repository: {IMAGE_REPOSITORY}\n  tag: {IMAGE_TAG}\n  pullPolicy: Never\n\
             azure:\n  cloud: Custom\n  armEndpoint: {url}\n  authorityHost: {url}\n  \
             extraCA:\n    configMap:\n      name: emulator-ca\n\
             workloadIdentity:\n  enabled: true\n  clientId: {FEDERATED_CLIENT}\n  \
             tenantId: {TENANT}\n  projectToken: true\n"
        ),
    )
    .unwrap();
    let install_started = Instant::now();
    helm(env, &["install", RELEASE], &values);
    rollout_status(env);
    (emu, values, install_started)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_install_runs_the_image_on_a_kubelet_and_attaches_the_samples() {
    let began = Instant::now();
    let node = tokio::task::spawn_blocking(Node::global).await.unwrap();
    let env = TestEnv::global();
    let client = env.client();
    eprintln!(
        "figure: control plane {:.2?}, node start-up {:.2?}",
        env.startup_duration(),
        node.startup_duration()
    );

    // The image: built without a daemon, the Dockerfile's layout, imported into containerd.
    let archive = tokio::task::spawn_blocking(image_archive).await.unwrap();
    let (_, dockerfile) = image::dockerfile_runtime();
    let (built, files) = image::archive(&archive);
    assert_eq!(built.user, dockerfile.user);
    assert_eq!(built.entrypoint, dockerfile.entrypoint);
    assert_eq!(built.exposed, dockerfile.exposed);
    assert_eq!(built.labels, dockerfile.labels);
    assert_eq!(
        built.binary, dockerfile.binary,
        "the binary at the entrypoint"
    );
    for needed in [
        "/etc/ssl/certs/ca-certificates.crt",
        "/etc/passwd",
        "/tmp",
        "/home/nonroot",
    ] {
        assert!(
            files.iter().any(|(p, _, _)| p == needed),
            "{needed} missing from the image: {files:?}"
        );
    }
    let size = std::fs::metadata(&archive).unwrap().len();
    eprintln!(
        "figure: image archive {} bytes ({:.1} MiB), {} files",
        size,
        size as f64 / 1048576.0,
        files.len()
    );
    node.import_image(&archive).unwrap();

    let (emu, values, install_started) = install(env, node, EmulatorConfig::default()).await;
    let rollout = install_started.elapsed();

    // The pod: 65532, read-only root, restricted, probes passing.
    let pods = operator_pods(&client).await;
    assert_eq!(pods.len(), 1, "one replica by default");
    let pod = pods[0].clone();
    assert!(
        pod_ready(&pod),
        "rollout done means the readiness probe passed"
    );
    let pid = manager_process(node, &pod);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    let gid_line = status.lines().find(|l| l.starts_with("Gid:")).unwrap();
    assert!(
        uid_line.split_whitespace().skip(1).all(|u| u == "65532"),
        "{uid_line}"
    );
    assert!(
        gid_line.split_whitespace().skip(1).all(|g| g == "65532"),
        "{gid_line}"
    );
    let caps = status.lines().find(|l| l.starts_with("CapEff:")).unwrap();
    assert!(caps.ends_with("0000000000000000"), "{caps}");
    let mounts = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap();
    let root = mounts
        .lines()
        .find(|l| l.split(' ').nth(4) == Some("/"))
        .unwrap();
    assert!(
        root.split(' ')
            .nth(5)
            .unwrap()
            .split(',')
            .any(|o| o == "ro"),
        "root filesystem is not read-only: {root}"
    );
    // The restricted level is enforced by admission: a root pod is refused in this namespace.
    let violation = kubectl(env)
        .args([
            "run",
            "root-probe",
            "-n",
            NS,
            "--image=busybox",
            "--dry-run=server",
        ])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&violation.stderr).contains("violates PodSecurity"),
        "{}",
        String::from_utf8_lossy(&violation.stderr)
    );

    // The extra CA: the file the flag names holds the ConfigMap's PEM, inside the container.
    let args = pod.spec.as_ref().unwrap().containers[0]
        .args
        .clone()
        .unwrap_or_default();
    let ca_flag = args
        .iter()
        .find_map(|a| a.strip_prefix("--extra-ca-file="))
        .expect("--extra-ca-file")
        .to_string();
    let in_container =
        std::fs::read_to_string(format!("/proc/{pid}/root{ca_flag}")).expect("CA file in pod");
    assert_eq!(in_container, emu.ca_pem());

    // Workload identity: the kubelet projected a token for Entra ID's token exchange.
    let token_file = "/var/run/secrets/azure/tokens/azure-identity-token";
    let token = std::fs::read_to_string(format!("/proc/{pid}/root{token_file}")).unwrap();
    let claims = jwt_claims(&token);
    assert_eq!(claims["aud"], json!(["api://AzureADTokenExchange"]));
    assert_eq!(claims["iss"], testenv::SERVICE_ACCOUNT_ISSUER);
    assert_eq!(
        claims["sub"],
        "system:serviceaccount:azureml-attach-system:azureml-attach"
    );
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    let environ = String::from_utf8_lossy(&environ);
    assert!(environ.contains(&format!("AZURE_FEDERATED_TOKEN_FILE={token_file}")));

    // The samples, unchanged, plus two workspaces that use the pod's federated token.
    let samples_applied = Instant::now();
    run_ok(
        "kubectl apply samples",
        kubectl(env)
            .args(["apply", "--server-side", "-f"])
            .arg(repo().join("deploy/samples")),
    );
    env.apply_yaml(
        Some(SAMPLES_NS),
        &format!(
            "apiVersion: attach.azureml.io/v1alpha1\nkind: MLWorkspace\nmetadata:\n  name: wi-default\n\
             spec:\n  subscriptionId: {sub}\n  resourceGroup: ml-rg\n  workspaceName: prod-workspace\n  \
             credential:\n    type: Default\n---\n\
             apiVersion: attach.azureml.io/v1alpha1\nkind: MLWorkspace\nmetadata:\n  name: wi-federated\n\
             spec:\n  subscriptionId: {sub}\n  resourceGroup: ml-rg\n  workspaceName: prod-workspace\n  \
             credential:\n    type: WorkloadIdentity\n    workloadIdentity:\n      \
             clientId: {FEDERATED_CLIENT}\n      tenantId: {TENANT}\n",
            sub = azureml_emulator::config::DEFAULT_SUBSCRIPTION
        ),
    )
    .await
    .unwrap();
    // 1 sample workspace + 5 sample targets + 2 workload-identity workspaces.
    wait_all_ready(env, node, 8, Duration::from_secs(240)).await;
    let samples_ready = samples_applied.elapsed();
    eprintln!(
        "figure: helm install -> rollout done {rollout:.2?}; samples applied -> all Ready \
         {samples_ready:.2?}; helm install -> all Ready {:.2?}",
        install_started.elapsed()
    );
    // The federated tokens were exchanged (the emulator accepted the kubelet's token).
    let log = emu.control().unwrap().requests(None).await.unwrap();
    assert!(
        log.entries
            .iter()
            .any(|e| e.path.contains("/oauth2/") && e.method == "POST"),
        "no token requests"
    );
    let uid = pod.metadata.uid.clone().unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (usage, working_set) = node.pod_memory(&uid).unwrap();
    eprintln!(
        "figure: operator pod memory with the samples: usage {:.1} MiB, working set {:.1} MiB",
        usage as f64 / 1048576.0,
        working_set as f64 / 1048576.0
    );

    // From here on nothing may flap and nothing may be written to ARM.
    let flaps = watch_flaps(&client);
    tokio::time::sleep(Duration::from_secs(2)).await;
    emu.control().unwrap().clear_requests().await.unwrap();

    // helm upgrade with a changed value rolls the pod.
    std::fs::write(
        &values,
        std::fs::read_to_string(&values).unwrap() + "podAnnotations:\n  upgraded: \"1\"\n",
    )
    .unwrap();
    let before = pod.name_any();
    helm(env, &["upgrade", RELEASE], &values);
    rollout_status(env);
    let pods = operator_pods(&client).await;
    assert_eq!(pods.len(), 1);
    assert_ne!(pods[0].name_any(), before, "the pod was replaced");
    wait_all_ready(env, node, 8, Duration::from_secs(60)).await;
    tokio::time::sleep(Duration::from_secs(5)).await;

    // Two replicas with leader election; deleting the leader hands over.
    std::fs::write(
        &values,
        std::fs::read_to_string(&values).unwrap() + "replicaCount: 2\n",
    )
    .unwrap();
    helm(env, &["upgrade", RELEASE], &values);
    rollout_status(env);
    let leases: Api<Lease> = Api::namespaced(client.clone(), NS);
    let holder = |lease: Option<Lease>| {
        lease
            .and_then(|l| l.spec)
            .and_then(|s| s.holder_identity)
            .unwrap_or_default()
    };
    let leader = wait_for("a leader", Duration::from_secs(60), async || {
        let h = holder(leases.get_opt(RELEASE).await.ok()?);
        let pods = operator_pods(&client).await;
        (pods.len() == 2 && pods.iter().any(|p| p.name_any() == h)).then_some(h)
    })
    .await
    .unwrap();
    let handover = Instant::now();
    Api::<Pod>::namespaced(client.clone(), NS)
        .delete(&leader, &DeleteParams::default())
        .await
        .unwrap();
    let new_leader = wait_for("a new leader", Duration::from_secs(90), async || {
        let h = holder(leases.get_opt(RELEASE).await.ok()?);
        (!h.is_empty() && h != leader).then_some(h)
    })
    .await
    .unwrap();
    let handover = handover.elapsed();
    rollout_status(env);
    wait_all_ready(env, node, 8, Duration::from_secs(60)).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    eprintln!("figure: leader {leader} deleted -> {new_leader} leads after {handover:.2?}");
    {
        let flaps = flaps.lock().unwrap();
        assert!(
            flaps.transitions.is_empty(),
            "Ready transitions: {:?}",
            flaps.transitions
        );
        assert!(
            flaps.warnings.is_empty(),
            "Warning events: {:?}",
            flaps.warnings
        );
    }
    let writes = arm_writes(&emu).await;
    assert!(writes.is_empty(), "ARM writes: {writes:?}");
    for pod in operator_pods(&client).await {
        assert_eq!(restarts(&pod), 0, "{} restarted", pod.name_any());
    }

    // kubectl delete detaches: the compute disappears from the workspace.
    run_ok(
        "kubectl delete the VM sample",
        kubectl(env).args([
            "delete",
            "remotevmtarget",
            "--all",
            "-n",
            SAMPLES_NS,
            "--wait=true",
            "--timeout=120s",
        ]),
    );
    let deletes = arm_writes(&emu).await;
    assert!(
        deletes.iter().any(|w| w.starts_with("DELETE ")),
        "no DELETE reached ARM: {deletes:?}"
    );

    // helm uninstall leaves the CRDs and the attachments.
    let computes = async || {
        let mut names: Vec<String> = emu
            .control()
            .unwrap()
            .computes()
            .await
            .unwrap()
            .into_iter()
            .map(|c| format!("{}/{} {}", c.workspace, c.name, c.provisioning_state))
            .collect();
        names.sort();
        names
    };
    let computes_before = computes().await;
    run_ok(
        "helm uninstall",
        env.helm().args(["uninstall", RELEASE, "-n", NS, "--wait"]),
    );
    wait_for(
        "the operator pods to go",
        Duration::from_secs(60),
        async || operator_pods(&client).await.is_empty().then_some(()),
    )
    .await
    .unwrap();
    let crds = run_ok(
        "kubectl get crd",
        kubectl(env).args(["get", "crd", "-o", "name"]),
    );
    assert_eq!(crds.matches("attach.azureml.io").count(), 6, "{crds}");
    let states = ready_states(env);
    assert_eq!(states.len(), 7, "workspaces and targets stay: {states:?}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        computes_before,
        computes().await,
        "uninstalling the operator detached nothing"
    );
    assert!(!computes_before.is_empty());
    eprintln!("figure: the whole scenario {:.2?}", began.elapsed());
}

/// `bench/node/RESULTS.md`: the operator pod's memory (its cgroup) with 200 BatchTargets in one
/// workspace. Not part of `make test` (run it alone: `cargo test --test node -- --ignored`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark; run alone with --ignored"]
async fn operator_pod_memory_with_200_targets() {
    const TARGETS: usize = 200;
    let node = tokio::task::spawn_blocking(Node::global).await.unwrap();
    let env = TestEnv::global();
    let client = env.client();
    let archive = tokio::task::spawn_blocking(image_archive).await.unwrap();
    node.import_image(&archive).unwrap();
    let account = |i: usize| {
        format!(
            "/subscriptions/{}/resourceGroups/ml-rg/providers/Microsoft.Batch/batchAccounts/bench{i}",
            azureml_emulator::config::DEFAULT_SUBSCRIPTION
        )
    };
    let mut config = EmulatorConfig::default();
    config
        .resources
        .extend((0..TARGETS).map(|i| azureml_emulator::WorldResource {
            id: account(i),
            ..azureml_emulator::WorldResource::default()
        }));
    let (_emu, _values, install_started) = install(env, node, config).await;
    for file in ["00-namespace.yaml", "10-mlworkspace.yaml"] {
        run_ok(
            file,
            kubectl(env)
                .args(["apply", "--server-side", "-f"])
                .arg(repo().join("deploy/samples").join(file)),
        );
    }
    let targets: String = (0..TARGETS)
        .map(|i| {
            format!(
                "apiVersion: attach.azureml.io/v1alpha1\nkind: BatchTarget\nmetadata:\n  name: bench{i}\n\
                 spec:\n  workspaceRef:\n    name: prod-workspace\n  resourceId: {}\n---\n",
                account(i)
            )
        })
        .collect();
    let applied = Instant::now();
    env.apply_yaml(Some(SAMPLES_NS), &targets).await.unwrap();
    wait_all_ready(env, node, TARGETS + 1, Duration::from_secs(600)).await;
    let ready = applied.elapsed();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let pod = operator_pods(&client).await.remove(0);
    let (usage, working_set) = node.pod_memory(&pod.metadata.uid.unwrap()).unwrap();
    eprintln!(
        "figure: {TARGETS} BatchTargets applied -> all Ready {ready:.2?} (helm install {:.2?} \
         before); operator pod memory: usage {:.1} MiB, working set {:.1} MiB",
        applied.duration_since(install_started),
        usage as f64 / 1048576.0,
        working_set as f64 / 1048576.0
    );
}
