//! The scenario's steps against the API server and the emulator: apply, delete, the mid-way
//! changes, and waiting for convergence or for everything to be gone.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use azureml_attach::api::MLWorkspace;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::events::v1::Event;
use kube::api::{DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::discovery::ApiResource;
use kube::{Api, Client, ResourceExt};
use serde_json::{Value, json};

use crate::checks::Scenario;
use crate::fixture::{Kind, NEW_SSH_PORT, ROTATED_NS, ROTATED_VM_PASSWORD};
use crate::monitor::Monitor;
use crate::report::figure;

/// Server-side apply (field manager `chaos`), retried through a restarting API server.
pub async fn apply(client: &Client, v: &Value) {
    let kind = v["kind"].as_str().unwrap_or_default();
    let ar = match kind {
        "Secret" => ApiResource::erase::<Secret>(&()),
        "MLWorkspace" => ApiResource::erase::<MLWorkspace>(&()),
        k => Kind::ALL
            .into_iter()
            .find(|x| x.crd_kind() == k)
            .expect("a target kind")
            .api_resource(),
    };
    let ns = v["metadata"]["namespace"].as_str().unwrap_or_default();
    let name = v["metadata"]["name"].as_str().unwrap_or_default();
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &ar);
    let pp = PatchParams::apply("chaos").force();
    let mut tries = 0;
    while let Err(e) = api.patch(name, &pp, &Patch::Apply(v)).await {
        tries += 1;
        assert!(tries < 20, "apply {kind} {ns}/{name}: {e}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

pub async fn delete(client: &Client, ar: ApiResource, ns: &str, name: &str) {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &ar);
    let mut tries = 0;
    loop {
        match api.delete(name, &DeleteParams::default()).await {
            Ok(_) => return,
            Err(kube::Error::Api(s)) if s.is_not_found() => return,
            Err(e) => {
                tries += 1;
                assert!(tries < 20, "delete {ns}/{name}: {e}");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

pub async fn foreign_body(s: &Scenario) -> Option<Value> {
    let f = &s.fixture.foreign;
    s.control
        .computes()
        .await
        .ok()?
        .into_iter()
        .find(|c| c.workspace.eq_ignore_ascii_case(f.workspace) && c.name == f.name)
        .map(|c| c.body)
}

/// Mid-way changes; returns the request-log position after the Secret rotation and the
/// computes removed behind the operator's back.
pub async fn mutate(s: &Scenario, monitor: &Monitor) -> (u64, Vec<String>) {
    let f = &s.fixture;
    // Rotation: the VMs accept the new password first, then the Secret carries it.
    for &i in &f.rotated {
        s.control
            .put_resource(&f.targets[i].world_resource(ROTATED_VM_PASSWORD))
            .await
            .expect("rotate a VM's password");
    }
    apply(
        &s.client,
        &json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "vm-ssh", "namespace": s.namespaces[ROTATED_NS],
                         "labels": {"attach.azureml.io/credential": "true"}},
            "stringData": {"username": "azureuser", "password": ROTATED_VM_PASSWORD},
        }),
    )
    .await;
    let rotation_seq = {
        let mut log = monitor.log.lock().await;
        log.sync(&s.control).await.expect("request log");
        log.last_seq()
    };
    for &i in &f.port_changes {
        let mut t = f.targets[i].clone();
        t.ssh_port = NEW_SSH_PORT;
        apply(&s.client, &t.manifest(s.ns(&t))).await;
    }
    let computes = s.control.computes().await.expect("computes");
    let mut drifted = Vec::new();
    for &i in &f.drift {
        let t = &f.targets[i];
        if computes
            .iter()
            .any(|c| c.workspace.eq_ignore_ascii_case(t.azure_workspace()) && c.name == t.name)
        {
            s.control
                .delete_compute(t.azure_workspace(), &t.name)
                .await
                .expect("remove a compute behind the operator's back");
            drifted.push(t.name.clone());
        }
    }
    apply(&s.client, &f.duplicate.manifest(s.ns(&f.duplicate))).await;
    figure(format!(
        "mutations applied: Secret rotated ({} targets), {} sshPort changes, {} computes removed, duplicate claim {}/{} on the resource of {}",
        f.rotated.len(),
        f.port_changes.len(),
        drifted.len(),
        s.ns(&f.duplicate),
        f.duplicate.name,
        s.key(&f.targets[f.dup_of])
    ));
    (rotation_seq, drifted)
}

pub async fn wait_converged(
    s: &Scenario,
    monitor: &Monitor,
    rotation_seq: u64,
    bound: Duration,
) -> Result<Duration, Vec<String>> {
    let start = Instant::now();
    let mut said = Instant::now();
    loop {
        let bad = {
            let mut log = monitor.log.lock().await;
            let _ = log.sync(&s.control).await;
            s.unconverged(&log, true, Some(rotation_seq)).await
        };
        if bad.is_empty() {
            return Ok(start.elapsed());
        }
        if start.elapsed() > bound {
            return Err(bad);
        }
        if said.elapsed() > Duration::from_secs(15) {
            eprintln!(
                "chaos: {:.0}s after the faults: {} not converged, e.g. {}",
                start.elapsed().as_secs_f64(),
                bad.len(),
                bad.iter().take(3).cloned().collect::<Vec<_>>().join("; ")
            );
            said = Instant::now();
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

pub async fn wait_gone(s: &Scenario, bound: Duration) -> Result<Duration, String> {
    let start = Instant::now();
    loop {
        let (t, w) = (s.list_targets().await, s.list_workspaces().await);
        let f = &s.fixture.foreign;
        let computes = s.control.computes().await.map(|c| {
            c.into_iter()
                .filter(|c| !(c.workspace.eq_ignore_ascii_case(f.workspace) && c.name == f.name))
                .count()
        });
        match (&t, &w, &computes) {
            (Ok(t), Ok(w), Ok(0)) if t.is_empty() && w.is_empty() => return Ok(start.elapsed()),
            _ => {}
        }
        if start.elapsed() > bound {
            return Err(format!(
                "after {bound:?}: {:?} targets, {:?} MLWorkspaces, {:?} computes",
                t.map(|v| v.len()),
                w.map(|v| v.len()),
                computes
            ));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Every status (targets and MLWorkspaces) as text.
pub async fn status_text(s: &Scenario) -> String {
    let mut all = s.list_targets().await.expect("targets");
    all.extend(s.list_workspaces().await.expect("workspaces"));
    all.iter().map(|o| o.data["status"].to_string()).collect()
}

pub async fn events(s: &Scenario) -> Vec<Event> {
    let mut all = Vec::new();
    for ns in &s.namespaces {
        let api: Api<Event> = Api::namespaced(s.client.clone(), ns);
        if let Ok(l) = api.list(&ListParams::default()).await {
            all.extend(l.items);
        }
    }
    all
}

pub async fn events_text(s: &Scenario) -> String {
    serde_json::to_string(&events(s).await).unwrap_or_default()
}

/// Warning events: uid → (reason, count so far).
pub async fn warning_snapshot(s: &Scenario) -> BTreeMap<String, (String, i64)> {
    events(s)
        .await
        .into_iter()
        .filter(|e| e.type_.as_deref() == Some("Warning"))
        .map(|e| {
            let count = e
                .series
                .as_ref()
                .map(|x| i64::from(x.count))
                .or(e.deprecated_count.map(i64::from))
                .unwrap_or(1);
            (
                e.uid().unwrap_or_default(),
                (e.reason.clone().unwrap_or_default(), count),
            )
        })
        .collect()
}
