//! One test per reconcile rule (DESIGN §3), plus identity and restart tests.

use std::time::{Duration, Instant};

use azureml_attach::api::RemoteVmTarget;
use azureml_emulator::{FaultSpec, SettingsPatch};
use kube::api::{Patch, PatchParams};
use serde_json::json;

use crate::harness::*;

const T: Duration = Duration::from_secs(60);

fn count(reqs: &[azureml_emulator::state::LogEntry], method: &str) -> usize {
    reqs.iter().filter(|e| e.method == method).count()
}

fn vm_body(resource_id: &str) -> serde_json::Value {
    json!({
        "location": "westeurope",
        "properties": {
            "computeType": "VirtualMachine",
            "resourceId": resource_id,
            "properties": {
                "sshPort": 22,
                "administratorAccount": {"username": "azureuser", "password": VM_PASSWORD}
            }
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule3_adopts_an_existing_matching_attachment() {
    let w = World::new("e2e-adopt").await;
    w.control
        .put_compute("prod-workspace", "adopted-vm", &vm_body(VM1))
        .await
        .unwrap();
    let op = w.operator().await;
    w.apply(&vm_yaml("adopted-vm", VM1, 22)).await;
    wait_reason(&w.api::<RemoteVmTarget>(), "adopted-vm", "Attached", T, &op).await;
    let reqs = w.arm_requests().await;
    assert_eq!(count(&reqs, "PUT"), 0, "adoption must not PUT: {reqs:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule3_compute_name_taken_is_reported_and_left_alone() {
    let w = World::new("e2e-taken").await;
    w.control
        .put_compute("prod-workspace", "taken-vm", &vm_body(VM2))
        .await
        .unwrap();
    let op = w.operator().await;
    w.apply(&vm_yaml("taken-vm", VM1, 22)).await;
    let (_, _, msg) = wait_reason(
        &w.api::<RemoteVmTarget>(),
        "taken-vm",
        "ComputeNameTaken",
        T,
        &op,
    )
    .await;
    assert!(msg.contains("computeName"), "{msg}");
    w.delete::<RemoteVmTarget>("taken-vm").await;
    wait_gone(&w.api::<RemoteVmTarget>(), "taken-vm", T, &op).await;
    let reqs = w.arm_requests().await;
    assert_eq!(count(&reqs, "PUT") + count(&reqs, "DELETE"), 0, "{reqs:#?}");
    let state = w.control.state().await.unwrap();
    assert!(
        state.computes.iter().any(|c| c.name == "taken-vm"),
        "someone else's compute must stay"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule4_duplicate_attachment_across_namespaces_oldest_wins() {
    let w = World::new("e2e-dup-a").await;
    let ns2 = w.env.create_namespace("e2e-dup-b").await;
    w.apply_in(&ns2, &workspace_yaml("prod-workspace")).await;
    let op = Operator::start(&w, &[&w.ns, &ns2], &[], "3s").await;
    w.apply(&vm_yaml("first-vm", VM1, 22)).await;
    wait_reason(&w.api::<RemoteVmTarget>(), "first-vm", "Attached", T, &op).await;
    w.apply_in(&ns2, &vm_yaml("second-vm", VM1, 22)).await;
    let api2: kube::Api<RemoteVmTarget> = kube::Api::namespaced(w.client.clone(), &ns2);
    let (_, _, msg) = wait_reason(&api2, "second-vm", "DuplicateAttachment", T, &op).await;
    assert!(msg.contains(&w.ns) && msg.contains("first-vm"), "{msg}");
    tokio::time::sleep(Duration::from_secs(4)).await;
    let reqs = w.arm_requests().await;
    assert_eq!(
        count(&reqs, "PUT"),
        1,
        "the later claim causes no Azure write: {reqs:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule9_and_rule11_missing_workspace_secret_or_key_give_a_reason_without_hot_loop() {
    let w = World::new("e2e-missing").await;
    let op = w.operator().await;
    w.apply(
        r#"apiVersion: attach.azureml.io/v1alpha1
kind: RemoteVmTarget
metadata:
  name: no-workspace
spec:
  workspaceRef: {name: does-not-exist}
  resourceId: /subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/ml-rg/providers/Microsoft.Compute/virtualMachines/dsvm-1
  credentials: {secretRef: {name: whatever}, passwordKey: password}
---
apiVersion: attach.azureml.io/v1alpha1
kind: RemoteVmTarget
metadata:
  name: no-secret
spec:
  workspaceRef: {name: prod-workspace}
  resourceId: /subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/ml-rg/providers/Microsoft.Compute/virtualMachines/dsvm-1
  credentials: {secretRef: {name: missing-secret}, passwordKey: password}
---
apiVersion: v1
kind: Secret
metadata:
  name: no-password
  labels:
    attach.azureml.io/credential: "true"
stringData:
  username: azureuser
---
apiVersion: attach.azureml.io/v1alpha1
kind: RemoteVmTarget
metadata:
  name: no-key
spec:
  workspaceRef: {name: prod-workspace}
  resourceId: /subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/ml-rg/providers/Microsoft.Compute/virtualMachines/dsvm-2
  credentials: {secretRef: {name: no-password}, passwordKey: password}
"#,
    )
    .await;
    let api = w.api::<RemoteVmTarget>();
    wait_reason(&api, "no-workspace", "WorkspaceNotFound", T, &op).await;
    wait_reason(&api, "no-secret", "SecretNotFound", T, &op).await;
    let (_, _, msg) = wait_reason(&api, "no-key", "SecretKeyMissing", T, &op).await;
    assert!(
        msg.contains("password") && msg.contains("no-password"),
        "{msg}"
    );
    w.control.clear_requests().await.unwrap();
    // Three resync periods.
    tokio::time::sleep(Duration::from_secs(9)).await;
    let reqs = w.arm_requests().await;
    let ops: Vec<_> = reqs
        .iter()
        .map(|e| format!("{} {}", e.operation, e.status))
        .collect();
    eprintln!(
        "MEASURE missing refs, 3 resyncs: {} ARM calls {ops:?}",
        ops.len()
    );
    assert_eq!(count(&reqs, "PUT") + count(&reqs, "DELETE"), 0, "{ops:?}");
    assert!(reqs.len() <= 4, "no hot loop: {ops:?}");

    // A target that never reached Azure is released at once, even without its workspace.
    w.delete::<RemoteVmTarget>("no-workspace").await;
    wait_gone(&api, "no-workspace", Duration::from_secs(10), &op).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule5_reattach_after_ssh_port_change_and_secret_rotation() {
    let w = World::new("e2e-reattach").await;
    let op = w.operator().await;
    w.apply(&vm_yaml("re-vm", VM1, 22)).await;
    let api = w.api::<RemoteVmTarget>();
    wait_reason(&api, "re-vm", "Attached", T, &op).await;
    api.patch(
        "re-vm",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"sshPort": 2222}})),
    )
    .await
    .unwrap();
    let start = Instant::now();
    loop {
        let state = w.control.state().await.unwrap();
        let port = state
            .computes
            .iter()
            .find(|c| c.name == "re-vm")
            .and_then(|c| {
                c.body
                    .pointer("/properties/properties/sshPort")
                    .and_then(|p| p.as_i64())
            });
        if port == Some(2222)
            && state
                .computes
                .iter()
                .any(|c| c.name == "re-vm" && c.provisioning_state == "Succeeded")
        {
            break;
        }
        assert!(
            start.elapsed() < T,
            "sshPort change never re-attached\n{}",
            tail(&op.logs())
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    wait_reason(&api, "re-vm", "Attached", T, &op).await;
    let reqs = w.arm_requests().await;
    assert_eq!(
        (count(&reqs, "PUT"), count(&reqs, "DELETE")),
        (2, 1),
        "detach then attach"
    );

    // Rotate the Secret (same password, new resourceVersion): re-attach again.
    let secrets: kube::Api<k8s_openapi::api::core::v1::Secret> = w.api();
    secrets
        .patch(
            "re-vm-ssh",
            &PatchParams::default(),
            &Patch::Merge(json!({"stringData": {"rotated": "1"}})),
        )
        .await
        .unwrap();
    let start = Instant::now();
    while count(&w.arm_requests().await, "PUT") < 3 {
        assert!(
            start.elapsed() < T,
            "Secret rotation never re-attached\n{}",
            tail(&op.logs())
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    wait_reason(&api, "re-vm", "Attached", T, &op).await;
    assert!(!op.logs().contains(VM_PASSWORD));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule7_drift_is_repaired_within_one_resync() {
    let w = World::new("e2e-drift").await;
    let op = w.operator().await;
    w.apply(&vm_yaml("drift-vm", VM1, 22)).await;
    let api = w.api::<RemoteVmTarget>();
    wait_reason(&api, "drift-vm", "Attached", T, &op).await;
    w.control
        .delete_compute("prod-workspace", "drift-vm")
        .await
        .unwrap();
    let start = Instant::now();
    loop {
        let state = w.control.state().await.unwrap();
        if state.computes.iter().any(|c| c.name == "drift-vm") {
            break;
        }
        // One resync (3s) plus provisioning and scheduling slack.
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "drift not repaired\n{}",
            tail(&op.logs())
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    wait_reason(&api, "drift-vm", "Attached", T, &op).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule6_restart_in_the_middle_of_a_long_attach_resumes_it() {
    let w = World::new("e2e-restart").await;
    w.control
        .update_config(&SettingsPatch {
            provisioning_delay_ms: Some(8000),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut op = w.operator().await;
    w.apply(&vm_yaml("slow-vm", VM1, 22)).await;
    let api = w.api::<RemoteVmTarget>();
    wait_reason(&api, "slow-vm", "Attaching", T, &op).await;
    let obj = api.get("slow-vm").await.unwrap();
    assert!(
        obj.status.unwrap().operation.is_some(),
        "the operation is recorded in status"
    );
    op.kill();
    let op2 = w.operator().await;
    wait_reason(&api, "slow-vm", "Attached", T, &op2).await;
    let reqs = w.arm_requests().await;
    assert_eq!(
        count(&reqs, "PUT"),
        1,
        "the restarted operator resumed (no second PUT)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule8_429_with_retry_after_is_honoured() {
    let w = World::new("e2e-429").await;
    w.control
        .add_fault(&FaultSpec {
            method: Some("PUT".into()),
            path_pattern: "/computes/".into(),
            status: Some(429),
            code: None,
            retry_after: Some(4),
            latency_ms: None,
            drop: false,
            probability: None,
            count: Some(1),
        })
        .await
        .unwrap();
    let op = w.operator().await;
    w.apply(&vm_yaml("throttled-vm", VM1, 22)).await;
    let api = w.api::<RemoteVmTarget>();
    wait_reason(&api, "throttled-vm", "Attached", T, &op).await;
    let puts: Vec<_> = w
        .arm_requests()
        .await
        .into_iter()
        .filter(|e| e.method == "PUT")
        .collect();
    assert_eq!(puts.len(), 2, "{puts:#?}");
    assert_eq!(puts[0].status, 429);
    let t0 = chrono_like(&puts[0].timestamp);
    let t1 = chrono_like(&puts[1].timestamp);
    assert!(
        t1 - t0 >= 3.9,
        "second PUT {:.1}s after the 429 (Retry-After 4)",
        t1 - t0
    );
}

/// Seconds since midnight from an RFC 3339 timestamp (enough for a difference within a test).
fn chrono_like(ts: &str) -> f64 {
    let t = ts.split('T').nth(1).unwrap_or("0:0:0");
    let t = t.trim_end_matches('Z');
    let t = t.split('+').next().unwrap_or(t);
    let parts: Vec<f64> = t.split(':').map(|p| p.parse().unwrap_or(0.0)).collect();
    parts[0] * 3600.0 + parts[1] * 60.0 + parts[2]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule1_orphan_releases_without_a_call() {
    let w = World::new("e2e-orphan").await;
    let op = w.operator().await;
    w.apply(&vm_yaml("orphan-vm", VM1, 22)).await;
    let api = w.api::<RemoteVmTarget>();
    wait_reason(&api, "orphan-vm", "Attached", T, &op).await;
    api.patch(
        "orphan-vm",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"deletionPolicy": "Orphan"}})),
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    w.delete::<RemoteVmTarget>("orphan-vm").await;
    wait_gone(&api, "orphan-vm", T, &op).await;
    let reqs = w.arm_requests().await;
    assert_eq!(count(&reqs, "DELETE"), 0);
    let state = w.control.state().await.unwrap();
    assert!(
        state.computes.iter().any(|c| c.name == "orphan-vm"),
        "the attachment stays in Azure"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workload_identity_with_a_federated_token_file_reaches_ready() {
    let w = World::new("e2e-wi").await;
    let token = w
        .env
        .service_account_token(
            OPERATOR_NS,
            OPERATOR_SA,
            &["api://AzureADTokenExchange"],
            Duration::from_secs(3600),
        )
        .await;
    let file = w
        .env
        .dir()
        .join(format!("{}.token", w.env.unique_name("wi")));
    std::fs::write(&file, token).unwrap();
    let file = file.to_string_lossy().to_string();
    let op = Operator::start(
        &w,
        &[&w.ns],
        &[
            ("AZURE_CLIENT_ID", "33333333-3333-3333-3333-333333333333"),
            ("AZURE_TENANT_ID", "11111111-1111-1111-1111-111111111111"),
            ("AZURE_FEDERATED_TOKEN_FILE", &file),
        ],
        "3s",
    )
    .await;
    w.apply(&format!(
        r#"apiVersion: attach.azureml.io/v1alpha1
kind: MLWorkspace
metadata:
  name: wi-workspace
spec:
  subscriptionId: {SUB}
  resourceGroup: ml-rg
  workspaceName: prod-workspace
  credential:
    type: Default
---
{}"#,
        vm_yaml("wi-vm", VM2, 22).replace("name: prod-workspace", "name: wi-workspace")
    ))
    .await;
    wait_reason(&w.api::<RemoteVmTarget>(), "wi-vm", "Attached", T, &op).await;
    let reqs = w.arm_requests().await;
    let put = reqs.iter().find(|e| e.method == "PUT").expect("a PUT");
    assert_eq!(
        put.principal.as_deref(),
        Some("33333333-3333-3333-3333-333333333333")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule4_attachment_made_outside_kubernetes_under_another_name_is_reported() {
    let w = World::new("e2e-outside").await;
    w.control
        .put_compute("prod-workspace", "portal-vm", &vm_body(VM2))
        .await
        .unwrap();
    let op = w.operator().await;
    w.apply(&vm_yaml("inside-vm", VM2, 22)).await;
    let (_, _, msg) = wait_reason(
        &w.api::<RemoteVmTarget>(),
        "inside-vm",
        "DuplicateAttachment",
        T,
        &op,
    )
    .await;
    assert!(msg.contains("portal-vm"), "{msg}");
    assert_eq!(count(&w.arm_requests().await, "PUT"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule11_refused_compute_type_is_reported_and_not_retried() {
    let w = World::new("e2e-refused").await;
    w.control
        .update_config(&SettingsPatch {
            accept_batch: Some(false),
            ..Default::default()
        })
        .await
        .unwrap();
    let op = w.operator().await;
    w.apply(&format!(
        "apiVersion: attach.azureml.io/v1alpha1\nkind: BatchTarget\nmetadata:\n  name: refused\nspec:\n  workspaceRef: {{name: prod-workspace}}\n  resourceId: {BATCH}\n"
    ))
    .await;
    let api = w.api::<azureml_attach::api::BatchTarget>();
    let (_, _, msg) = wait_reason(&api, "refused", "ComputeTypeRefused", T, &op).await;
    assert!(msg.contains("Azure refused"), "{msg}");
    // Three resync periods later: still exactly one PUT.
    tokio::time::sleep(Duration::from_secs(9)).await;
    assert_eq!(
        count(&w.arm_requests().await, "PUT"),
        1,
        "no retry of a refused type"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule11_failed_provisioning_shows_every_error_and_is_not_retried() {
    let w = World::new("e2e-failed").await;
    let op = w.operator().await;
    w.apply(&vm_yaml("wrong-pw", VM1, 22).replace(VM_PASSWORD, "not-the-password"))
        .await;
    let api = w.api::<RemoteVmTarget>();
    let start = Instant::now();
    let reason = loop {
        if let Some((_, r, _)) = ready(&api, "wrong-pw").await
            && (r == "ProvisioningFailed" || r == "InvalidSpec" || r == "CredentialRejected")
        {
            break r;
        }
        assert!(
            start.elapsed() < T,
            "no failure reported\n{}",
            tail(&op.logs())
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    eprintln!("wrong VM password reported as {reason}");
    let status = api.get("wrong-pw").await.unwrap().status.unwrap();
    if reason == "ProvisioningFailed" {
        assert!(!status.provisioning_errors.is_empty(), "{status:?}");
    }
    tokio::time::sleep(Duration::from_secs(9)).await;
    assert_eq!(
        count(&w.arm_requests().await, "PUT"),
        1,
        "a failed configuration is not PUT again"
    );
    assert!(!op.logs().contains("not-the-password"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule9_missing_workspace_blocks_detach_until_orphan_releases_it() {
    let w = World::new("e2e-wedge").await;
    let op = w.operator().await;
    w.apply(&vm_yaml("wedge-vm", VM1, 22)).await;
    let api = w.api::<RemoteVmTarget>();
    wait_reason(&api, "wedge-vm", "Attached", T, &op).await;
    // A workspace waits for its targets (rule 9), so "missing" now takes someone forcing it
    // away: delete it and strip its finalizer.
    let wsapi = w.api::<azureml_attach::api::MLWorkspace>();
    w.delete::<azureml_attach::api::MLWorkspace>("prod-workspace")
        .await;
    wsapi
        .patch(
            "prod-workspace",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": null}})),
        )
        .await
        .unwrap();
    wait_gone(&wsapi, "prod-workspace", T, &op).await;
    w.delete::<RemoteVmTarget>("wedge-vm").await;
    // The target may first report the missing workspace as a live object (before it saw its
    // own deletion); the deleting pass then says how to get out.
    let start = std::time::Instant::now();
    loop {
        let (_, _, msg) = wait_reason(&api, "wedge-vm", "WorkspaceNotFound", T, &op).await;
        if msg.contains("deletionPolicy: Orphan") {
            break;
        }
        assert!(
            start.elapsed() < T,
            "the message says how to get out: {msg}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    api.patch(
        "wedge-vm",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"deletionPolicy": "Orphan"}})),
    )
    .await
    .unwrap();
    wait_gone(&api, "wedge-vm", T, &op).await;
    assert_eq!(count(&w.arm_requests().await, "DELETE"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_client_secret_is_reported_on_the_workspace_and_its_targets() {
    let w = World::new("e2e-badcred").await;
    let secrets: kube::Api<k8s_openapi::api::core::v1::Secret> = w.api();
    secrets
        .patch(
            "prod-workspace-sp",
            &PatchParams::default(),
            &Patch::Merge(json!({"stringData": {"clientSecret": "wrong-secret"}})),
        )
        .await
        .unwrap();
    let op = w.operator().await;
    w.apply(&vm_yaml("cred-vm", VM1, 22)).await;
    let wsapi = w.api::<azureml_attach::api::MLWorkspace>();
    wait_workspace_reason(&wsapi, "prod-workspace", "CredentialRejected", T, &op).await;
    wait_reason(
        &w.api::<RemoteVmTarget>(),
        "cred-vm",
        "WorkspaceNotReady",
        T,
        &op,
    )
    .await;
    assert!(!op.logs().contains("wrong-secret") && !op.logs().contains(CLIENT_SECRET));
    // Fixing the Secret heals both (the Secret's metadata watch triggers the workspace).
    secrets
        .patch(
            "prod-workspace-sp",
            &PatchParams::default(),
            &Patch::Merge(json!({"stringData": {"clientSecret": CLIENT_SECRET}})),
        )
        .await
        .unwrap();
    wait_reason(&w.api::<RemoteVmTarget>(), "cred-vm", "Attached", T, &op).await;
}

/// The workspace's Ready (reason, message) and whether it is being deleted.
async fn workspace_ready(
    api: &kube::Api<azureml_attach::api::MLWorkspace>,
    name: &str,
) -> Option<(String, String, bool)> {
    let ws = api.get_opt(name).await.ok()??;
    let deleting = ws.metadata.deletion_timestamp.is_some();
    let c = ws
        .status?
        .conditions
        .into_iter()
        .find(|c| c.type_ == "Ready")?;
    Some((c.reason, c.message, deleting))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule9_workspace_waits_for_its_targets() {
    use azureml_attach::api::MLWorkspace;
    let w = World::new("e2e-inuse").await;
    let op = w.operator().await;
    w.apply(&vm_yaml("user-vm", VM1, 22)).await;
    let api = w.api::<RemoteVmTarget>();
    let wsapi = w.api::<MLWorkspace>();
    wait_reason(&api, "user-vm", "Attached", T, &op).await;

    // Deleting the workspace first: it stays, saying which target holds it.
    w.delete::<MLWorkspace>("prod-workspace").await;
    let start = Instant::now();
    let message = loop {
        let seen = workspace_ready(&wsapi, "prod-workspace").await;
        if let Some((reason, message, deleting)) = &seen
            && reason == "InUse"
        {
            assert!(deleting, "InUse only while being deleted");
            break message.clone();
        }
        assert!(
            start.elapsed() < T,
            "workspace never reported InUse: {seen:?}\n{}",
            tail(&op.logs())
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert!(
        message.contains("1 target") && message.contains("RemoteVmTarget user-vm"),
        "{message}"
    );
    // Still there a while later (it does not give up on its own).
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(wsapi.get_opt("prod-workspace").await.unwrap().is_some());

    // Deleting the target detaches it through the workspace being deleted; then both go.
    w.delete::<RemoteVmTarget>("user-vm").await;
    wait_gone(&api, "user-vm", T, &op).await;
    wait_gone(&wsapi, "prod-workspace", Duration::from_secs(15), &op).await;
    let deletes: Vec<_> = w
        .arm_requests()
        .await
        .into_iter()
        .filter(|e| e.method == "DELETE")
        .collect();
    assert_eq!(deletes.len(), 1, "{deletes:#?}");
    assert!(
        deletes[0].path.ends_with("/computes/user-vm"),
        "{deletes:?}"
    );
    assert!(
        deletes[0]
            .query
            .as_deref()
            .unwrap_or("")
            .contains("underlyingResourceAction=Detach"),
        "{deletes:?}"
    );

    // `kubectl delete -f` of a workspace, its Secret, a target and its Secret at once.
    let yaml = format!(
        "{}---\n{}",
        workspace_yaml("prod-workspace"),
        vm_yaml("pair-vm", VM2, 22)
    );
    w.apply(&yaml).await;
    wait_reason(&api, "pair-vm", "Attached", T, &op).await;
    let file = w
        .env
        .dir()
        .join(format!("{}.yaml", w.env.unique_name("inuse")));
    std::fs::write(&file, &yaml).unwrap();
    let out = w
        .env
        .kubectl()
        .args(["delete", "-n", &w.ns, "--wait=true", "--timeout=60s", "-f"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "kubectl delete: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        tail(&op.logs())
    );
    wait_gone(&api, "pair-vm", Duration::from_secs(5), &op).await;
    wait_gone(&wsapi, "prod-workspace", Duration::from_secs(5), &op).await;
    let reqs = w.arm_requests().await;
    assert_eq!(count(&reqs, "DELETE"), 2, "pair-vm detached too");
    let state = w.control.state().await.unwrap();
    assert!(state.computes.is_empty(), "{:?}", state.computes);
    assert!(
        state.deleted_resources.is_empty(),
        "no underlying resource deleted: {:?}",
        state.deleted_resources
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule7_a_failed_resync_list_does_not_flap_a_ready_target() {
    let w = World::new("e2e-noflap").await;
    let op = w.operator().await;
    w.apply(&vm_yaml("steady-vm", VM1, 22)).await;
    let api = w.api::<RemoteVmTarget>();
    wait_reason(&api, "steady-vm", "Attached", T, &op).await;
    // Every LIST fails for a while: 5xx, then 429.
    for (status, retry_after) in [(503, None), (429, Some(1))] {
        w.control
            .add_fault(&FaultSpec {
                method: Some("GET".into()),
                path_pattern: "/computes$".into(),
                status: Some(status),
                code: None,
                retry_after,
                latency_ms: None,
                drop: false,
                probability: None,
                count: Some(3),
            })
            .await
            .unwrap();
    }
    // Three resync periods (3 s each): Ready never leaves True.
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(10) {
        let (status, reason, _) = ready(&api, "steady-vm").await.expect("status");
        assert_eq!(
            (status.as_str(), reason.as_str()),
            ("True", "Attached"),
            "a failed LIST flapped Ready\n{}",
            tail(&op.logs())
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let failed = w
        .arm_requests()
        .await
        .into_iter()
        .filter(|e| e.operation == "Compute_List" && e.status >= 429)
        .count();
    assert!(failed >= 2, "the faults were not hit: {failed}");
}
