//! `azureml-attach import` against the emulator: a workspace with an attachment of every kind
//! (bodies as the kinds build them) and one AmlCompute. The printed manifests, their stubs
//! filled in, pass `kubectl apply --dry-run=server`, and applied, every target adopts its
//! compute (rule 3): Ready=True Attached with no PUT and no DELETE. No secret is ever printed.

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use azureml_attach::api::{
    BatchTarget, DataLakeAnalyticsTarget, DatabricksTarget, HdInsightTarget, RemoteVmTarget,
};
use azureml_attach::controller::target::{AttachTarget, SecretData, attach_body};
use azureml_attach::import::PLACEHOLDER_PREFIX;
use azureml_emulator::config::DEFAULT_VM_PRIVATE_KEY;
use k8s_openapi::ByteString;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::harness::*;

const T: Duration = Duration::from_secs(60);
/// The MLWorkspace the import prints (World already has one called prod-workspace).
const WS_OBJECT: &str = "imported-ws";
const VM2_ADDRESS: &str = "20.61.0.11";
const HDI_USER: &str = "sshuser";

fn target<K: DeserializeOwned>(kind: &str, name: &str, spec: Value) -> K {
    serde_json::from_value(json!({
        "apiVersion": "attach.azureml.io/v1alpha1",
        "kind": kind,
        "metadata": {"name": name},
        "spec": spec,
    }))
    .expect("target")
}

fn data(pairs: &[(&str, &str)]) -> SecretData {
    SecretData(
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
            .collect(),
    )
}

/// Attaches `obj` in the emulator behind the operator's back, with the body its kind builds.
async fn seed<K: AttachTarget>(w: &World, obj: K, secret: Option<SecretData>) {
    let body = attach_body(&obj, secret.as_ref(), Some("westeurope".to_owned())).expect("body");
    let body = serde_json::to_value(&body).expect("json");
    w.control
        .put_compute("prod-workspace", &obj.compute_name(), &body)
        .await
        .expect("seed compute");
}

async fn seed_every_kind(w: &World) {
    let ws = json!({"name": "prod-workspace"});
    let ssh = json!({"secretRef": {"name": "unused"}, "passwordKey": "password"});
    let vm_login = || data(&[("username", "azureuser"), ("password", VM_PASSWORD)]);
    seed(
        w,
        target::<RemoteVmTarget>(
            "RemoteVmTarget",
            "gpu-dsvm",
            json!({"workspaceRef": ws, "resourceId": VM1, "credentials": ssh}),
        ),
        Some(vm_login()),
    )
    .await;
    // By address, under a name Kubernetes refuses: the import sets spec.computeName.
    seed(
        w,
        target::<RemoteVmTarget>(
            "RemoteVmTarget",
            "gpu-box",
            json!({"workspaceRef": ws, "computeName": "GPU-Box", "address": VM2_ADDRESS, "credentials": ssh}),
        ),
        Some(vm_login()),
    )
    .await;
    seed(
        w,
        target::<HdInsightTarget>(
            "HdInsightTarget",
            "spark-hdi",
            json!({"workspaceRef": ws, "resourceId": HDI, "address": "spark-1-ssh.azurehdinsight.net", "credentials": ssh}),
        ),
        Some(data(&[("username", HDI_USER), ("password", HDI_PASSWORD)])),
    )
    .await;
    seed(
        w,
        target::<BatchTarget>(
            "BatchTarget",
            "batch-pool",
            json!({"workspaceRef": ws, "resourceId": BATCH}),
        ),
        None,
    )
    .await;
    seed(
        w,
        target::<DatabricksTarget>(
            "DatabricksTarget",
            "dbw",
            json!({"workspaceRef": ws, "resourceId": DBW, "workspaceUrl": "adb-1234567890123456.7.azuredatabricks.net",
                   "accessTokenSecretRef": {"name": "unused", "key": "token"}}),
        ),
        Some(data(&[("token", DBX_TOKEN)])),
    )
    .await;
    seed(
        w,
        target::<DataLakeAnalyticsTarget>(
            "DataLakeAnalyticsTarget",
            "adla",
            json!({"workspaceRef": ws, "resourceId": ADLA}),
        ),
        None,
    )
    .await;
    let aml = json!({"location": "westeurope", "properties": {"computeType": "AmlCompute",
        "properties": {"vmSize": "STANDARD_D2_V2", "scaleSettings": {"maxNodeCount": 2, "minNodeCount": 0}}}});
    w.control
        .put_compute("prod-workspace", "cpu-cluster", &aml)
        .await
        .expect("seed AmlCompute");
}

/// Runs the built binary; blocking, so off the runtime that serves the emulator.
async fn run(mut cmd: Command, stdin: Option<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        let mut child = cmd
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(text.as_bytes()).expect("stdin");
        }
        child.wait_with_output().expect("wait")
    })
    .await
    .expect("join")
}

