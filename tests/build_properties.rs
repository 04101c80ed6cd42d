//! Property tests of the spec → PUT body builders of every kind (`AttachTarget::build_properties`
//! in `controller/kinds/*.rs`), through the public API.
//!
//! For arbitrary specs (including ones the CRD rules would refuse) and arbitrary Secret data
//! (missing keys, empty and non-UTF-8 values): no panic; a refusal is a typed `BuildError`
//! that never quotes a secret; a body carries the kind's computeType, its resource id (or,
//! for a VM without one, its address), properties of the kind's own shape, the Secret's
//! values where the kind sends them, is valid per the OpenAPI spec (the emulator's validator)
//! and reads back the same.

use azureml_attach::api::{
    BatchTarget, DataLakeAnalyticsTarget, DatabricksTarget, HdInsightTarget, KubernetesTarget,
    RemoteVmTarget, SynapseSparkTarget,
};
use azureml_attach::azure::models::{Compute, ComputeProperties, ComputeResource, ComputeType};
use azureml_attach::controller::target::{AttachTarget, BuildError, SecretData, Underlying};
use azureml_emulator::validate::{Options, Specs};
use k8s_openapi::ByteString;
use proptest::prelude::*;
use proptest::sample::select;
use proptest::test_runner::{FileFailurePersistence, TestCaseError};
use secrecy::ExposeSecret;
use serde_json::{Value, json};

/// Planted in every Secret value: never in a `Debug` or error text.
const MARK: &str = "S3CR3T";
/// The keys specs refer to, so generated Secrets often (not always) have them.
const KEYS: &[&str] = &["username", "password", "privateKey", "token", "ssh-key", ""];

fn specs() -> &'static Specs {
    static SPECS: std::sync::LazyLock<Specs> =
        std::sync::LazyLock::new(|| Specs::load().expect("the embedded OpenAPI documents"));
    &SPECS
}

fn opt<T: std::fmt::Debug + Clone + 'static>(
    s: impl Strategy<Value = T> + 'static,
) -> impl Strategy<Value = Option<T>> {
    prop::option::weighted(0.8, s)
}

fn key() -> BoxedStrategy<String> {
    prop_oneof![
        4 => select(KEYS).prop_map(str::to_owned),
        1 => ".{0,10}",
    ]
    .boxed()
}

fn text() -> BoxedStrategy<String> {
    prop_oneof!["[a-zA-Z0-9.-]{1,20}", ".{0,30}"].boxed()
}

fn resource_id(provider: &'static str) -> BoxedStrategy<String> {
    prop_oneof![
        3 => "[a-z0-9-]{1,20}".prop_map(move |name| format!(
            "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/ml-rg/providers/{provider}/{name}"
        )),
        1 => ".{0,40}",
    ]
    .boxed()
}

/// Secret data: the referenced keys (sometimes), other keys, values that are text, empty or
/// not UTF-8.
fn secret_data() -> impl Strategy<Value = SecretData> {
    let value = prop_oneof![
        4 => ".{0,16}".prop_map(|s| format!("{MARK}{s}").into_bytes()),
        1 => Just(Vec::new()),
        1 => prop::collection::vec(any::<u8>(), 1..8).prop_map(|mut b| {
            // 0xFF is never valid UTF-8.
            b.insert(0, 0xFF);
            b
        }),
    ];
    prop::collection::btree_map(key(), value, 0..5)
        .prop_map(|m| SecretData(m.into_iter().map(|(k, v)| (k, ByteString(v))).collect()))
}

/// Puts usable values under the keys a spec refers to, for the cases where `fill` says so, so
/// that bodies are built often and not only refused.
fn filled(data: &SecretData, keys: &[&str], fill: &[(bool, String)]) -> SecretData {
    let mut data = SecretData(data.0.clone());
    for (key, (yes, value)) in keys.iter().zip(fill) {
        if *yes {
            let value = format!("{MARK}{value}").into_bytes();
            data.0.insert((*key).to_owned(), ByteString(value));
        }
    }
    data
}

fn fill() -> impl Strategy<Value = Vec<(bool, String)>> {
    prop::collection::vec((prop::bool::weighted(0.8), ".{0,12}"), 3)
}

fn common(kind: &str, spec: Value, name: &str) -> Value {
    json!({
        "apiVersion": "attach.azureml.io/v1alpha1",
        "kind": kind,
        "metadata": {"name": name, "namespace": "ns"},
        "spec": spec,
    })
}

