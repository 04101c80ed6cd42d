//! The middle test tier: the rule scenarios in-process, in seconds. The real target reconciler
//! (`controller::reconcile::reconcile`) runs against a mocked Kubernetes API (`kube.rs`, behind a
//! real `kube::Client`) and the Azure ML emulator library over HTTPS; each scenario asserts the
//! exact ARM calls (the emulator's request log) and the exact Kubernetes writes.
//!
//! The e2e tier (`tests/e2e`) proves the same rules on a real kube-apiserver with the operator as
//! a process; this tier pins the calls each pass makes, which e2e can only count.

mod kube;

use std::sync::Arc;
use std::time::Duration;

use ::kube::api::PartialObjectMeta;
use ::kube::runtime::reflector::{self, store::Writer};
use ::kube::runtime::watcher::Event;
use azureml_attach::api::{DataLakeAnalyticsTarget, MLWorkspace};
use azureml_attach::azure::{
    AzureConfig, AzureOptions, Cloud, CredentialFactory, EndpointOverrides, Throttle,
};
use azureml_attach::controller::claims::ClaimIndex;
use azureml_attach::controller::context::Context;
use azureml_attach::controller::reconcile;
use azureml_attach::controller::secrets::Secrets;
use azureml_attach::controller::watches::Synced;
use azureml_attach::ops::Metrics;
use azureml_emulator::config::{DEFAULT_CLIENT_SECRET, DEFAULT_SECRET_CLIENT_ID, DEFAULT_TENANT};
use azureml_emulator::{ControlClient, EmulatorConfig, EmulatorHandle};
use k8s_openapi::api::core::v1::Secret;
use kube::{MockKube, Write};
use serde_json::{Value, json};

const NS: &str = "team";
const SUB: &str = "00000000-0000-0000-0000-000000000000";
const ADLA: &str = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/ml-rg/providers/Microsoft.DataLakeAnalytics/accounts/adla1";
const ADLA_PATH: &str = "/apis/attach.azureml.io/v1alpha1/namespaces/team/datalakeanalyticstargets";

/// The emulator, the mocked API server and a Context wired to both.
struct World {
    _emulator: EmulatorHandle,
    control: ControlClient,
    kube: MockKube,
    ctx: Arc<Context>,
    targets: Writer<DataLakeAnalyticsTarget>,
    target_store: reflector::Store<DataLakeAnalyticsTarget>,
    index: ClaimIndex<DataLakeAnalyticsTarget>,
    /// The other stores' writers, kept for the life of the world (their watches).
    _writers: (
        Writer<MLWorkspace>,
        Writer<PartialObjectMeta<Secret>>,
        Writer<PartialObjectMeta<Secret>>,
    ),
}

fn workspace() -> MLWorkspace {
    serde_json::from_value(json!({
        "apiVersion": "attach.azureml.io/v1alpha1",
        "kind": "MLWorkspace",
        "metadata": {"name": "prod-workspace", "namespace": NS, "uid": "ws-uid"},
        "spec": {
            "subscriptionId": SUB,
            "resourceGroup": "ml-rg",
            "workspaceName": "prod-workspace",
            "credential": {
                "type": "ClientSecret",
                "clientSecret": {
                    "tenantId": DEFAULT_TENANT,
                    "clientId": DEFAULT_SECRET_CLIENT_ID,
                    "secretRef": {"name": "ws-sp", "key": "clientSecret"}
                }
            }
        },
        "status": {
            "conditions": [{"type": "Ready", "status": "True", "reason": "Reached", "message": "ok"}],
            "location": "westeurope"
        }
    }))
    .expect("a valid MLWorkspace")
}

fn credential_secret() -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": "ws-sp", "namespace": NS, "uid": "sp-uid", "resourceVersion": "7",
            "labels": {"attach.azureml.io/credential": "true"}
        },
        "data": {"clientSecret": base64(DEFAULT_CLIENT_SECRET)}
    })
}

