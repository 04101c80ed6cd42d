//! Behaviour only a real API server (with its controller manager) has. If any of these pass
//! against a fake, the fake is too clever. Every test works in its own namespace.

use std::time::Duration;

use base64::Engine;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use kube::{
    Api, Client,
    api::{
        DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams, WatchEvent,
        WatchParams,
    },
    discovery,
};
use serde_json::json;
use testenv::{TestEnv, wait_for};

/// A namespaced kind with a status subresource and a CEL rule. Cluster-scoped, so shared by the
/// tests that need it; applying it again is a no-op.
const WIDGET_CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.smoke.testenv.io
spec:
  group: smoke.testenv.io
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget}
  versions:
  - name: v1
    served: true
    storage: true
    subresources:
      status: {}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            required: [replicas, maxReplicas]
            properties:
              replicas: {type: integer}
              maxReplicas: {type: integer}
            x-kubernetes-validations:
            - rule: "self.replicas <= self.maxReplicas"
              message: "replicas must not exceed maxReplicas"
          status:
            type: object
            properties:
              phase: {type: string}
"#;

const WAIT: Duration = Duration::from_secs(60);

async fn widgets(env: &TestEnv, ns: &str) -> Api<DynamicObject> {
    env.apply_yaml(None, WIDGET_CRD).await.unwrap();
    let client = env.client();
    let gvk = GroupVersionKind::gvk("smoke.testenv.io", "v1", "Widget");
    let (resource, _) = discovery::pinned_kind(&client, &gvk).await.unwrap();
    Api::namespaced_with(client, ns, &resource)
}

fn widget(name: &str, replicas: i64, max_replicas: i64) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": "smoke.testenv.io/v1",
        "kind": "Widget",
        "metadata": {"name": name},
        "spec": {"replicas": replicas, "maxReplicas": max_replicas},
    }))
    .unwrap()
}

fn api_error(err: kube::Error) -> Box<kube::core::Status> {
    match err {
        kube::Error::Api(status) => status,
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test]
async fn crd_cel_rule_refuses_an_invalid_object_with_its_message() {
    let env = TestEnv::global();
    let ns = env.create_namespace("cel").await;
    let widgets = widgets(env, &ns).await;

    widgets
        .create(&PostParams::default(), &widget("ok", 1, 3))
        .await
        .unwrap();
    let status = api_error(
        widgets
            .create(&PostParams::default(), &widget("too-many", 5, 3))
            .await
            .unwrap_err(),
    );
    assert_eq!(status.code, 422, "{status:?}");
    assert!(
        status
            .message
            .contains("replicas must not exceed maxReplicas"),
        "{status:?}"
    );

    // The rule also guards updates of an existing object.
    let patch = json!({"spec": {"replicas": 4}});
    let status = api_error(
        widgets
            .patch("ok", &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap_err(),
    );
    assert!(
        status
            .message
            .contains("replicas must not exceed maxReplicas"),
        "{status:?}"
    );
}

#[tokio::test]
async fn finalizer_holds_deletion_and_status_is_written_separately_from_spec() {
    let env = TestEnv::global();
    let ns = env.create_namespace("finalizer").await;
    let widgets = widgets(env, &ns).await;
    let mut object = widget("held", 1, 2);
    object.metadata.finalizers = Some(vec!["smoke.testenv.io/hold".into()]);
    let created = widgets
        .create(&PostParams::default(), &object)
        .await
        .unwrap();
    let generation = created.metadata.generation;

    // Through the status subresource only status changes, and the generation stays.
    let both = json!({"spec": {"replicas": 2}, "status": {"phase": "Ready"}});
    let after = widgets
        .patch_status("held", &PatchParams::default(), &Patch::Merge(&both))
        .await
        .unwrap();
    assert_eq!(after.data["status"]["phase"], "Ready");
    assert_eq!(after.data["spec"]["replicas"], 1);
    assert_eq!(after.metadata.generation, generation);
    // Through the main resource only spec changes, and the generation moves.
    let both = json!({"spec": {"replicas": 2}, "status": {"phase": "Overwritten"}});
    let after = widgets
        .patch("held", &PatchParams::default(), &Patch::Merge(&both))
        .await
        .unwrap();
    assert_eq!(after.data["status"]["phase"], "Ready");
    assert_eq!(after.data["spec"]["replicas"], 2);
    assert!(after.metadata.generation > generation);

    // Deletion only marks the object while the finalizer is there.
    widgets
        .delete("held", &DeleteParams::default())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let marked = widgets.get("held").await.unwrap();
    assert!(marked.metadata.deletion_timestamp.is_some());
    let remove = json!({"metadata": {"finalizers": null}});
    widgets
        .patch("held", &PatchParams::default(), &Patch::Merge(&remove))
        .await
        .unwrap();
    wait_for("the widget to be gone", WAIT, async || {
        matches!(widgets.get_opt("held").await, Ok(None)).then_some(())
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn garbage_collector_deletes_a_secret_whose_owner_is_deleted() {
    let env = TestEnv::global();
    let ns = env.create_namespace("gc").await;
    let client = env.client();
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let secrets: Api<Secret> = Api::namespaced(client, &ns);
    let owner = config_maps
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "owner"}})).unwrap(),
        )
        .await
        .unwrap();
    let owned = |name: &str| -> Secret {
        serde_json::from_value(json!({
            "metadata": {"name": name, "ownerReferences": [{
                "apiVersion": "v1", "kind": "ConfigMap", "name": "owner",
                "uid": owner.metadata.uid.clone().unwrap(),
            }]},
            "stringData": {"k": "v"},
        }))
        .unwrap()
    };
    secrets
        .create(&PostParams::default(), &owned("child"))
        .await
        .unwrap();
    let bystander: Secret =
        serde_json::from_value(json!({"metadata": {"name": "bystander"}})).unwrap();
    secrets
        .create(&PostParams::default(), &bystander)
        .await
        .unwrap();

    config_maps
        .delete("owner", &DeleteParams::default())
        .await
        .unwrap();
    wait_for("the owned secret to be collected", WAIT, async || {
        matches!(secrets.get_opt("child").await, Ok(None)).then_some(())
    })
    .await
    .unwrap();
    assert!(secrets.get_opt("bystander").await.unwrap().is_some());
}