/// Mostly one of the two set (what the CRD allows), sometimes both or neither.
fn one_of<T: std::fmt::Debug + Clone + 'static>(
    a: impl Strategy<Value = T> + Clone + 'static,
    b: impl Strategy<Value = T> + Clone + 'static,
) -> impl Strategy<Value = (Option<T>, Option<T>)> {
    prop_oneof![
        2 => a.clone().prop_map(|a| (Some(a), None)),
        2 => b.clone().prop_map(|b| (None, Some(b))),
        1 => (opt(a), opt(b)),
    ]
}

fn ssh_credentials() -> impl Strategy<Value = Value> {
    (key(), one_of(key(), key()), text()).prop_map(|(user, (password, private), secret)| {
        let mut c = json!({"secretRef": {"name": secret}, "usernameKey": user});
        if let Some(p) = password {
            c["passwordKey"] = json!(p);
        }
        if let Some(k) = private {
            c["privateKeyKey"] = json!(k);
        }
        c
    })
}

fn shared() -> impl Strategy<Value = Value> {
    (text(), opt("[a-zA-Z][a-zA-Z0-9-]{2,23}"), any::<bool>()).prop_map(
        |(ws, compute_name, orphan)| {
            let mut s = json!({"workspaceRef": {"name": ws}});
            if let Some(n) = compute_name {
                s["computeName"] = json!(n);
            }
            if orphan {
                s["deletionPolicy"] = json!("Orphan");
            }
            s
        },
    )
}

fn merge(mut base: Value, extra: Value) -> Value {
    if let (Some(b), Value::Object(e)) = (base.as_object_mut(), extra) {
        b.extend(e);
    }
    base
}

fn remote_vm() -> impl Strategy<Value = RemoteVmTarget> {
    (
        shared(),
        one_of(resource_id("Microsoft.Compute/virtualMachines"), text()),
        any::<i32>(),
        ssh_credentials(),
    )
        .prop_map(|(shared, (resource_id, address), port, credentials)| {
            let mut spec = json!({"sshPort": port, "credentials": credentials});
            if let Some(r) = resource_id {
                spec["resourceId"] = json!(r);
            }
            if let Some(a) = address {
                spec["address"] = json!(a);
            }
            from_json(common("RemoteVmTarget", merge(shared, spec), "vm-a"))
        })
}

fn hdinsight() -> impl Strategy<Value = HdInsightTarget> {
    (
        shared(),
        resource_id("Microsoft.HDInsight/clusters"),
        text(),
        any::<i32>(),
        ssh_credentials(),
    )
        .prop_map(|(shared, resource_id, address, port, credentials)| {
            let spec = json!({"resourceId": resource_id, "address": address, "sshPort": port,
                "credentials": credentials});
            from_json(common("HdInsightTarget", merge(shared, spec), "hdi-a"))
        })
}

fn databricks() -> impl Strategy<Value = DatabricksTarget> {
    (
        shared(),
        resource_id("Microsoft.Databricks/workspaces"),
        opt(text()),
        text(),
        key(),
    )
        .prop_map(|(shared, resource_id, url, secret, key)| {
            let mut spec = json!({"resourceId": resource_id,
                "accessTokenSecretRef": {"name": secret, "key": key}});
            if let Some(u) = url {
                spec["workspaceUrl"] = json!(u);
            }
            from_json(common("DatabricksTarget", merge(shared, spec), "dbx-a"))
        })
}

fn batch() -> impl Strategy<Value = BatchTarget> {
    (shared(), resource_id("Microsoft.Batch/batchAccounts")).prop_map(|(shared, resource_id)| {
        let spec = json!({"resourceId": resource_id});
        from_json(common("BatchTarget", merge(shared, spec), "batch-a"))
    })
}

fn data_lake_analytics() -> impl Strategy<Value = DataLakeAnalyticsTarget> {
    (
        shared(),
        resource_id("Microsoft.DataLakeAnalytics/accounts"),
    )
        .prop_map(|(shared, resource_id)| {
            let spec = json!({"resourceId": resource_id});
            from_json(common(
                "DataLakeAnalyticsTarget",
                merge(shared, spec),
                "adla-a",
            ))
        })
}

/// An optional compute identity, in both forms.
fn identity() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        Just(json!({"type": "SystemAssigned"})),
        prop::collection::vec("[a-z]{1,8}", 1..3).prop_map(|names| json!({
            "type": "UserAssigned",
            "userAssignedIdentities": names.iter().map(|n| format!(
                "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/ml-rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{n}"
            )).collect::<Vec<_>>()
        })),
    ]
}

