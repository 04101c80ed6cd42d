//! Rule 12: the operator is no confused deputy. Credential Secrets opt in with a label;
//! a connection Secret never takes over a Secret that is someone else's.

use std::collections::BTreeSet;
use std::time::Duration;

use azureml_attach::api::{MLWorkspace, RemoteVmTarget};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Patch, PatchParams};
use serde_json::json;

use crate::harness::*;

const T: Duration = Duration::from_secs(60);

fn keys(s: &Secret) -> BTreeSet<String> {
    s.data.iter().flat_map(|d| d.keys().cloned()).collect()
}

fn value(s: &Secret, key: &str) -> String {
    s.data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|b| String::from_utf8_lossy(&b.0).into_owned())
        .unwrap_or_default()
}

/// A VM target using the labelled `{name}-ssh` Secret and writing its connection Secret to `conn`.
fn vm_with_connection(name: &str, resource_id: &str, conn: &str) -> String {
    format!(
        "{}  writeConnectionSecretToRef: {{name: {conn}}}\n",
        vm_yaml(name, resource_id, 22)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule12_an_existing_secret_named_as_connection_secret_is_never_taken_over() {
    let w = World::new("e2e-takeover").await;
    // An application's own Secret (no owners), and one controlled by something else.
    w.apply(
        r#"apiVersion: v1
kind: Secret
metadata:
  name: app-db
stringData:
  password: keep-me-123
  url: postgres://db.internal:5432/app
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: other-owner
---
"#,
    )
    .await;
    let cm: kube::Api<k8s_openapi::api::core::v1::ConfigMap> = w.api();
    let owner = cm.get("other-owner").await.unwrap();
    w.apply(&format!(
        r#"apiVersion: v1
kind: Secret
metadata:
  name: controlled
  ownerReferences:
    - apiVersion: v1
      kind: ConfigMap
      name: other-owner
      uid: {}
      controller: true
stringData:
  token: someone-elses
"#,
        owner.metadata.uid.unwrap()
    ))
    .await;
    let secrets: kube::Api<Secret> = w.api();
    let before_app = secrets.get("app-db").await.unwrap();
    let before_ctl = secrets.get("controlled").await.unwrap();

    let op = w.operator().await;
    w.apply(&vm_with_connection("vm-a", VM1, "app-db")).await;
    w.apply(&vm_with_connection("vm-b", VM2, "controlled"))
        .await;
    let api = w.api::<RemoteVmTarget>();
    let (status, _, msg) = wait_reason(&api, "vm-a", "ConnectionSecretConflict", T, &op).await;
    assert_eq!(status, "False");
    assert!(
        msg.contains("app-db") && msg.contains("not this target's"),
        "{msg}"
    );
    let (_, _, msg) = wait_reason(&api, "vm-b", "ConnectionSecretConflict", T, &op).await;
    assert!(msg.contains("ConfigMap"), "{msg}");

    for (name, before) in [("app-db", &before_app), ("controlled", &before_ctl)] {
        let now = secrets.get(name).await.unwrap();
        assert_eq!(keys(&now), keys(before), "{name}: keys changed");
        assert_eq!(now.data, before.data, "{name}: data changed");
        assert_eq!(
            now.metadata.owner_references, before.metadata.owner_references,
            "{name}: owners changed"
        );
        assert_eq!(
            now.metadata.resource_version, before.metadata.resource_version,
            "{name}: written to"
        );
    }

    // The targets go (detached); both Secrets stay, untouched, after the garbage collector ran.
    w.delete::<RemoteVmTarget>("vm-a").await;
    w.delete::<RemoteVmTarget>("vm-b").await;
    wait_gone(&api, "vm-a", T, &op).await;
    wait_gone(&api, "vm-b", T, &op).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = secrets.get("app-db").await.expect("app-db survives");
    assert_eq!(value(&after, "password"), "keep-me-123");
    assert_eq!(after.data, before_app.data);
    assert!(secrets.get_opt("controlled").await.unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule12_connection_secret_is_written_restored_and_renamed_only_where_it_is_ours() {
    let w = World::new("e2e-conn").await;
    let op = w.operator().await;
    w.apply(&vm_with_connection("vm-one", VM1, "conn-1")).await;
    let api = w.api::<RemoteVmTarget>();
    wait_reason(&api, "vm-one", "Attached", T, &op).await;
    let secrets: kube::Api<Secret> = w.api();
    let first = secrets.get("conn-1").await.expect("connection Secret");
    assert!(keys(&first).contains("computeId"), "{:?}", keys(&first));
    let uid = api.get("vm-one").await.unwrap().metadata.uid.unwrap();
    let owners = first.metadata.owner_references.clone().unwrap_or_default();
    assert!(
        owners
            .iter()
            .any(|o| o.uid == uid && o.controller == Some(true)),
        "{owners:?}"
    );

    // Deleted by someone: the owned-children watch brings the target back, and it is rewritten.
    secrets.delete("conn-1", &Default::default()).await.unwrap();
    let start = std::time::Instant::now();
    while secrets
        .get_opt("conn-1")
        .await
        .unwrap()
        .is_none_or(|s| s.metadata.uid == first.metadata.uid)
    {
        assert!(
            start.elapsed() < T,
            "conn-1 not restored\n{}",
            tail(&op.logs())
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Renamed: the new one is written, the old one (ours) removed.
    api.patch(
        "vm-one",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"writeConnectionSecretToRef": {"name": "conn-2"}}})),
    )
    .await
    .unwrap();
    let start = std::time::Instant::now();
    loop {
        let new = secrets.get_opt("conn-2").await.unwrap();
        let old = secrets.get_opt("conn-1").await.unwrap();
        if new.is_some() && old.is_none() {
            break;
        }
        assert!(
            start.elapsed() < T,
            "rename not followed: conn-2 {} conn-1 {}\n{:?}\n{}",
            new.is_some(),
            old.is_some(),
            api.get("vm-one").await.unwrap(),
            tail(&op.logs())
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    wait_reason(&api, "vm-one", "Attached", T, &op).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule12_an_unlabelled_credential_secret_is_refused_without_an_azure_call() {
    let w = World::new("e2e-optin").await;
    let op = w.operator().await;
    w.control.clear_requests().await.unwrap();
    w.apply(&format!(
        r#"apiVersion: v1
kind: Secret
metadata:
  name: plain-ssh
stringData:
  username: azureuser
  password: {VM_PASSWORD}
---
apiVersion: attach.azureml.io/v1alpha1
kind: RemoteVmTarget
metadata:
  name: vm-one
spec:
  workspaceRef: {{name: prod-workspace}}
  resourceId: {VM1}
  credentials: {{secretRef: {{name: plain-ssh}}, passwordKey: password}}
"#
    ))
    .await;
    let api = w.api::<RemoteVmTarget>();
    let (status, _, msg) = wait_reason(&api, "vm-one", "SecretNotLabeled", T, &op).await;
    assert_eq!(status, "False");
    assert!(
        msg.contains("attach.azureml.io/credential=true")
            && msg.contains("kubectl label secret plain-ssh"),
        "{msg}"
    );
    let writes: Vec<_> = w
        .arm_requests()
        .await
        .into_iter()
        .filter(|e| e.method != "GET")
        .map(|e| format!("{} {}", e.method, e.operation))
        .collect();
    assert!(
        writes.is_empty(),
        "no Azure write for an unlabelled Secret: {writes:?}"
    );

    // The owner opts in: the label brings the Secret into the watch, and the target attaches.
    let secrets: kube::Api<Secret> = w.api();
    secrets
        .patch(
            "plain-ssh",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"metadata": {"labels": {"attach.azureml.io/credential": "true"}}}),
            ),
        )
        .await
        .unwrap();
    wait_reason(&api, "vm-one", "Attached", T, &op).await;

    // The MLWorkspace's client-secret Secret follows the same rule.
    w.apply(&workspace_yaml("second-ws").replace(
        "    attach.azureml.io/credential: \"true\"\n",
        "    app: not-opted-in\n",
    ))
    .await;
    let workspaces = w.api::<MLWorkspace>();
    wait_workspace_reason(&workspaces, "second-ws", "SecretNotLabeled", T, &op).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule12_a_tenant_who_cannot_read_secrets_cannot_obtain_one_through_the_operator() {
    let w = World::new("e2e-deputy").await;
    // A person who may manage targets but not read Secrets.
    w.apply(
        r#"apiVersion: v1
kind: ServiceAccount
metadata:
  name: tenant
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  name: target-editor
rules:
  - apiGroups: ["attach.azureml.io"]
    resources: ["remotevmtargets"]
    verbs: ["get", "list", "watch", "create", "patch", "delete"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: tenant-target-editor
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: target-editor}
subjects:
  - {kind: ServiceAccount, name: tenant}
"#,
    )
    .await;
    // Another team's database password, in the same namespace, not opted in.
    const DB_PASSWORD: &str = "TopSecret-db-42";
    w.apply(&format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db-admin\nstringData:\n  username: postgres\n  password: {DB_PASSWORD}\n"
    ))
    .await;
    let op = w.operator().await;
    w.control.clear_requests().await.unwrap();

    let tenant = w.env.service_account_client(&w.ns, "tenant").await;
    let own_secrets: kube::Api<Secret> = kube::Api::namespaced(tenant.clone(), &w.ns);
    assert!(
        own_secrets.get("db-admin").await.is_err(),
        "the tenant may not read Secrets"
    );
    let targets: kube::Api<RemoteVmTarget> = kube::Api::namespaced(tenant, &w.ns);
    let target: RemoteVmTarget = serde_yaml::from_str(&format!(
        r#"apiVersion: attach.azureml.io/v1alpha1
kind: RemoteVmTarget
metadata:
  name: loot
spec:
  workspaceRef: {{name: prod-workspace}}
  resourceId: {VM1}
  credentials: {{secretRef: {{name: db-admin}}, usernameKey: username, passwordKey: password}}
  writeConnectionSecretToRef: {{name: loot-conn}}
"#
    ))
    .unwrap();
    targets
        .create(&Default::default(), &target)
        .await
        .expect("the tenant may create targets");
    let api = w.api::<RemoteVmTarget>();
    wait_reason(&api, "loot", "SecretNotLabeled", T, &op).await;
    tokio::time::sleep(Duration::from_secs(4)).await;

    // Nothing went to Azure, no compute holds it, no connection Secret was written.
    let puts: Vec<_> = w
        .arm_requests()
        .await
        .into_iter()
        .filter(|e| e.method != "GET")
        .map(|e| format!("{} {}", e.method, e.path))
        .collect();
    assert!(puts.is_empty(), "{puts:?}");
    let computes = w.control.computes().await.unwrap();
    assert!(
        !serde_json::to_string(&computes)
            .unwrap()
            .contains(DB_PASSWORD),
        "the password reached Azure"
    );
    let secrets: kube::Api<Secret> = w.api();
    assert!(secrets.get_opt("loot-conn").await.unwrap().is_none());
    let status = serde_json::to_string(&api.get("loot").await.unwrap().status).unwrap();
    assert!(!status.contains(DB_PASSWORD));
    assert!(!op.logs().contains(DB_PASSWORD));
}
