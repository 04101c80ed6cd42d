//! Property tests of the body validator (`validate.rs`) on mutated valid bodies: the example
//! bodies the other tests use, with fields dropped, set to null, given another type, out of
//! range, nested deep, or joined by unknown fields.
//!
//! Never a panic; a mutation that makes the body invalid per the spec is an error naming the
//! field; one that keeps it valid is still accepted. The last test sends mutated bodies
//! through the whole PUT handler.

mod common;

use std::sync::LazyLock;

use azureml_emulator::validate::{Options, Specs, ValidationError};
use common::*;
use proptest::prelude::*;
use proptest::sample::{Index, select};
use proptest::test_runner::FileFailurePersistence;
use serde_json::{Map, Value, json};

static SPECS: LazyLock<Specs> = LazyLock::new(|| Specs::load().expect("embedded documents"));

/// Valid attach bodies: every kind the operator sends (as the emulator tests send them, the
/// VM one with the extras ASO sends, FINDINGS §1) and the spec's own examples.
fn bases() -> Vec<Value> {
    let mut bases = vec![
        json!({"location": "westeurope", "identity": {"type": "SystemAssigned"},
            "sku": {"name": "Standard_S1", "tier": "Free"},
            "properties": {"computeType": "VirtualMachine", "resourceId": VM1,
                "disableLocalAuth": true, "description": "d", "computeLocation": "westeurope",
                "properties": {"sshPort": 22, "address": "10.0.0.4",
                    "administratorAccount": {"username": "azureuser", "password": "p"}}}}),
        json!({"properties": {"computeType": "VirtualMachine", "resourceId": VM2,
            "properties": {"sshPort": 22, "administratorAccount":
                {"username": "azureuser", "privateKeyData": "-----BEGIN KEY-----"}}}}),
        json!({"properties": {"computeType": "HDInsight", "resourceId": HDI,
            "properties": {"address": "spark-1-ssh.azurehdinsight.net", "sshPort": 22,
                "administratorAccount": {"username": "sshuser", "password": "p"}}}}),
        json!({"location": "westeurope", "properties": {"computeType": "Batch", "resourceId": BATCH}}),
        json!({"properties": {"computeType": "Databricks", "resourceId": DBW,
            "properties": {"databricksAccessToken": "dapi-0", "workspaceUrl": "adb-1.7.azuredatabricks.net"}}}),
        json!({"properties": {"computeType": "DataLakeAnalytics", "resourceId": ADLA,
            "properties": {"dataLakeStoreAccountName": "store"}}}),
        json!({"tags": {"team": "ml"}, "properties": {"computeType": "AmlCompute"}}),
        // Kubernetes as the operator sends it: an Arc cluster, a user-assigned identity.
        json!({"location": "westeurope",
            "identity": {"type": "UserAssigned", "userAssignedIdentities": {UAI: {}}},
            "properties": {"computeType": "Kubernetes", "resourceId": ARC,
                "properties": {"namespace": "ml", "defaultInstanceType": "cpu",
                    "extensionInstanceReleaseTrain": "stable",
                    "instanceTypes": {"cpu": {"nodeSelector": {"pool": "cpu"},
                        "resources": {"requests": {"cpu": "1", "memory": "4Gi"},
                            "limits": {"cpu": "2", "memory": "8Gi", "nvidia.com/gpu": "1"}}}}}}}),
        // SynapseSpark as terraform sends it (CONTRACT §2): no type-specific properties.
        json!({"location": "westeurope", "identity": {"type": "SystemAssigned"},
            "properties": {"computeType": "SynapseSpark", "resourceId": SPARK_POOL,
                "computeLocation": "westeurope", "description": "d", "disableLocalAuth": true}}),
        json!({"properties": {"computeType": "SynapseSpark", "resourceId": SPARK_POOL,
            "properties": {"nodeCount": 3, "sparkVersion": "3.4", "nodeSize": "Medium",
                "autoScaleProperties": {"minNodeCount": 3, "enabled": true, "maxNodeCount": 10},
                "autoPauseProperties": {"delayInMinutes": 15, "enabled": true}}}}),
    ];
    let examples = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/examples/createOrUpdate"
    );
    for name in [
        "AKSCompute",
        "BasicAKSCompute",
        "BasicDataFactoryCompute",
        "KubernetesCompute",
    ] {
        let text = std::fs::read_to_string(format!("{examples}/{name}.json")).expect("example");
        let example: Value = serde_json::from_str(&text).expect("example JSON");
        bases.push(example["parameters"]["parameters"].clone());
    }
    bases
}