fn kubernetes() -> impl Strategy<Value = KubernetesTarget> {
    (
        shared(),
        resource_id("Microsoft.ContainerService/managedClusters"),
        "[a-z][a-z0-9-]{0,10}",
        prop::collection::btree_map(
            "[a-z]{1,6}",
            (
                prop::option::of(prop::collection::btree_map(
                    "[a-z]{1,6}",
                    "[a-z0-9]{1,6}",
                    0..3,
                )),
                prop::option::of(prop::collection::btree_map(
                    "cpu|memory|nvidia[.]com/gpu",
                    "[0-9]{1,2}(Gi)?",
                    0..3,
                )),
            ),
            0..3,
        ),
        identity(),
    )
        .prop_map(|(shared, resource_id, namespace, types, identity)| {
            let instance_types: serde_json::Map<String, Value> = types
                .into_iter()
                .map(|(name, (selector, limits))| {
                    (
                        name,
                        json!({"nodeSelector": selector, "resources": {"limits": limits}}),
                    )
                })
                .collect();
            let mut spec = json!({"resourceId": resource_id, "namespace": namespace});
            if let Some(first) = instance_types.keys().next() {
                spec["defaultInstanceType"] = json!(first);
                spec["instanceTypes"] = Value::Object(instance_types.clone());
            }
            if !identity.is_null() {
                spec["identity"] = identity;
            }
            from_json(common("KubernetesTarget", merge(shared, spec), "aks-a"))
        })
}

fn synapse_spark() -> impl Strategy<Value = SynapseSparkTarget> {
    (
        shared(),
        resource_id("Microsoft.Synapse/workspaces/syn-1/bigDataPools"),
        identity(),
    )
        .prop_map(|(shared, resource_id, identity)| {
            let mut spec = json!({"resourceId": resource_id});
            if !identity.is_null() {
                spec["identity"] = identity;
            }
            from_json(common("SynapseSparkTarget", merge(shared, spec), "syn-a"))
        })
}

fn from_json<K: serde::de::DeserializeOwned>(v: Value) -> K {
    serde_json::from_value(v).expect("generated objects follow the CRD's shape")
}

/// The PUT body the reconciler sends (`reconcile.rs`, attach).
fn body<K: AttachTarget>(obj: &K, properties: Option<ComputeProperties>) -> ComputeResource {
    let mut compute = Compute::new(K::compute_type(), obj.underlying().resource_id());
    compute.properties = properties;
    ComputeResource {
        location: Some("westeurope".into()),
        identity: obj.identity(),
        properties: Some(compute),
        ..Default::default()
    }
}

/// The text of a Secret value, if the builder could use it.
fn text_of(data: &SecretData, key: &str) -> Option<String> {
    let v = data.0.get(key)?;
    String::from_utf8(v.0.clone())
        .ok()
        .filter(|s| !s.is_empty())
}