#[tokio::test]
async fn namespace_is_deleted_to_completion() {
    let env = TestEnv::global();
    let ns = env.create_namespace("doomed").await;
    let widgets = widgets(env, &ns).await;
    widgets
        .create(&PostParams::default(), &widget("w", 1, 1))
        .await
        .unwrap();
    let config_maps: Api<ConfigMap> = Api::namespaced(env.client(), &ns);
    let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "cm"}})).unwrap();
    config_maps
        .create(&PostParams::default(), &cm)
        .await
        .unwrap();

    let namespaces: Api<Namespace> = Api::all(env.client());
    namespaces
        .delete(&ns, &DeleteParams::default())
        .await
        .unwrap();
    wait_for("the namespace to be gone", WAIT, async || {
        matches!(namespaces.get_opt(&ns).await, Ok(None)).then_some(())
    })
    .await
    .unwrap();
    // Its contents went with it, custom resources included.
    assert!(widgets.get_opt("w").await.unwrap().is_none());
}

#[tokio::test]
async fn service_account_token_is_limited_by_its_role() {
    let env = TestEnv::global();
    let ns = env.create_namespace("rbac").await;
    let other = env.create_namespace("rbac-other").await;
    let rbac = format!(
        r#"
apiVersion: v1
kind: ServiceAccount
metadata: {{name: reader}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {{name: secret-reader}}
rules:
- apiGroups: [""]
  resources: [secrets]
  verbs: [get, list]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: reader}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: secret-reader}}
