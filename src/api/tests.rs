//! The CRDs' CEL rules, evaluated client-side (kube's `cel` feature) without an API server.
//! The e2e test `bad_manifests_are_refused_with_readable_messages` checks the same rules on a
//! real API server.

use kube::core::cel::{validate_cel, validate_cel_update};
use serde_json::json;

use super::*;

const VM1: &str = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/ml-rg/providers/Microsoft.Compute/virtualMachines/dsvm-1";
const VM2: &str = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/ml-rg/providers/Microsoft.Compute/virtualMachines/dsvm-2";

fn vm(name: &str, spec: serde_json::Value) -> RemoteVmTarget {
    serde_json::from_value(json!({
        "apiVersion": "attach.azureml.io/v1alpha1",
        "kind": "RemoteVmTarget",
        "metadata": {"name": name, "namespace": "ns"},
        "spec": spec,
    }))
    .unwrap()
}

fn good_spec() -> serde_json::Value {
    json!({
        "workspaceRef": {"name": "ws"},
        "resourceId": VM1,
        "sshPort": 22,
        "credentials": {"secretRef": {"name": "ssh"}, "passwordKey": "password"},
    })
}

fn refused(obj: &RemoteVmTarget, needle: &str) {
    let err = validate_cel(obj).expect_err("should be refused");
    let text = format!("{err:?}");
    assert!(text.contains(needle), "expected {needle:?} in {text}");
}

#[test]
fn a_good_remote_vm_passes() {
    validate_cel(&vm("gpu-dsvm", good_spec())).unwrap();
}

#[test]
fn exactly_one_credential_form() {
    let mut spec = good_spec();
    spec["credentials"]["privateKeyKey"] = json!("privateKey");
    refused(
        &vm("gpu-dsvm", spec.clone()),
        "exactly one of credentials.passwordKey",
    );
    spec["credentials"] = json!({"secretRef": {"name": "ssh"}});
    refused(
        &vm("gpu-dsvm", spec),
        "exactly one of credentials.passwordKey",
    );
}

#[test]
fn azure_compute_name_rule() {
    let mut spec = good_spec();
    spec["computeName"] = json!("dsvm-1");
    refused(&vm("gpu-dsvm", spec.clone()), "not end in -<digits>");
    spec["computeName"] = json!("dsvm-v1");
    validate_cel(&vm("gpu-dsvm", spec)).unwrap();
    // metadata.name is the default compute name, so it must follow the rule too...
    refused(&vm("vm.with.dots", good_spec()), "set spec.computeName");
    refused(&vm("dsvm-2", good_spec()), "set spec.computeName");
    // ...unless computeName is set.
    let mut spec = good_spec();
    spec["computeName"] = json!("dsvm");
    validate_cel(&vm("vm.with.dots", spec)).unwrap();
}

#[test]
fn arm_id_pattern_per_kind() {
    let mut spec = good_spec();
    spec["resourceId"] = json!(
        "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/ml-rg/providers/Microsoft.Batch/batchAccounts/b"
    );
    refused(&vm("gpu-dsvm", spec.clone()), "virtual machine's ARM id");
    // ARM ids are case-insensitive.
    spec["resourceId"] = json!(VM1.to_ascii_lowercase());
    validate_cel(&vm("gpu-dsvm", spec)).unwrap();
}

#[test]
fn resource_id_or_address_not_both() {
    let mut spec = good_spec();
    spec["address"] = json!("20.61.0.10");
    refused(
        &vm("gpu-dsvm", spec.clone()),
        "exactly one of spec.resourceId",
    );
    spec.as_object_mut().unwrap().remove("resourceId");
    validate_cel(&vm("gpu-dsvm", spec)).unwrap();
}

#[test]
fn identity_fields_are_immutable_and_settings_are_not() {
    let old = vm("gpu-dsvm", good_spec());
    let mut spec = good_spec();
    spec["resourceId"] = json!(VM2);
    let err = validate_cel_update(&vm("gpu-dsvm", spec), &old).expect_err("immutable");
    assert!(format!("{err:?}").contains("spec.resourceId is immutable"));
    let mut spec = good_spec();
    spec["workspaceRef"] = json!({"name": "other"});
    let err = validate_cel_update(&vm("gpu-dsvm", spec), &old).expect_err("immutable");
    assert!(format!("{err:?}").contains("spec.workspaceRef is immutable"));
    let mut spec = good_spec();
    spec["computeName"] = json!("gpu");
    let err = validate_cel_update(&vm("gpu-dsvm", spec), &old).expect_err("immutable");
    assert!(format!("{err:?}").contains("spec.computeName cannot be added or removed"));
    // sshPort, credentials and deletionPolicy may change (sshPort/credentials re-attach).
    let mut spec = good_spec();
    spec["sshPort"] = json!(2222);
    spec["deletionPolicy"] = json!("Orphan");
    validate_cel_update(&vm("gpu-dsvm", spec), &old).unwrap();
}