fn base64(s: &str) -> String {
    use std::fmt::Write as _;
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let b = s.as_bytes();
    let mut out = String::new();
    for chunk in b.chunks(3) {
        let n =
            chunk.iter().fold(0u32, |acc, &x| (acc << 8) | u32::from(x)) << (8 * (3 - chunk.len()));
        for i in 0..4 {
            if i <= chunk.len() {
                let _ = out.write_char(char::from(T[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn adla(name: &str, created: &str) -> Value {
    json!({
        "apiVersion": "attach.azureml.io/v1alpha1",
        "kind": "DataLakeAnalyticsTarget",
        "metadata": {
            "name": name, "namespace": NS, "uid": format!("uid-{name}"),
            "generation": 1, "resourceVersion": "1", "creationTimestamp": created,
            "finalizers": null
        },
        "spec": {"workspaceRef": {"name": "prod-workspace"}, "resourceId": ADLA}
    })
}

impl World {
    async fn new() -> Self {
        let mut config = EmulatorConfig::default();
        config.settings.provisioning_delay_ms = 200;
        config.settings.deletion_delay_ms = 200;
        let emulator = azureml_emulator::spawn(config).await.expect("emulator");
        let control = emulator.control().expect("control client");
        let azure = AzureConfig::load(AzureOptions {
            cloud: Cloud::Custom,
            overrides: EndpointOverrides {
                arm_endpoint: Some(emulator.base_url().to_string()),
                arm_audience: None,
                authority_host: Some(emulator.base_url().to_string()),
            },
            extra_ca_file: Some(emulator.ca_file().to_path_buf()),
            ..Default::default()
        })
        .expect("emulator endpoints");

        let kube = MockKube::default();
        let client = kube.client();
        kube.put(
            &format!("/api/v1/namespaces/{NS}/secrets/ws-sp"),
            credential_secret(),
        );

        let (ws_store, mut ws_writer) = reflector::store::<MLWorkspace>();
        ws_writer.apply_watcher_event(&Event::Apply(workspace()));
        let (secret_store, mut secret_writer) = reflector::store::<PartialObjectMeta<Secret>>();
        let meta: PartialObjectMeta<Secret> =
            serde_json::from_value(json!({"apiVersion": "v1", "kind": "Secret", "metadata": credential_secret()["metadata"]}))
                .expect("metadata");
        secret_writer.apply_watcher_event(&Event::Apply(meta));
        let (connection_store, connection_writer) = reflector::store::<PartialObjectMeta<Secret>>();
        let (target_store, targets) = reflector::store::<DataLakeAnalyticsTarget>();
        let index = ClaimIndex::default();
        let throttle = Arc::new(Throttle::new(azure.throttle));
        let ctx = Context::new(
            client.clone(),
            azure.clone(),
            CredentialFactory::new(&azure),
            throttle,
            Arc::new(Metrics::new()),
            Duration::from_secs(20),
            vec![ws_store],
            vec![azureml_attach::controller::claim_source(
                target_store.clone(),
                index.clone(),
            )],
            Vec::new(),
            Secrets::new(client, vec![secret_store], vec![connection_store]),
            Synced::ready(),
        );
        World {
            _emulator: emulator,
            control,
            kube,
            ctx: Arc::new(ctx),
            targets,
            target_store,
            index,
            _writers: (ws_writer, secret_writer, connection_writer),
        }
    }

    /// Creates a target (as `kubectl apply` would) and lets the claim index see it.
    fn create(&mut self, name: &str, created: &str) {
        self.kube
            .put(&format!("{ADLA_PATH}/{name}"), adla(name, created));
        self.observe(name);
    }

    /// Feeds the watch: the mock's current object into the store and the claim index.
    fn observe(&mut self, name: &str) -> Option<DataLakeAnalyticsTarget> {
        let obj: DataLakeAnalyticsTarget =
            serde_json::from_value(self.kube.get(&format!("{ADLA_PATH}/{name}"))?).ok()?;
        let event = Event::Apply(obj.clone());
        self.targets.apply_watcher_event(&event);
        self.index.update(&event, &self.target_store);
        Some(obj)
    }

    /// One reconcile of `name` as the controller would run it; returns the requeue, if any.
    async fn pass(&mut self, name: &str) -> Option<Duration> {
        let obj = self.observe(name).expect("the object exists");
        let action = reconcile::reconcile(Arc::new(obj), self.ctx.clone()).await;
        match action {
            Ok(a) => {
                let text = format!("{a:?}");
                parse_requeue(&text)
            }
            Err(e) => e.in_progress(),
        }
    }

    /// ARM calls since the last call, as `"METHOD operation status"`.
    async fn arm_calls(&self) -> Vec<String> {
        let log = self.control.requests(None).await.expect("request log");
        self.control.clear_requests().await.expect("clear");
        log.entries
            .into_iter()
            .filter(|e| !e.path.contains("/oauth2/") && !e.path.starts_with("/_emulator"))
            .map(|e| match (e.method.as_str(), &e.query) {
                ("DELETE", Some(q)) => format!("{} {} {} ?{q}", e.method, e.operation, e.status),
                _ => format!("{} {} {}", e.method, e.operation, e.status),
            })
            .collect()
    }

    fn writes(&self) -> Vec<String> {
        assert!(
            self.kube.unexpected().is_empty(),
            "{:?}",
            self.kube.unexpected()
        );
        self.kube
            .take_writes()
            .into_iter()
            .map(|Write { verb, what, reason }| match reason {
                Some(r) => format!("{verb} {r}"),
                None => format!("{verb} {what}"),
            })
            .collect()
    }

    fn ready(&self, name: &str) -> (String, String) {
        let obj = self
            .kube
            .get(&format!("{ADLA_PATH}/{name}"))
            .expect("the object");
        let ready = obj["status"]["conditions"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"))
            .cloned()
            .unwrap_or(Value::Null);
        (
            ready["status"].as_str().unwrap_or("").to_owned(),
            ready["reason"].as_str().unwrap_or("").to_owned(),
        )
    }

    /// Waits out a requeue the way the controller would (the poll is not due before it).
    async fn wait(&self, requeue: Option<Duration>) {
        tokio::time::sleep(requeue.unwrap_or_default() + Duration::from_millis(1100)).await;
    }

    fn mark_deleted(&self, name: &str) {
        let path = format!("{ADLA_PATH}/{name}");
        let mut obj = self.kube.get(&path).expect("the object");
        obj["metadata"]["deletionTimestamp"] = json!("2026-12-01T00:00:00Z");
        self.kube.put(&path, obj);
    }
}

fn parse_requeue(action: &str) -> Option<Duration> {
    // `Action { requeue_after: Some(20s) }`: the only public view of an Action is Debug.
    let secs = action
        .split("requeue_after: Some(")
        .nth(1)?
        .split(')')
        .next()?;
    let (n, unit) = secs.split_at(secs.find(|c: char| !c.is_ascii_digit() && c != '.')?);
    let n: f64 = n.parse().ok()?;
    Some(match unit {
        "ms" => Duration::from_secs_f64(n / 1000.0),
        "µs" | "us" => Duration::ZERO,
        "ns" => Duration::ZERO,
        _ => Duration::from_secs_f64(n),
    })
}

#[tokio::test]
async fn rule2_rule6_a_first_attach_is_list_put_poll_three_writes_and_one_event() {
    let mut w = World::new().await;
    w.create("adla", "2026-12-01T00:00:00Z");
    let _ = w.arm_calls().await;

    // Pass 1: only the finalizer.
    w.pass("adla").await;
    assert_eq!(w.writes(), ["patch datalakeanalyticstargets/adla"]);
    assert!(w.arm_calls().await.is_empty());

    // Pass 2: the LIST, the PUT (201 + operation), status Attaching, one event.
    let requeue = w.pass("adla").await;
    assert_eq!(
        w.arm_calls().await,
        ["GET Compute_List 200", "PUT Compute_CreateOrUpdate 201"]
    );
    assert_eq!(w.writes(), ["apply-status datalakeanalyticstargets/adla"]);
    assert_eq!(w.ready("adla"), ("False".into(), "Attaching".into()));

    // Pass 3 (after Retry-After or 3 s): the poll; Succeeded → Ready with no further call.
    w.wait(requeue).await;
    let requeue = w.pass("adla").await;
    let calls = w.arm_calls().await;
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert!(
        calls[0].starts_with("GET ") && calls[0].ends_with(" 200"),
        "{calls:?}"
    );
    assert_eq!(
        w.writes(),
        [
            "apply-status datalakeanalyticstargets/adla",
            "event Attached"
        ]
    );
    assert_eq!(w.ready("adla"), ("True".into(), "Attached".into()));
    assert!(
        requeue.is_some_and(|d| d >= Duration::from_secs(18) && d <= Duration::from_secs(22)),
        "the resync, spread ±10 %: {requeue:?}"
    );

    // Steady state: the LIST comes from the shared cache; nothing is written anywhere.
    w.pass("adla").await;
    assert!(w.arm_calls().await.is_empty());
    assert!(w.writes().is_empty());
}

#[tokio::test]
async fn rule1_a_deletion_detaches_and_then_releases_once() {
    let mut w = World::new().await;
    w.create("adla", "2026-12-01T00:00:00Z");
    w.pass("adla").await;
    let requeue = w.pass("adla").await;
    w.wait(requeue).await;
    w.pass("adla").await;
    assert_eq!(w.ready("adla").1, "Attached");
    let _ = (w.arm_calls().await, w.writes());

    w.mark_deleted("adla");
    let mut requeue = w.pass("adla").await;
    let mut calls = w.arm_calls().await;
    let detach = calls.first().cloned().unwrap_or_default();
    assert!(
        detach.starts_with("DELETE Compute_Delete 20")
            && detach.contains("underlyingResourceAction=Detach"),
        "{calls:?}"
    );
    for _ in 0..5 {
        if w.kube.get(&format!("{ADLA_PATH}/adla")).is_none() {
            break;
        }
        w.wait(requeue).await;
        requeue = w.pass("adla").await;
        calls.extend(w.arm_calls().await);
    }
    assert!(
        w.kube.get(&format!("{ADLA_PATH}/adla")).is_none(),
        "the finalizer went: {calls:?}"
    );
    assert_eq!(
        calls.iter().filter(|c| c.starts_with("DELETE")).count(),
        1,
        "one detach, never a second: {calls:?}"
    );
    let writes = w.writes();
    assert_eq!(
        writes
            .iter()
            .filter(|w| w.as_str() == "event Detached")
            .count(),
        1,
        "{writes:?}"
    );
    assert!(!writes.iter().any(|w| w == "event Released"), "{writes:?}");
}

#[tokio::test]
async fn rule4_a_younger_claim_makes_no_azure_call() {
    let mut w = World::new().await;
    w.create("older", "2026-12-01T00:00:00Z");
    w.create("younger", "2026-12-01T00:00:05Z");
    let _ = w.arm_calls().await;
    w.pass("younger").await; // finalizer
    w.pass("younger").await;
    assert!(
        w.arm_calls().await.is_empty(),
        "no Azure call for the younger claim"
    );
    assert_eq!(
        w.ready("younger"),
        ("False".into(), "DuplicateAttachment".into())
    );
    let writes = w.writes();
    assert_eq!(
        writes,
        [
            "patch datalakeanalyticstargets/younger",
            "apply-status datalakeanalyticstargets/younger",
            "event DuplicateAttachment"
        ]
    );
    // Steady: the same answer writes nothing again.
    w.pass("younger").await;
    assert!(w.writes().is_empty());
}

#[tokio::test]
async fn rule3_a_compute_of_the_name_attaching_something_else_is_left_alone() {
    let mut w = World::new().await;
    let foreign = json!({
        "location": "westeurope",
        "properties": {
            "computeType": "DataLakeAnalytics",
            "resourceId": "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/ml-rg/providers/Microsoft.DataLakeAnalytics/accounts/other"
        }
    });
    w.control
        .put_compute("prod-workspace", "adla", &foreign)
        .await
        .expect("seed a foreign compute");
    w.create("adla", "2026-12-01T00:00:00Z");
    let _ = w.arm_calls().await;
    w.pass("adla").await;
    w.pass("adla").await;
    assert_eq!(w.arm_calls().await, ["GET Compute_List 200"], "no PUT");
    assert_eq!(w.ready("adla"), ("False".into(), "ComputeNameTaken".into()));
    let obj = w.kube.get(&format!("{ADLA_PATH}/adla")).expect("object");
    let message = obj["status"]["conditions"][0]["message"]
        .as_str()
        .unwrap_or("");
    assert!(
        message.contains("accounts/other"),
        "the message names what the existing compute attaches: {message}"
    );
}

#[tokio::test]
async fn rule12_the_connection_secret_is_a_step_of_its_own_and_restored_when_deleted() {
    let mut w = World::new().await;
    let mut obj = adla("adla", "2026-12-01T00:00:00Z");
    obj["spec"]["writeConnectionSecretToRef"] = json!({"name": "adla-conn"});
    w.kube.put(&format!("{ADLA_PATH}/adla"), obj);
    w.observe("adla");
    w.pass("adla").await; // finalizer
    let requeue = w.pass("adla").await;
    w.wait(requeue).await;
    let _ = (w.arm_calls().await, w.writes());

    // The poll succeeds; then listKeys and the Secret, then Ready, in the same pass.
    w.pass("adla").await;
    let calls = w.arm_calls().await;
    assert_eq!(calls.len(), 2, "poll, listKeys: {calls:?}");
    assert!(
        calls[1].starts_with("POST Compute_ListKeys 200"),
        "{calls:?}"
    );
    assert_eq!(
        w.writes(),
        [
            "create secrets/adla-conn",
            "apply-status datalakeanalyticstargets/adla",
            "event Attached"
        ]
    );
    assert_eq!(w.ready("adla"), ("True".into(), "Attached".into()));
    let secret = w
        .kube
        .get(&format!("/api/v1/namespaces/{NS}/secrets/adla-conn"))
        .expect("written");
    assert_eq!(secret["metadata"]["ownerReferences"][0]["uid"], "uid-adla");

    // Deleted behind the operator's back: the next pass writes it again and nothing else.
    w.kube
        .remove(&format!("/api/v1/namespaces/{NS}/secrets/adla-conn"));
    w.pass("adla").await;
    let calls = w.arm_calls().await;
    assert!(
        calls
            .iter()
            .all(|c| !c.starts_with("PUT") && !c.starts_with("DELETE")),
        "{calls:?}"
    );
    assert!(
        calls.iter().any(|c| c.starts_with("POST Compute_ListKeys")),
        "{calls:?}"
    );
    assert_eq!(
        w.writes(),
        ["create secrets/adla-conn"],
        "no status change, no event"
    );
}