subjects:
- {{kind: ServiceAccount, name: reader, namespace: {ns}}}
"#
    );
    env.apply_yaml(Some(&ns), &rbac).await.unwrap();
    let secret = "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\nstringData: {k: v}\n";
    env.apply_yaml(Some(&ns), secret).await.unwrap();
    env.apply_yaml(Some(&other), secret).await.unwrap();

    let reader = env.service_account_client(&ns, "reader").await;
    let own = Api::<Secret>::namespaced(reader.clone(), &ns)
        .get("s")
        .await
        .unwrap();
    assert_eq!(own.data.unwrap()["k"].0, b"v");
    let status = api_error(
        Api::<Secret>::namespaced(reader.clone(), &other)
            .get("s")
            .await
            .unwrap_err(),
    );
    assert!(status.is_forbidden(), "{status:?}");
    assert!(
        status
            .message
            .contains(&format!("system:serviceaccount:{ns}:reader")),
        "{status:?}"
    );
    let status = api_error(
        Api::<ConfigMap>::namespaced(reader, &ns)
            .list(&Default::default())
            .await
            .unwrap_err(),
    );
    assert!(status.is_forbidden(), "{status:?}");

    // The same identity from a kubeconfig file, as a separate process (the operator) uses it.
    let kubeconfig = env.service_account_kubeconfig(&ns, "reader").await;
    let can_i = |namespace: &str| {
        let out = env
            .kubectl()
            .env("KUBECONFIG", &kubeconfig)
            .args(["auth", "can-i", "get", "secrets", "--namespace", namespace])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(can_i(&ns), "yes");
    assert_eq!(can_i(&other), "no");
}

#[tokio::test]
async fn watch_sees_changes_in_order() {
    let env = TestEnv::global();
    let ns = env.create_namespace("watch").await;
    let config_maps: Api<ConfigMap> = Api::namespaced(env.client(), &ns);
    let list = config_maps.list(&Default::default()).await.unwrap();
    let since = list.metadata.resource_version.unwrap();
    // Only `w`: kube-controller-manager's root-CA publisher adds `kube-root-ca.crt` to every
    // new namespace at a moment of its own, which raced this watch in CI.
    let mut events = config_maps
        .watch(
            &WatchParams::default().timeout(30).fields("metadata.name=w"),
            &since,
        )
        .await
        .unwrap()
        .boxed();
    let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "w"}})).unwrap();
    config_maps
        .create(&PostParams::default(), &cm)
        .await
        .unwrap();
    let patch = json!({"data": {"k": "v"}});
    config_maps
        .patch("w", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    config_maps
        .delete("w", &DeleteParams::default())
        .await
        .unwrap();

    let mut seen = Vec::new();
    while seen.len() < 3 {
        let event = tokio::time::timeout(WAIT, events.try_next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        seen.push(match event {
            WatchEvent::Added(o) => format!("added {}", o.metadata.name.unwrap()),
            WatchEvent::Modified(o) => format!("modified {:?}", o.data.unwrap()),
            WatchEvent::Deleted(o) => format!("deleted {}", o.metadata.name.unwrap()),
            other => panic!("unexpected {other:?}"),
        });
    }
    assert_eq!(seen, ["added w", r#"modified {"k": "v"}"#, "deleted w"]);
}

#[tokio::test]
async fn service_account_token_carries_the_workload_identity_claims() {
    let env = TestEnv::global();
    let ns = env.create_namespace("token").await;
    env.apply_yaml(
        Some(&ns),
        "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: app}\n",
    )
    .await
    .unwrap();
    let token = env
        .service_account_token(
            &ns,
            "app",
            &["api://AzureADTokenExchange"],
            Duration::from_secs(3600),
        )
        .await;
    let payload = token.split('.').nth(1).unwrap();
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(claims["iss"], testenv::SERVICE_ACCOUNT_ISSUER);
    assert_eq!(claims["sub"], format!("system:serviceaccount:{ns}:app"));
    assert_eq!(claims["aud"], json!(["api://AzureADTokenExchange"]));
    let lifetime = claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap();
    assert_eq!(lifetime, 3600);
}

#[tokio::test]
async fn kubectl_and_helm_talk_to_the_control_plane() {
    let env = TestEnv::global();
    let ns = env.create_namespace("cli").await;
    let out = env
        .kubectl()
        .args(["get", "namespace", &ns, "-o", "name"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("namespace/{ns}")
    );
    let out = env
        .helm()
        .args(["list", "--namespace", &ns, "--output", "json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "[]");
    // Clients made in this test's runtime work; the admin is the admin.
    let client: Client = env.client();
    let who = client.apiserver_version().await.unwrap();
    assert_eq!(
        format!("v{}.{}", who.major, who.minor),
        env.versions().kubernetes.rsplit_once('.').unwrap().0
    );
}