static BASES: LazyLock<Vec<Value>> = LazyLock::new(bases);

/// Fields the spec requires when their parent is present.
const REQUIRED: &[&str] = &["properties.computeType", "identity.type", "sku.name"];
/// Objects whose unknown members the spec leaves alone (not maps with typed values).
const OPEN_OBJECTS: &[&str] = &[
    "",
    "properties",
    "properties.properties",
    "properties.properties.administratorAccount",
    "identity",
    "sku",
];
/// int32 fields of the bases.
const INT32: &[&str] = &[
    "properties.properties.sshPort",
    "properties.properties.agentCount",
    "properties.properties.nodeCount",
    "properties.properties.autoScaleProperties.minNodeCount",
    "properties.properties.autoPauseProperties.delayInMinutes",
];

fn validate(v: &Value, reject_unknown: bool) -> Result<(), ValidationError> {
    SPECS.validate_definition("ComputeResource", v, Options { reject_unknown })
}

/// Every (dotted path, value) in a body, objects included, root excluded.
fn paths(v: &Value) -> Vec<(Vec<String>, Value)> {
    fn walk(v: &Value, at: &mut Vec<String>, out: &mut Vec<(Vec<String>, Value)>) {
        if let Value::Object(map) = v {
            for (k, child) in map {
                at.push(k.clone());
                out.push((at.clone(), child.clone()));
                walk(child, at, out);
                at.pop();
            }
        }
    }
    let mut out = Vec::new();
    walk(v, &mut Vec::new(), &mut out);
    out
}

/// Every path in a body, without cloning the values (bodies may be nested hundreds deep).
fn keys(v: &Value) -> Vec<Vec<String>> {
    fn walk(v: &Value, at: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
        if let Value::Object(map) = v {
            for (k, child) in map {
                at.push(k.clone());
                out.push(at.clone());
                walk(child, at, out);
                at.pop();
            }
        }
    }
    let mut out = Vec::new();
    walk(v, &mut Vec::new(), &mut out);
    out
}

fn dotted(path: &[String]) -> String {
    path.join(".")
}

fn slot<'a>(v: &'a mut Value, path: &[String]) -> Option<&'a mut Value> {
    path.iter().try_fold(v, |v, k| v.get_mut(k))
}

fn set(v: &mut Value, path: &[String], new: Value) {
    if let Some(s) = slot(v, path) {
        *s = new;
    }
}

fn remove(v: &mut Value, path: &[String]) {
    if let Some((last, parent)) = path.split_last()
        && let Some(Value::Object(map)) = slot(v, parent)
    {
        map.remove(last);
    }
}

/// Whether the spec requires `path` (its parent being present).
fn is_required(path: &[String]) -> bool {
    REQUIRED.contains(&dotted(path).as_str())
}

fn arb_json() -> BoxedStrategy<Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter_map("finite", |f| serde_json::Number::from_f64(f)
            .map(Value::Number)),
        Just(json!(1e308)),
        Just(json!(-1e308)),
        ".{0,20}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec(("[a-zA-Z]{0,10}", inner), 0..4)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
    .boxed()
}

/// A value nested `depth` levels deep in arrays or objects. (Not with `json!`: it serializes
/// what it interpolates, which makes deep nesting quadratic.)
fn nested(depth: usize, objects: bool, core: Value) -> Value {
    (0..depth).fold(core, |v, _| {
        if objects {
            Value::Object(Map::from_iter([("properties".to_owned(), v)]))
        } else {
            Value::Array(vec![v])
        }
    })
}

