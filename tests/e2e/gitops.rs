//! GitOps health on live objects: the upstream kstatus library (what Flux and kpt read) and the
//! Argo CD health script run with gopher-lua (what Argo CD embeds) agree with each state:
//! attached, attaching, refused for good, detaching, and no status yet.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use azureml_attach::api::{DataLakeAnalyticsTarget, HdInsightTarget, RemoteVmTarget};
use azureml_emulator::SettingsPatch;
use serde_json::Value;

use crate::harness::*;

const T: Duration = Duration::from_secs(60);

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs `tool` (from the testenv binaries) with `object` on stdin; returns its JSON answer.
fn run_tool(w: &World, tool: &str, args: &[PathBuf], object: &Value) -> Value {
    let path = w.env.bin_dir().join(tool);
    let mut child = Command::new(&path)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e} (run `make testenv`)", path.display()));
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(object.to_string().as_bytes())
        .expect("write stdin");
    let out = child.wait_with_output().expect("wait");
    assert!(
        out.status.success(),
        "{tool}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("tool output is JSON")
}

/// What kstatus says (`Current`, `InProgress`, `Failed`, `Terminating`, …) and Argo CD's health.
fn health(w: &World, object: &Value) -> (String, String, String) {
    let k = run_tool(w, "kstatus", &[], object);
    let a = run_tool(
        w,
        "luahealth",
        &[repo().join("deploy/argocd/health.lua")],
        object,
    );
    (
        k["status"].as_str().unwrap_or_default().to_owned(),
        a["status"].as_str().unwrap_or_default().to_owned(),
        a["message"].as_str().unwrap_or_default().to_owned(),
    )
}

async fn live<K>(api: &kube::Api<K>, name: &str) -> Value
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
{
    let mut v = serde_json::to_value(api.get(name).await.expect("get")).expect("json");
    // The typed client drops apiVersion/kind on the way in; kstatus wants them.
    v["apiVersion"] = "attach.azureml.io/v1alpha1".into();
    v["kind"] = K::kind(&()).to_string().into();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kstatus_and_argocd_health_read_every_state_right() {
    let w = World::new("e2e-gitops").await;
    // A foreign compute under a wanted name: a permanent refusal.
    let foreign = serde_json::json!({
        "location": "westeurope",
        "properties": {"computeType": "VirtualMachine", "resourceId": VM2, "properties": {"sshPort": 22}}
    });
    w.control
        .put_compute("prod-workspace", "taken-vm", &foreign)
        .await
        .unwrap();
    let op = w.operator().await;
    w.apply(&format!(
        "apiVersion: attach.azureml.io/v1alpha1\nkind: DataLakeAnalyticsTarget\nmetadata:\n  name: ok-adla\nspec:\n  workspaceRef: {{name: prod-workspace}}\n  resourceId: {ADLA}\n"
    ))
    .await;
    w.apply(&vm_yaml("taken-vm", VM1, 22)).await;
    let vms = w.api::<RemoteVmTarget>();
    let adla = w.api::<DataLakeAnalyticsTarget>();
    wait_reason(&adla, "ok-adla", "Attached", T, &op).await;
    wait_reason(&vms, "taken-vm", "ComputeNameTaken", T, &op).await;

    let (k, a, _) = health(&w, &live(&adla, "ok-adla").await);
    assert_eq!((k.as_str(), a.as_str()), ("Current", "Healthy"), "attached");
    let (k, a, msg) = health(&w, &live(&vms, "taken-vm").await);
    assert_eq!((k.as_str(), a.as_str()), ("Failed", "Degraded"), "refused");
    assert!(msg.starts_with("ComputeNameTaken: "), "{msg}");

    // No status yet (as right after `kubectl apply`): Argo CD waits.
    let mut fresh = live(&adla, "ok-adla").await;
    fresh.as_object_mut().expect("object").remove("status");
    let (_, a, _) = health(&w, &fresh);
    assert_eq!(a, "Progressing", "missing status");

    // Slow Azure: an attach and a detach in flight.
    w.control
        .update_config(&SettingsPatch {
            provisioning_delay_ms: Some(20_000),
            deletion_delay_ms: Some(20_000),
            ..Default::default()
        })
        .await
        .unwrap();
    w.apply(&format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: hdi-ssh\n  labels: {{attach.azureml.io/credential: \"true\"}}\nstringData: {{username: sshuser, password: {HDI_PASSWORD}}}\n---\napiVersion: attach.azureml.io/v1alpha1\nkind: HdInsightTarget\nmetadata:\n  name: slow-hdi\nspec:\n  workspaceRef: {{name: prod-workspace}}\n  resourceId: {HDI}\n  address: spark-1-ssh.azurehdinsight.net\n  credentials: {{secretRef: {{name: hdi-ssh}}, passwordKey: password}}\n"
    ))
    .await;
    let hdi = w.api::<HdInsightTarget>();
    wait_reason(&hdi, "slow-hdi", "Attaching", T, &op).await;
    let (k, a, _) = health(&w, &live(&hdi, "slow-hdi").await);
    assert_eq!(
        (k.as_str(), a.as_str()),
        ("InProgress", "Progressing"),
        "attaching"
    );

    w.delete::<DataLakeAnalyticsTarget>("ok-adla").await;
    wait_reason(&adla, "ok-adla", "Detaching", T, &op).await;
    let (k, a, _) = health(&w, &live(&adla, "ok-adla").await);
    assert_eq!(
        (k.as_str(), a.as_str()),
        ("Terminating", "Progressing"),
        "detaching"
    );

    // The workspace reads Current too.
    let ws = w.api::<azureml_attach::api::MLWorkspace>();
    let (k, a, _) = health(&w, &live(&ws, "prod-workspace").await);
    assert_eq!(
        (k.as_str(), a.as_str()),
        ("Current", "Healthy"),
        "workspace"
    );
}

#[test]
fn the_argocd_cm_snippet_carries_exactly_health_lua() {
    let script = std::fs::read_to_string(repo().join("deploy/argocd/health.lua")).unwrap();
    let cm: Value = serde_yaml::from_str(
        &std::fs::read_to_string(repo().join("deploy/argocd/argocd-cm.yaml")).unwrap(),
    )
    .unwrap();
    let embedded = cm["data"]["resource.customizations.health.attach.azureml.io_*"]
        .as_str()
        .expect("the health key");
    assert_eq!(
        embedded, script,
        "regenerate deploy/argocd/argocd-cm.yaml from health.lua"
    );
}