/// Checks shared by every kind; returns the wire body when one was built.
fn check<K: AttachTarget>(
    obj: &K,
    data: Option<&SecretData>,
) -> Result<Option<Value>, TestCaseError> {
    let built = obj.build_properties(data);
    let properties = match built {
        Err(e) => {
            let shown = format!("{e} {e:?}");
            prop_assert!(!shown.contains(MARK), "{}", shown);
            if data.is_none() && obj.secret_name().is_some() {
                prop_assert!(matches!(e, BuildError::InvalidSpec(_)), "{:?}", e);
            }
            return Ok(None);
        }
        Ok(p) => p,
    };
    let shape_ok = matches!(
        (K::compute_type(), &properties),
        (
            ComputeType::VirtualMachine,
            Some(ComputeProperties::VirtualMachine(_))
        ) | (
            ComputeType::HdInsight,
            Some(ComputeProperties::HdInsight(_))
        ) | (
            ComputeType::Databricks,
            Some(ComputeProperties::Databricks(_))
        ) | (
            ComputeType::Kubernetes,
            Some(ComputeProperties::Kubernetes(_))
        ) | (
            ComputeType::Batch | ComputeType::DataLakeAnalytics | ComputeType::SynapseSpark,
            None
        )
    );
    prop_assert!(shape_ok, "{} built {:?}", K::KIND, properties);
    let body = body(obj, properties);
    // The user name comes from the Secret too but is not a secret (`Debug` shows it).
    let username = body
        .properties
        .as_ref()
        .and_then(|c| match c.properties.as_ref()? {
            ComputeProperties::VirtualMachine(p) => p.administrator_account.as_ref(),
            ComputeProperties::HdInsight(p) => p.administrator_account.as_ref(),
            _ => None,
        })
        .and_then(|a| a.username.clone())
        .filter(|u| !u.is_empty());
    let mut shown = format!("{body:?}");
    if let Some(u) = username {
        shown = shown.replace(&format!("{u:?}"), "<username>");
    }
    prop_assert!(!shown.contains(MARK), "{}", shown);
    let wire = serde_json::to_value(&body).expect("bodies serialize");
    prop_assert_eq!(
        &wire["properties"]["computeType"],
        &json!(K::compute_type().as_str())
    );
    match obj.underlying() {
        Underlying::ResourceId(id) => {
            prop_assert_eq!(&wire["properties"]["resourceId"], &json!(id));
        }
        Underlying::Address(a) => {
            prop_assert!(wire["properties"].get("resourceId").is_none(), "{}", wire);
            prop_assert_eq!(&wire["properties"]["properties"]["address"], &json!(a));
        }
    }
    if let Err(e) = specs().validate_definition("ComputeResource", &wire, Options::default()) {
        return Err(TestCaseError::fail(format!(
            "{}: invalid per the spec at {}: {}",
            K::KIND,
            e.path,
            e.message
        )));
    }
    let back: ComputeResource = serde_json::from_value(wire.clone()).expect("reads back");
    prop_assert_eq!(back.compute_type(), Some(&K::compute_type()));
    prop_assert_eq!(
        back.resource_id().map(str::to_owned),
        obj.underlying().resource_id()
    );
    prop_assert_eq!(
        serde_json::to_value(&back).expect("serializes"),
        wire.clone()
    );
    Ok(Some(wire))
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("regressions"))),
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn remote_vm_bodies(obj in remote_vm(), data in secret_data(), fill in fill()) {
        let c = &obj.spec.credentials;
        let keys = [
            c.username_key.as_str(),
            c.password_key.as_deref().unwrap_or_default(),
            c.private_key_key.as_deref().unwrap_or_default(),
        ];
        let data = filled(&data, &keys, &fill);
        check(&obj, None)?;
        let Some(wire) = check(&obj, Some(&data))? else {
            // Refused: exactly the specs the CRD rules refuse, or Secret data that cannot work.
            return Ok(());
        };
        prop_assert!(obj.spec.resource_id.is_some() != obj.spec.address.is_some());
        let account = &wire["properties"]["properties"]["administratorAccount"];
        prop_assert_eq!(&account["username"], &json!(text_of(&data, &c.username_key)));
        match (&c.password_key, &c.private_key_key) {
            (Some(k), None) => prop_assert_eq!(&account["password"], &json!(text_of(&data, k))),
            (None, Some(k)) => {
                prop_assert_eq!(&account["privateKeyData"], &json!(text_of(&data, k)));
            }
            other => prop_assert!(false, "built with credentials {:?}", other),
        }
        prop_assert_eq!(&wire["properties"]["properties"]["sshPort"], &json!(obj.spec.ssh_port));
    }

    #[test]
    fn hdinsight_bodies(obj in hdinsight(), data in secret_data(), fill in fill()) {
        let c = &obj.spec.credentials;
        let keys = [
            c.username_key.as_str(),
            c.password_key.as_deref().unwrap_or_default(),
            c.private_key_key.as_deref().unwrap_or_default(),
        ];
        let data = filled(&data, &keys, &fill);
        check(&obj, None)?;
        if let Some(wire) = check(&obj, Some(&data))? {
            let props = &wire["properties"]["properties"];
            prop_assert_eq!(&props["address"], &json!(obj.spec.address));
            let user = text_of(&data, &obj.spec.credentials.username_key);
            prop_assert_eq!(&props["administratorAccount"]["username"], &json!(user));
        }
    }

    #[test]
    fn databricks_bodies(obj in databricks(), data in secret_data(), fill in fill()) {
        let r = &obj.spec.access_token_secret_ref;
        let data = filled(&data, &[r.key.as_str()], &fill);
        check(&obj, None)?;
        match check(&obj, Some(&data))? {
            Some(wire) => {
                let props = &wire["properties"]["properties"];
                prop_assert_eq!(&props["databricksAccessToken"], &json!(text_of(&data, &r.key)));
                prop_assert_eq!(
                    props.get("workspaceUrl").cloned().unwrap_or(Value::Null),
                    json!(obj.spec.workspace_url)
                );
            }
            None => prop_assert!(text_of(&data, &r.key).is_none(), "refused a usable token"),
        }
        // The token is read through the redacting type, whatever the bytes.
        if let Ok(Some(ComputeProperties::Databricks(p))) = obj.build_properties(Some(&data)) {
            let token = p.databricks_access_token.as_ref().map(|t| t.expose_secret().to_owned());
            prop_assert_eq!(token, text_of(&data, &r.key));
        }
    }

    /// A Kubernetes body carries the namespace and the instance types as the spec says, and the
    /// identity on the compute resource; it never carries the connection strings Azure fills in.
    #[test]
    fn kubernetes_bodies(obj in kubernetes()) {
        let wire = check(&obj, None)?.ok_or_else(|| TestCaseError::fail("refused a Kubernetes target"))?;
        let props = &wire["properties"]["properties"];
        prop_assert_eq!(&props["namespace"], &json!(obj.spec.namespace));
        prop_assert_eq!(
            props.get("defaultInstanceType").cloned().unwrap_or(Value::Null),
            json!(obj.spec.default_instance_type)
        );
        let types = obj.spec.instance_types.clone().unwrap_or_default();
        for (name, t) in &types {
            prop_assert_eq!(
                props["instanceTypes"][name].get("nodeSelector").cloned().unwrap_or(Value::Null),
                json!(t.node_selector)
            );
        }
        prop_assert!(props.get("relayConnectionString").is_none());
        prop_assert!(props.get("serviceBusConnectionString").is_none());
        identity_matches(&wire, obj.spec.identity.as_ref())?;
    }

    /// A Synapse Spark body is the pool's id and the identity, nothing else.
    #[test]
    fn synapse_spark_bodies(obj in synapse_spark()) {
        let wire = check(&obj, None)?.ok_or_else(|| TestCaseError::fail("refused a Synapse target"))?;
        prop_assert!(wire["properties"].get("properties").is_none(), "{}", wire);
        prop_assert_eq!(&wire["properties"]["resourceId"], &json!(obj.spec.resource_id));
        identity_matches(&wire, obj.spec.identity.as_ref())?;
    }

    /// Kinds with no Secret and no type-specific properties always build.
    #[test]
    fn resource_id_only_bodies(b in batch(), d in data_lake_analytics(), data in secret_data()) {
        for wire in [check(&b, None)?, check(&b, Some(&data))?, check(&d, None)?, check(&d, Some(&data))?] {
            let wire = wire.ok_or_else(|| TestCaseError::fail("refused a resourceId-only kind"))?;
            prop_assert!(wire["properties"].get("properties").is_none(), "{}", wire);
        }
    }
}