/// A value of another JSON type than `v` (never null).
fn other_type(v: &Value, pick: usize) -> Value {
    let candidates = [
        json!("text"),
        json!(22),
        json!(2.5),
        json!(true),
        json!([1]),
        json!({"a": 1}),
    ];
    let same = |c: &Value| match (v, c) {
        (Value::String(_), Value::String(_)) | (Value::Bool(_), Value::Bool(_)) => true,
        (Value::Array(_), Value::Array(_)) | (Value::Object(_), Value::Object(_)) => true,
        // Integers are valid numbers; floats in integer fields are `ranges_and_depth`'s job.
        (Value::Number(_), Value::Number(_)) => true,
        _ => false,
    };
    let others: Vec<&Value> = candidates.iter().filter(|c| !same(c)).collect();
    others[pick % others.len()].clone()
}

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("regressions"))),
        ..ProptestConfig::default()
    }
}

#[derive(Clone, Debug)]
enum Mutation {
    Drop(Index),
    Null(Index),
    Replace(Index, Value),
    Insert(Index, String, Value),
    Nest(Index, usize, bool),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        any::<Index>().prop_map(Mutation::Drop),
        any::<Index>().prop_map(Mutation::Null),
        (any::<Index>(), arb_json()).prop_map(|(i, v)| Mutation::Replace(i, v)),
        (any::<Index>(), "[a-zA-Z]{1,10}", arb_json())
            .prop_map(|(i, k, v)| Mutation::Insert(i, k, v)),
        (any::<Index>(), 1usize..300, any::<bool>()).prop_map(|(i, d, o)| Mutation::Nest(i, d, o)),
    ]
}

fn apply(body: &mut Value, m: &Mutation) {
    let all = keys(body);
    let pick = |i: &Index| (!all.is_empty()).then(|| all[i.index(all.len())].clone());
    match m {
        Mutation::Drop(i) => {
            if let Some(p) = pick(i) {
                remove(body, &p);
            }
        }
        Mutation::Null(i) => {
            if let Some(p) = pick(i) {
                set(body, &p, Value::Null);
            }
        }
        Mutation::Replace(i, v) => {
            if let Some(p) = pick(i) {
                set(body, &p, v.clone());
            }
        }
        Mutation::Insert(i, k, v) => {
            let target = pick(i).unwrap_or_default();
            if let Some(Value::Object(map)) = slot(body, &target) {
                map.insert(k.clone(), v.clone());
            } else if let Value::Object(map) = body {
                map.insert(k.clone(), v.clone());
            }
        }
        Mutation::Nest(i, depth, objects) => {
            if let Some(p) = pick(i)
                && let Some(s) = slot(body, &p)
            {
                *s = nested(*depth, *objects, s.take());
            }
        }
    }
}

#[test]
fn the_bases_are_valid() {
    for base in BASES.iter() {
        validate(base, false).unwrap_or_else(|e| panic!("{base}: {e:?}"));
    }
}

/// Every single drop and null of every field of every base (a finite space: all of it, not a
/// sample). Optional fields may go; a required one is refused by name.
#[test]
fn dropping_and_nulling_every_field() {
    for base in BASES.iter() {
        for (path, _) in paths(base) {
            for null in [false, true] {
                let mut body = base.clone();
                if null {
                    set(&mut body, &path, Value::Null);
                } else {
                    remove(&mut body, &path);
                }
                match validate(&body, false) {
                    Ok(()) => assert!(
                        !is_required(&path),
                        "{body} accepted without {}",
                        dotted(&path)
                    ),
                    Err(e) => {
                        assert!(is_required(&path), "{}: {e:?}", dotted(&path));
                        assert_eq!(e.path, dotted(&path));
                    }
                }
            }
        }
    }
}

/// Every field of every base given every other JSON type: refused, naming the field.
#[test]
fn every_field_of_another_type_is_refused() {
    let mut checked = 0;
    for base in BASES.iter() {
        for (path, old) in paths(base).into_iter().filter(|(_, v)| !v.is_null()) {
            for pick in 0..6 {
                let new = other_type(&old, pick);
                let mut body = base.clone();
                set(&mut body, &path, new.clone());
                let e = validate(&body, false)
                    .expect_err(&format!("{}: {old} -> {new} accepted", dotted(&path)));
                assert_eq!(e.path, dotted(&path), "{old} -> {new}: {}", e.message);
                checked += 1;
            }
        }
    }
    assert!(checked > 200, "{checked}");
}