fn import_command(w: &World) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_azureml-attach"));
    cmd.arg("import")
        .args(["--subscription", SUB, "--resource-group", "ml-rg"])
        .args(["--workspace", "prod-workspace", "--namespace", &w.ns])
        .args(["--workspace-object-name", WS_OBJECT])
        .args(["--cloud", "Custom"])
        .args(["--arm-endpoint", w.emu.base_url()])
        .args(["--authority-host", w.emu.base_url()])
        .arg("--extra-ca-file")
        .arg(w.emu.ca_file())
        .args(["--credential", "ClientSecret"])
        .args(["--tenant-id", "11111111-1111-1111-1111-111111111111"])
        .args(["--client-id", "22222222-2222-2222-2222-222222222222"])
        .env("AZURE_CLIENT_SECRET", CLIENT_SECRET)
        .env_remove("AZURE_CLOUD")
        .env_remove("AZURE_CLIENT_ID")
        .env_remove("AZURE_TENANT_ID")
        .env_remove("AZURE_FEDERATED_TOKEN_FILE");
    cmd
}

/// What the operator of this world would type into each placeholder.
fn fill(secret: &str, key: &str) -> &'static str {
    let hdi = secret.starts_with("spark-hdi");
    match key {
        "clientSecret" => CLIENT_SECRET,
        "token" => DBX_TOKEN,
        "username" if hdi => HDI_USER,
        "username" => "azureuser",
        "password" if hdi => HDI_PASSWORD,
        "password" => VM_PASSWORD,
        other => panic!("unexpected key {other} in Secret {secret}"),
    }
}

/// The import's output with every placeholder replaced, as YAML again.
fn filled(stdout: &str) -> String {
    let mut out = String::new();
    for doc in serde_yaml::Deserializer::from_str(stdout) {
        let mut doc: serde_yaml::Value = serde::Deserialize::deserialize(doc).expect("YAML");
        if doc["kind"] == "Secret" {
            let name = doc["metadata"]["name"].as_str().expect("name").to_owned();
            let data = doc["stringData"].as_mapping_mut().expect("stringData");
            for (key, value) in data.iter_mut() {
                let key = key.as_str().expect("key");
                if value
                    .as_str()
                    .is_some_and(|v| v.starts_with(PLACEHOLDER_PREFIX))
                {
                    *value = fill(&name, key).into();
                }
            }
        }
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(&doc).expect("YAML"));
    }
    assert!(!out.contains(PLACEHOLDER_PREFIX), "{out}");
    out
}

fn count(reqs: &[azureml_emulator::state::LogEntry], method: &str) -> usize {
    reqs.iter().filter(|e| e.method == method).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_brings_every_existing_attachment_under_management_without_a_put() {
    let w = World::new("e2e-import").await;
    seed_every_kind(&w).await;

    let imported = run(import_command(&w), None).await;
    let stdout = String::from_utf8(imported.stdout).expect("utf-8");
    let stderr = String::from_utf8(imported.stderr).expect("utf-8");
    assert!(imported.status.success(), "import failed:\n{stderr}");
    for secret in [
        CLIENT_SECRET,
        VM_PASSWORD,
        HDI_PASSWORD,
        DBX_TOKEN,
        DEFAULT_VM_PRIVATE_KEY.trim(),
    ] {
        assert!(!stdout.contains(secret), "stdout has a secret:\n{stdout}");
        assert!(!stderr.contains(secret), "stderr has a secret:\n{stderr}");
    }
    assert!(
        stderr.contains(
            r#"skipped compute "cpu-cluster" (AmlCompute): not attachable by this operator (yet)"#
        ),
        "{stderr}"
    );
    assert!(!stdout.contains("cpu-cluster"), "{stdout}");
    assert!(stdout.contains("computeName: GPU-Box"), "{stdout}");

    let manifests = filled(&stdout);
    let mut dry_run = w.env.kubectl();
    dry_run.args(["apply", "--dry-run=server", "-f", "-"]);
    let checked = run(dry_run, Some(manifests.clone())).await;
    assert!(
        checked.status.success(),
        "kubectl apply --dry-run=server refused the filled manifests:\n{}\n{manifests}",
        String::from_utf8_lossy(&checked.stderr)
    );

    w.apply(&manifests).await;
    let op = w.operator().await;
    let attached = |r: (String, String, String)| assert_eq!(r.0, "True", "{r:?}");
    for name in ["gpu-dsvm", "gpu-box"] {
        attached(wait_reason(&w.api::<RemoteVmTarget>(), name, "Attached", T, &op).await);
    }
    attached(wait_reason(&w.api::<HdInsightTarget>(), "spark-hdi", "Attached", T, &op).await);
    attached(wait_reason(&w.api::<BatchTarget>(), "batch-pool", "Attached", T, &op).await);
    attached(wait_reason(&w.api::<DatabricksTarget>(), "dbw", "Attached", T, &op).await);
    attached(
        wait_reason(
            &w.api::<DataLakeAnalyticsTarget>(),
            "adla",
            "Attached",
            T,
            &op,
        )
        .await,
    );
    // One more resync (3 s) in sync: still nothing written.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let reqs = w.arm_requests().await;
    assert_eq!(count(&reqs, "PUT"), 0, "adoption must not PUT: {reqs:#?}");
    assert_eq!(count(&reqs, "DELETE"), 0, "nothing is detached: {reqs:#?}");
    let state = w.control.state().await.expect("state");
    assert_eq!(state.computes.len(), 7, "every compute is still there");
}