#[test]
fn workspace_credential_union() {
    let ws = |credential: serde_json::Value| -> MLWorkspace {
        serde_json::from_value(json!({
            "apiVersion": "attach.azureml.io/v1alpha1",
            "kind": "MLWorkspace",
            "metadata": {"name": "ws", "namespace": "ns"},
            "spec": {
                "subscriptionId": "00000000-0000-0000-0000-000000000000",
                "resourceGroup": "ml-rg",
                "workspaceName": "prod-workspace",
                "credential": credential,
            }
        }))
        .unwrap()
    };
    validate_cel(&ws(json!({"type": "Default"}))).unwrap();
    let err = validate_cel(&ws(json!({"type": "ClientSecret"}))).expect_err("needs clientSecret");
    assert!(format!("{err:?}").contains("credential.clientSecret is required"));
    validate_cel(&ws(json!({
        "type": "WorkloadIdentity",
        "workloadIdentity": {"clientId": "c", "tenantId": "t"}
    })))
    .unwrap();
}

#[test]
fn crds_have_category_short_names_and_columns() {
    for crd in all_crds() {
        let names = &crd.spec.names;
        assert_eq!(
            names.categories.as_deref(),
            Some(&["azureml".to_string()][..]),
            "{}",
            names.kind
        );
        assert!(
            names.short_names.as_ref().is_some_and(|s| !s.is_empty()),
            "{}",
            names.kind
        );
        let cols = crd.spec.versions[0]
            .additional_printer_columns
            .as_ref()
            .unwrap();
        let col_names: Vec<_> = cols.iter().map(|c| c.name.as_str()).collect();
        assert!(
            col_names.contains(&"Ready")
                && col_names.contains(&"Reason")
                && col_names.contains(&"Age")
        );
        if names.kind != "MLWorkspace" {
            assert_eq!(
                col_names,
                ["Workspace", "Compute", "State", "Ready", "Reason", "Age"]
            );
        }
        assert_eq!(crd.spec.scope, "Namespaced");
    }
}

fn hdi(address: &str) -> HdInsightTarget {
    serde_json::from_value(json!({
        "apiVersion": "attach.azureml.io/v1alpha1",
        "kind": "HdInsightTarget",
        "metadata": {"name": "spark", "namespace": "ns"},
        "spec": {
            "workspaceRef": {"name": "ws"},
            "resourceId": "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/ml-rg/providers/Microsoft.HDInsight/clusters/spark-1",
            "address": address,
            "credentials": {"secretRef": {"name": "ssh"}, "passwordKey": "password"},
        },
    }))
    .unwrap()
}

fn dbx(url: &str) -> DatabricksTarget {
    serde_json::from_value(json!({
        "apiVersion": "attach.azureml.io/v1alpha1",
        "kind": "DatabricksTarget",
        "metadata": {"name": "dbx", "namespace": "ns"},
        "spec": {
            "workspaceRef": {"name": "ws"},
            "resourceId": "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/ml-rg/providers/Microsoft.Databricks/workspaces/dbw-1",
            "workspaceUrl": url,
            "accessTokenSecretRef": {"name": "dbx", "key": "token"},
        },
    }))
    .unwrap()
}

fn refused_with<K: kube::Resource + kube::CustomResourceExt + serde::Serialize>(
    obj: &K,
    needle: &str,
) {
    let err = validate_cel(obj).expect_err("should be refused");
    let text = format!("{err:?}");
    assert!(text.contains(needle), "expected {needle:?} in {text}");
}

#[test]
fn hdinsight_address_is_a_host_without_scheme() {
    for good in ["spark-1-ssh.azurehdinsight.net", "10.0.0.4", "headnode0"] {
        validate_cel(&hdi(good)).unwrap_or_else(|e| panic!("{good}: {e:?}"));
    }
    for bad in [
        "https://spark-1-ssh.azurehdinsight.net",
        "ssh://spark-1-ssh.azurehdinsight.net",
    ] {
        refused_with(&hdi(bad), "not a URL: remove the scheme");
    }
    for bad in [
        "spark-1-ssh.azurehdinsight.net:22",
        "spark-1-ssh.azurehdinsight.net/x",
        "-spark",
        "spark..net",
    ] {
        refused_with(&hdi(bad), "must be a host name or IP address");
    }
}

#[test]
fn databricks_workspace_url_is_a_host_with_optional_https() {
    for good in [
        "adb-1234567890123456.7.azuredatabricks.net",
        "https://adb-1234567890123456.7.azuredatabricks.net",
    ] {
        validate_cel(&dbx(good)).unwrap_or_else(|e| panic!("{good}: {e:?}"));
    }
    for bad in [
        "http://adb-1.7.azuredatabricks.net",
        "ftp://adb-1.7.azuredatabricks.net",
    ] {
        refused_with(&dbx(bad), "may only use https://");
    }
    for bad in [
        "https://adb-1.7.azuredatabricks.net/",
        "https://adb-1.7.azuredatabricks.net/?o=1",
        "adb-1.7.azuredatabricks.net/path",
        "not a url",
        "localhost",
    ] {
        refused_with(&dbx(bad), "must be the workspace's host");
    }
}
