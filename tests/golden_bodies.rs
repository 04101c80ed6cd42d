//! Per kind, the PUT body the operator sends for each sample in `deploy/samples/`, compared with
//! a golden file in `tests/fixtures/golden/` and checked against the OpenAPI spec (the
//! emulator's validator). A change of a body builder shows as a diff here.
//!
//! Regenerate after an intended change: `UPDATE_GOLDEN=1 cargo test --test golden_bodies`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use azureml_attach::api::TargetCommon;
use azureml_attach::controller::kinds::{KindVisitor, for_each_kind};
use azureml_attach::controller::target::{AttachTarget, SecretData, attach_body};
use azureml_emulator::validate::{Options, Specs};
use k8s_openapi::ByteString;
use kube::CustomResourceExt;
use serde_json::Value;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every document of every sample file.
fn sample_documents() -> Vec<Value> {
    let mut files: Vec<_> = std::fs::read_dir(repo().join("deploy/samples"))
        .expect("deploy/samples")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    let mut docs = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).expect("sample");
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let v: Value = serde::Deserialize::deserialize(doc).expect("sample YAML");
            if !v.is_null() {
                docs.push(v);
            }
        }
    }
    docs
}

/// The samples' Secrets (stringData as the API server would store it in data).
fn secrets(docs: &[Value]) -> BTreeMap<String, SecretData> {
    docs.iter()
        .filter(|d| d["kind"] == "Secret")
        .map(|d| {
            let data = d["stringData"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, v)| {
                    let text = v.as_str().expect("string value").as_bytes().to_vec();
                    (k.clone(), ByteString(text))
                })
                .collect();
            (
                d["metadata"]["name"].as_str().expect("name").to_owned(),
                SecretData(data),
            )
        })
        .collect()
}

fn check<K: AttachTarget>(docs: &[Value], secrets: &BTreeMap<String, SecretData>) -> usize {
    let specs = Specs::load().expect("the embedded OpenAPI documents");
    let mut seen = 0;
    for doc in docs.iter().filter(|d| d["kind"] == K::KIND) {
        let obj: K = serde_json::from_value(doc.clone()).expect("sample parses as its kind");
        let name = doc["metadata"]["name"].as_str().expect("name");
        let secret = obj.secret_name().map(|s| {
            secrets
                .get(s)
                .unwrap_or_else(|| panic!("{name}: Secret {s} is not in the samples"))
        });
        let body = attach_body(&obj, secret, Some("westeurope".to_owned()))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let wire = serde_json::to_value(&body).expect("serialize");
        if let Err(e) = specs.validate_definition("ComputeResource", &wire, Options::default()) {
            panic!("{name}: the body breaks the spec: {e:?}\n{wire:#}");
        }
        let text = serde_json::to_string_pretty(&wire).expect("json") + "\n";
        let golden = repo()
            .join("tests/fixtures/golden")
            .join(format!("{}-{name}.json", K::KIND));
        compare(&golden, &text);
        seen += 1;
    }
    seen
}

fn compare(golden: &Path, actual: &str) {
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(golden.parent().expect("parent")).expect("mkdir");
        std::fs::write(golden, actual).expect("write golden");
        return;
    }
    let expected = std::fs::read_to_string(golden).unwrap_or_else(|_| {
        panic!(
            "{} is missing: run UPDATE_GOLDEN=1 cargo test --test golden_bodies",
            golden.display()
        )
    });
    assert_eq!(
        expected,
        actual,
        "{} differs (if intended: UPDATE_GOLDEN=1 cargo test --test golden_bodies)",
        golden.display()
    );
}

/// The spec fields of `K` outside [`TargetCommon`], as the CRD shows them to users.
fn own_fields<K: CustomResourceExt>() -> Vec<String> {
    let crd = K::crd();
    let schema = crd.spec.versions[0]
        .schema
        .as_ref()
        .and_then(|s| s.open_api_v3_schema.as_ref())
        .expect("a schema");
    let spec = &schema.properties.as_ref().expect("properties")["spec"];
    let mut fields: Vec<String> = spec
        .properties
        .as_ref()
        .expect("spec properties")
        .keys()
        .filter(|k| !TargetCommon::FIELDS.contains(&k.as_str()))
        .cloned()
        .collect();
    fields.sort();
    fields
}

/// Runs the checks for every kind of the registry.
struct EveryKind {
    docs: Vec<Value>,
    secrets: BTreeMap<String, SecretData>,
    seen: Vec<(&'static str, usize)>,
}

impl KindVisitor for EveryKind {
    fn visit<K: AttachTarget + CustomResourceExt + Unpin>(&mut self) {
        let n = check::<K>(&self.docs, &self.secrets);
        self.seen.push((K::KIND, n));
        // The fingerprint covers exactly the kind's own spec: a field added to a kind and
        // forgotten in `attach_fingerprint` would never re-attach when it changes.
        for doc in self.docs.iter().filter(|d| d["kind"] == K::KIND) {
            let obj: K = serde_json::from_value(doc.clone()).expect("sample parses as its kind");
            let print = obj.attach_fingerprint();
            let mut keys: Vec<String> = print
                .as_object()
                .expect("a fingerprint is an object")
                .keys()
                .cloned()
                .collect();
            keys.sort();
            assert_eq!(
                keys,
                own_fields::<K>(),
                "{}: attach_fingerprint must hash the kind's own spec fields, all of them",
                K::KIND
            );
        }
    }
}

#[test]
fn every_sample_target_puts_its_golden_body_and_its_fingerprint_covers_its_own_spec() {
    let docs = sample_documents();
    let secrets = secrets(&docs);
    let mut every = EveryKind {
        docs,
        secrets,
        seen: Vec::new(),
    };
    for_each_kind(&mut every);
    assert!(!every.seen.is_empty(), "the registry has no kinds");
    for (kind, n) in every.seen {
        assert!(n > 0, "no sample of {kind} in deploy/samples");
    }
}