fn identity_matches(
    wire: &Value,
    spec: Option<&azureml_attach::api::ComputeIdentity>,
) -> Result<(), TestCaseError> {
    match spec {
        None => prop_assert!(wire.get("identity").is_none(), "{}", wire),
        Some(i) => {
            let ty = match i.type_ {
                azureml_attach::api::IdentityType::SystemAssigned => "SystemAssigned",
                azureml_attach::api::IdentityType::UserAssigned => "UserAssigned",
            };
            prop_assert_eq!(&wire["identity"]["type"], &json!(ty));
            for id in i.user_assigned_identities.iter().flatten() {
                prop_assert!(
                    wire["identity"]["userAssignedIdentities"].get(id).is_some(),
                    "{}",
                    wire
                );
            }
        }
    }
    Ok(())
}

#[test]
fn every_target_kind_has_a_strategy() {
    // A reminder to add a strategy above when a kind is added (api::all_crds lists them).
    let mut kinds: Vec<String> = azureml_attach::api::all_crds()
        .iter()
        .map(|crd| crd.spec.names.kind.clone())
        .filter(|kind| kind != "MLWorkspace")
        .collect();
    kinds.sort();
    let mut covered = [
        RemoteVmTarget::KIND,
        HdInsightTarget::KIND,
        DatabricksTarget::KIND,
        BatchTarget::KIND,
        DataLakeAnalyticsTarget::KIND,
        KubernetesTarget::KIND,
        SynapseSparkTarget::KIND,
    ];
    covered.sort_unstable();
    assert_eq!(kinds, covered, "a target kind without a property test");
}
