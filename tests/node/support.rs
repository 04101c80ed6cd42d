//! The steps of tests/node: building and importing the image, installing the chart, waiting,
//! and watching for flaps.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use azureml_emulator::{EmulatorConfig, EmulatorHandle};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Event, Pod};
use kube::api::{DynamicObject, ListParams, PostParams};
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};
use serde_json::Value;
use testenv::{GATEWAY, Node, TestEnv};

pub const NS: &str = "azureml-attach-system";
pub const RELEASE: &str = "azureml-attach";
pub const SAMPLES_NS: &str = "ml-team-a";
pub const IMAGE_REPOSITORY: &str = "localhost/azureml-attach/azureml-attach";
pub const IMAGE_TAG: &str = "node-test";
pub const SELECTOR: &str = "app.kubernetes.io/name=azureml-attach";
pub const FEDERATED_CLIENT: &str = azureml_emulator::config::DEFAULT_FEDERATED_CLIENT_ID;
pub const TENANT: &str = azureml_emulator::config::DEFAULT_TENANT;

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn run_ok(what: &str, cmd: &mut Command) -> String {
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
pub fn image_archive() -> PathBuf {
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

pub fn kubectl(env: &TestEnv) -> Command {
    env.kubectl()
}

pub fn helm(env: &TestEnv, args: &[&str], values: &Path) -> String {
    let mut cmd = env.helm();
    cmd.args(args)
        .arg(repo().join("charts/azureml-attach"))
        .args(["--namespace", NS, "-f"])
        .arg(values);
    run_ok(&format!("helm {}", args.join(" ")), &mut cmd)
}

pub fn rollout_status(env: &TestEnv) {
    let out = kubectl(env)
        .args([
            "rollout",
            "status",
            &format!("deployment/{RELEASE}"),
            "-n",
            NS,
            "--timeout=180s",
        ])
        .output()
        .expect("kubectl rollout status");
    if !out.status.success() {
        panic!(
            "kubectl rollout status failed:\n{}{}\n{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout),
            rollout_diagnostics(env)
        );
    }
}

/// What a stuck rollout shows: the pods and their conditions, the namespace's events, and the
/// operator containers' logs (current and previous).
fn rollout_diagnostics(env: &TestEnv) -> String {
    let mut out = String::new();
    let mut show = |title: &str, args: &[&str]| {
        let result = kubectl(env).args(args).output();
        let text = match result {
            Ok(o) => format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
            Err(e) => format!("cannot run kubectl: {e}"),
        };
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(60)..].join("\n");
        out.push_str(&format!("--- {title}\n{tail}\n"));
    };
    show("pods", &["get", "pods", "-n", NS, "-o", "wide"]);
    show(
        "pod conditions",
        &["describe", "pods", "-n", NS, "-l", SELECTOR],
    );
    show(
        "events",
        &["get", "events", "-n", NS, "--sort-by=.lastTimestamp"],
    );
    show(
        "operator logs",
        &[
            "logs",
            "-n",
            NS,
            "-l",
            SELECTOR,
            "--tail=60",
            "--all-containers",
        ],
    );
    show(
        "previous operator logs",
        &["logs", "-n", NS, "-l", SELECTOR, "--tail=30", "--previous"],
    );
    out
}

/// The operator pods, Ready or not, that are not being deleted.
pub async fn operator_pods(client: &Client) -> Vec<Pod> {
    Api::<Pod>::namespaced(client.clone(), NS)
        .list(&ListParams::default().labels(SELECTOR))
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect()
}

pub fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

pub fn restarts(pod: &Pod) -> i32 {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .map_or(0, |cs| cs.iter().map(|c| c.restart_count).sum())
}

/// Every object of the `azureml` category in the samples' namespace: kind/name → Ready status.
pub fn ready_states(env: &TestEnv) -> BTreeMap<String, (String, String)> {
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

pub async fn wait_all_ready(env: &TestEnv, node: &Node, expected: usize, timeout: Duration) {
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

pub async fn operator_log(env: &TestEnv, node: &Node) -> String {
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
pub struct Flaps {
    pub transitions: Vec<String>,
    pub warnings: Vec<String>,
}

/// Watches every target kind and the events of the samples' namespace from now on.
pub fn watch_flaps(client: &Client) -> Arc<Mutex<Flaps>> {
    let flaps = Arc::new(Mutex::new(Flaps::default()));
    for names in azureml_attach::controller::kinds::target_kinds() {
        let resource = kube::api::ApiResource {
            group: "attach.azureml.io".into(),
            version: "v1alpha1".into(),
            api_version: "attach.azureml.io/v1alpha1".into(),
            kind: names.kind.into(),
            plural: names.plural,
        };
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), SAMPLES_NS, &resource);
        let kind = names.kind;
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
pub async fn arm_writes(emu: &EmulatorHandle) -> Vec<String> {
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
pub fn manager_process(node: &Node, pod: &Pod) -> i32 {
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

pub fn jwt_claims(token: &str) -> Value {
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
pub async fn install(
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