proptest! {
    #![proptest_config(config(256))]

    /// Any sequence of mutations: an answer, never a panic, with either option.
    #[test]
    fn mutated_bodies_never_panic(
        base in any::<Index>(),
        mutations in prop::collection::vec(mutation(), 1..6),
        reject_unknown in any::<bool>(),
    ) {
        let mut body = BASES[base.index(BASES.len())].clone();
        for m in &mutations {
            apply(&mut body, m);
        }
        let _ = validate(&body, reject_unknown);
        // And as the emulator receives it: bytes, parsed with serde_json's depth limit.
        let bytes = serde_json::to_vec(&body).expect("serializes");
        if let Ok(parsed) = serde_json::from_slice::<Value>(&bytes) {
            let _ = validate(&parsed, reject_unknown);
        }
    }

    /// Arbitrary JSON in place of the whole body or of its `properties`.
    #[test]
    fn arbitrary_json_never_panics(v in arb_json(), ty in prop::option::of(".{0,12}")) {
        let _ = validate(&v, false);
        let mut v = v;
        if let (Some(t), Value::Object(map)) = (ty, &mut v) {
            map.insert("computeType".into(), json!(t));
        }
        let wrapped = json!({"properties": v});
        let _ = validate(&wrapped, true);
    }

    /// Unknown members are ignored like ARM does, and refused by name with `reject_unknown`.
    #[test]
    fn unknown_members(base in any::<Index>(), at in select(OPEN_OBJECTS), key in "zz[a-zA-Z]{0,8}", v in arb_json()) {
        let mut body = BASES[base.index(BASES.len())].clone();
        let path: Vec<String> = at.split('.').filter(|s| !s.is_empty()).map(str::to_owned).collect();
        let Some(Value::Object(map)) = slot(&mut body, &path) else {
            return Ok(());
        };
        map.insert(key.clone(), v);
        prop_assert_eq!(validate(&body, false), Ok(()));
        let e = validate(&body, true).expect_err("an unknown member with reject_unknown");
        let mut full = path.clone();
        full.push(key);
        prop_assert_eq!(e.path, dotted(&full));
    }

    /// int32 fields refuse what does not fit, and deep nesting in a typed field is refused.
    #[test]
    fn ranges_and_depth(
        base in any::<Index>(),
        big in prop_oneof![
            (i64::from(i32::MAX) + 1..=i64::MAX).prop_map(Value::from),
            (i64::MIN..i64::from(i32::MIN)).prop_map(Value::from),
            Just(json!(u64::MAX)),
            Just(json!(1e300)),
        ],
        depth in 1usize..400,
        objects in any::<bool>(),
    ) {
        let base = &BASES[base.index(BASES.len())];
        for (path, _) in paths(base).iter().filter(|(p, _)| INT32.contains(&dotted(p).as_str())) {
            let mut body = base.clone();
            set(&mut body, path, big.clone());
            let e = validate(&body, false).expect_err("out of int32 range");
            prop_assert_eq!(e.path, dotted(path));
            let mut deep = base.clone();
            set(&mut deep, path, nested(depth, objects, json!(22)));
            let e = validate(&deep, false).expect_err("an object or array for an integer");
            prop_assert_eq!(e.path, dotted(path));
        }
    }
}

proptest! {
    #![proptest_config(config(64))]

    /// The whole PUT handler on mutated bodies: an ARM answer (2xx or 4xx), never a 5xx and
    /// never a dropped connection (a panicking handler would drop it).
    #[test]
    fn the_put_handler_answers_every_mutated_body(
        base in any::<Index>(),
        mutations in prop::collection::vec(mutation(), 0..4),
        name in "[a-z][a-z0-9]{2,10}x",
    ) {
        let mut body = BASES[base.index(BASES.len())].clone();
        for m in &mutations {
            apply(&mut body, m);
        }
        let (status, code) = RUNTIME.block_on(async {
            let e = ENV.get_or_init(|| async { env().await }).await;
            let r = e.put(&compute_path(&name), &body).await;
            (r.status, r.code().to_owned())
        });
        prop_assert!(status.is_success() || status.is_client_error(), "{} {}: {}", status, code, body);
        if validate(&body, false).is_err() {
            prop_assert_eq!(status.as_u16(), 400, "{}", body);
        }
    }
}

static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a runtime")
});
static ENV: tokio::sync::OnceCell<Env> = tokio::sync::OnceCell::const_new();
