//! The import is the inverse of each kind's body builder: for a sample spec, the body
//! `attach_body` builds, read back as ARM lists it, imports to the same spec. Plus what is
//! skipped and why, the credential blocks, names, and that no secret value is ever printed.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use kube::core::cel::validate_cel;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::manifests::{is_object_name, object_name};
use super::*;
use crate::api::{
    BatchTarget, DataLakeAnalyticsTarget, DatabricksTarget, HdInsightTarget, MLWorkspace,
    RemoteVmTarget,
};
use crate::api::{KubernetesTarget, SynapseSparkTarget};
use crate::controller::target::{AttachTarget, SecretData, attach_body};

const SUB: &str = "00000000-0000-0000-0000-000000000000";
const VM1: &str = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/ml-rg/providers/Microsoft.Compute/virtualMachines/dsvm-1";
const HDI: &str = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/ml-rg/providers/Microsoft.HDInsight/clusters/spark-1";
const BATCH: &str = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/ml-rg/providers/Microsoft.Batch/batchAccounts/batch1";
const DBW: &str = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/ml-rg/providers/Microsoft.Databricks/workspaces/dbw-1";
const ADLA: &str = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/ml-rg/providers/Microsoft.DataLakeAnalytics/accounts/adla1";
const TENANT: &str = "11111111-1111-1111-1111-111111111111";
const CLIENT: &str = "22222222-2222-2222-2222-222222222222";
/// Secret values put into the bodies; none may ever be printed.
const SECRETS: [&str; 3] = ["vm-Passw0rd-value", "OPENSSH-KEY-value", "dapi-token-value"];

fn settings_with(credential: CredentialChoice, ssh_login: SshLogin) -> Settings {
    Settings::new(
        WorkspaceRef::new(SUB, "ml-rg", "prod-workspace"),
        "ml-team-a",
        None,
        Cloud::AzurePublic,
        credential,
        ssh_login,
    )
    .unwrap()
}

fn settings() -> Settings {
    settings_with(
        CredentialChoice::ClientSecret {
            tenant_id: TENANT.into(),
            client_id: CLIENT.into(),
        },
        SshLogin::Password,
    )
}

fn secret_data() -> SecretData {
    let pairs = [
        ("username", "azureuser"),
        ("password", SECRETS[0]),
        ("privateKey", SECRETS[1]),
        ("token", SECRETS[2]),
    ];
    SecretData(
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
            .collect(),
    )
}

fn target<K: DeserializeOwned>(kind: &str, name: &str, spec: Value) -> K {
    serde_json::from_value(json!({
        "apiVersion": "attach.azureml.io/v1alpha1",
        "kind": kind,
        "metadata": {"name": name, "namespace": "ml-team-a"},
        "spec": spec,
    }))
    .unwrap()
}

/// The body the kind builds, as ARM lists it afterwards: with its name and state, and here
/// still with the secrets (real ARM nulls them) to prove they are never read.
fn listed<K: AttachTarget>(obj: &K, state: &str) -> ComputeResource {
    let body = attach_body(obj, Some(&secret_data()), Some("westeurope".into())).unwrap();
    let mut wire = serde_json::to_value(&body).unwrap();
    wire["name"] = json!(obj.compute_name());
    wire["properties"]["provisioningState"] = json!(state);
    serde_json::from_value(wire).unwrap()
}

/// A document as JSON, for indexing and comparing with `json!`.
fn j(doc: &Document) -> Value {
    serde_json::to_value(&doc.object).unwrap()
}

fn no_secret_in(yaml: &str) {
    for secret in SECRETS.iter().chain([&"emulator-client-secret"]) {
        assert!(!yaml.contains(secret), "{secret} printed:\n{yaml}");
    }
}

/// import(body(spec)) == spec, and the Secret stub has the keys the spec names.
fn round_trip<K: AttachTarget + kube::CustomResourceExt>(obj: K, settings: &Settings) -> Output {
    let out = manifests(settings, &[listed(&obj, "Succeeded")]);
    assert!(out.skipped.is_empty(), "{:?}", out.skipped);
    let [doc] = out.targets()[..] else {
        panic!("one target expected: {:#?}", out.documents);
    };
    assert_eq!(doc.kind(), K::KIND);
    let imported: K = serde_yaml::from_value(doc.object.clone()).unwrap();
    let want = serde_json::to_value(&obj).unwrap();
    let got = serde_json::to_value(&imported).unwrap();
    assert_eq!(got["spec"], want["spec"], "{}", K::KIND);
    assert_eq!(got["metadata"], want["metadata"], "{}", K::KIND);
    validate_cel(&imported).unwrap_or_else(|e| panic!("{}: {e:?}", K::KIND));
    if let Some(secret) = obj.secret_name() {
        let stub = out
            .documents
            .iter()
            .find(|d| d.kind() == "Secret" && d.name() == secret)
            .unwrap_or_else(|| panic!("no stub {secret}"));
        assert_eq!(
            j(stub)["metadata"]["labels"]["attach.azureml.io/credential"],
            "true"
        );
        let stub = j(stub);
        let data = stub["stringData"].as_object().unwrap();
        for v in data.values() {
            let v = v.as_str().unwrap();
            assert!(v == "azureuser" || v.starts_with(PLACEHOLDER_PREFIX), "{v}");
        }
        // Building the body from the imported spec finds every key it needs in the stub.
        let stub_data = SecretData(
            data.keys()
                .map(|k| (k.clone(), ByteString(b"filled".to_vec())))
                .collect(),
        );
        attach_body(&imported, Some(&stub_data), None).unwrap();
    }
    no_secret_in(&out.to_yaml().unwrap());
    out
}

#[test]
fn remote_vm_round_trips_by_resource_id() {
    let out = round_trip(
        target::<RemoteVmTarget>(
            "RemoteVmTarget",
            "gpu-dsvm",
            json!({"workspaceRef": {"name": "prod-workspace"}, "resourceId": VM1, "sshPort": 2222,
                   "credentials": {"secretRef": {"name": "gpu-dsvm-ssh"}, "passwordKey": "password"}}),
        ),
        &settings(),
    );
    let stub = &out
        .documents
        .iter()
        .find(|d| d.name() == "gpu-dsvm-ssh")
        .unwrap();
    // Azure returned the user name here (real ARM does not): it is kept, not a placeholder.
    assert_eq!(j(stub)["stringData"]["username"], "azureuser");
    assert_eq!(
        j(stub)["stringData"]["password"],
        "<fill in: SSH password of azureuser>"
    );
}

#[test]
fn remote_vm_round_trips_by_address_with_a_key_and_a_compute_name() {
    let settings = settings_with(CredentialChoice::Default, SshLogin::PrivateKey);
    round_trip(
        target::<RemoteVmTarget>(
            "RemoteVmTarget",
            "gpu-box",
            json!({"workspaceRef": {"name": "prod-workspace"}, "computeName": "GPU-Box",
                   "address": "20.61.0.11", "sshPort": 22,
                   "credentials": {"secretRef": {"name": "gpu-box-ssh"}, "privateKeyKey": "privateKey"}}),
        ),
        &settings,
    );
}

#[test]
fn hdinsight_round_trips() {
    round_trip(
        target::<HdInsightTarget>(
            "HdInsightTarget",
            "spark-hdi",
            json!({"workspaceRef": {"name": "prod-workspace"}, "resourceId": HDI,
                   "address": "spark-1-ssh.azurehdinsight.net", "sshPort": 22,
                   "credentials": {"secretRef": {"name": "spark-hdi-ssh"}, "passwordKey": "password"}}),
        ),
        &settings(),
    );
}

#[test]
fn databricks_round_trips_with_and_without_a_workspace_url() {
    for url in [Some("adb-1234567890123456.7.azuredatabricks.net"), None] {
        let mut spec = json!({"workspaceRef": {"name": "prod-workspace"}, "resourceId": DBW,
                              "accessTokenSecretRef": {"name": "dbw-token", "key": "token"}});
        if let Some(url) = url {
            spec["workspaceUrl"] = json!(url);
        }
        round_trip(
            target::<DatabricksTarget>("DatabricksTarget", "dbw", spec),
            &settings(),
        );
    }
}

#[test]
fn batch_round_trips() {
    round_trip(
        target::<BatchTarget>(
            "BatchTarget",
            "batch-pool",
            json!({"workspaceRef": {"name": "prod-workspace"}, "resourceId": BATCH}),
        ),
        &settings(),
    );
}

#[test]
fn kubernetes_and_synapse_spark_round_trip_with_their_identities() {
    round_trip(
        target::<KubernetesTarget>(
            "KubernetesTarget",
            "aks-gpu",
            json!({"workspaceRef": {"name": "prod-workspace"},
                   "resourceId": "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/ml-rg/providers/Microsoft.ContainerService/managedClusters/aks-1",
                   "namespace": "azureml", "defaultInstanceType": "gpu",
                   "instanceTypes": {"gpu": {"nodeSelector": {"pool": "gpu"},
                                             "resources": {"limits": {"nvidia.com/gpu": "1"}}}},
                   "identity": {"type": "SystemAssigned"}}),
        ),
        &settings(),
    );
    round_trip(
        target::<SynapseSparkTarget>(
            "SynapseSparkTarget",
            "synapse-pool",
            json!({"workspaceRef": {"name": "prod-workspace"},
                   "resourceId": "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/ml-rg/providers/Microsoft.Synapse/workspaces/syn-1/bigDataPools/pool1",
                   "identity": {"type": "UserAssigned", "userAssignedIdentities": [
                       "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/ml-rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/jobs"]}}),
        ),
        &settings(),
    );
}

#[test]
fn data_lake_analytics_round_trips() {
    round_trip(
        target::<DataLakeAnalyticsTarget>(
            "DataLakeAnalyticsTarget",
            "adla",
            json!({"workspaceRef": {"name": "prod-workspace"}, "resourceId": ADLA}),
        ),
        &settings(),
    );
}

fn compute(name: &str, body: Value) -> ComputeResource {
    let mut body = body;
    body["name"] = json!(name);
    serde_json::from_value(body).unwrap()
}

/// What real ARM lists for an attached VM: no credentials, address and size filled in.
fn arm_vm(name: &str, state: &str) -> ComputeResource {
    compute(
        name,
        json!({"location": "westeurope", "properties": {
            "computeType": "VirtualMachine", "resourceId": VM1, "provisioningState": state,
            "isAttachedCompute": true,
            "properties": {"address": "20.61.0.10", "sshPort": 22, "administratorAccount": null,
                           "virtualMachineSize": "STANDARD_D2S_V3"}}}),
    )
}

#[test]
fn a_listed_vm_gets_placeholders_for_everything_azure_keeps() {
    let out = manifests(&settings(), &[arm_vm("gpu-dsvm", "Succeeded")]);
    let vm: RemoteVmTarget = serde_yaml::from_value(out.targets()[0].object.clone()).unwrap();
    assert_eq!(vm.spec.resource_id.as_deref(), Some(VM1));
    assert_eq!(vm.spec.address, None, "resourceId or address, never both");
    let stub = out
        .documents
        .iter()
        .find(|d| d.name() == "gpu-dsvm-ssh")
        .unwrap();
    assert_eq!(
        j(stub)["stringData"],
        json!({"username": "<fill in: SSH user name>", "password": "<fill in: SSH password>"})
    );
}

#[test]
fn managed_and_unknown_types_are_skipped_with_a_reason() {
    let typed = |name: &str, t: &str| {
        compute(
            name,
            json!({"properties": {"computeType": t, "provisioningState": "Succeeded",
                                  "properties": {"vmSize": "STANDARD_D2_V2"}}}),
        )
    };
    let out = manifests(
        &settings(),
        &[
            typed("cpu-cluster", "AmlCompute"),
            typed("notebook", "ComputeInstance"),
            typed("arc", "Kubernetes"),
            typed("spark-pool", "SynapseSpark"),
            typed("quantum", "Quantum"),
            arm_vm("going", "Deleting"),
        ],
    );
    assert!(out.targets().is_empty(), "{:#?}", out.documents);
    let why: BTreeMap<_, _> = out
        .skipped
        .iter()
        .map(|s| {
            (
                s.compute.as_str(),
                (s.compute_type.as_str(), s.why.to_string()),
            )
        })
        .collect();
    for managed in ["cpu-cluster", "notebook"] {
        assert_eq!(why[managed].1, "not attachable by this operator (yet)");
    }
    // Supported kinds, but these bodies name no cluster or pool.
    for unnamed in ["arc", "spark-pool"] {
        assert!(
            why[unnamed].1.contains("no properties.resourceId"),
            "{:?}",
            why[unnamed]
        );
    }
    assert_eq!(why["arc"].0, "Kubernetes");
    assert_eq!(
        why["quantum"],
        ("Quantum", "unknown compute type".to_owned())
    );
    assert_eq!(why["going"].1, "being deleted in Azure");
}

#[test]
fn a_failed_compute_is_emitted_with_a_comment() {
    let mut failed = arm_vm("broken-vm", "Failed");
    let wire = json!([{"error": {"code": "InvalidCredentials", "message": "SSH authentication failed\nfor user 'azureuser'"}}]);
    if let Some(p) = failed.properties.as_mut() {
        p.provisioning_errors = serde_json::from_value(wire).unwrap();
    }
    let out = manifests(&settings(), &[failed]);
    let [doc] = out.targets()[..] else {
        panic!("the failed compute is emitted")
    };
    let text = doc.comments.join("\n");
    assert!(text.contains("provisioningState Failed"), "{text}");
    assert!(
        text.contains("InvalidCredentials: SSH authentication failed for user 'azureuser'"),
        "{text}"
    );
    assert!(out.notes.iter().any(|n| n.contains("broken-vm")));
    // The message's newline stays inside the comment.
    let yaml = out.to_yaml().unwrap();
    assert!(yaml.lines().all(|l| !l.starts_with("for user")), "{yaml}");
}

#[test]
fn names_azure_accepts_and_kubernetes_does_not_get_a_compute_name() {
    let out = manifests(
        &settings(),
        &[
            arm_vm("GPU-Box", "Succeeded"),
            arm_vm("dsvm-1", "Succeeded"),
        ],
    );
    let vm: RemoteVmTarget = serde_yaml::from_value(out.targets()[0].object.clone()).unwrap();
    assert_eq!(vm.metadata.name.as_deref(), Some("gpu-box"));
    assert_eq!(vm.spec.common.compute_name.as_deref(), Some("GPU-Box"));
    assert_eq!(vm.spec.credentials.secret_ref.name, "gpu-box-ssh");
    validate_cel(&vm).unwrap();
    // `dsvm-1` breaks today's compute-name rule (ends in -<digits>): the CRD would refuse it.
    assert_eq!(out.skipped.len(), 1);
    assert_eq!(out.skipped[0].compute, "dsvm-1");
    assert!(out.skipped[0].why.to_string().contains("-<digits>"));

    assert_eq!(object_name("GPU-Box"), "gpu-box");
    assert_eq!(object_name("abc-"), "abc");
    assert_eq!(object_name("prod_workspace"), "prod-workspace");
    assert_eq!(object_name("gpu-dsvm"), "gpu-dsvm");
    assert!(is_object_name("gpu-dsvm") && !is_object_name("GPU") && !is_object_name("a-"));
}

#[test]
fn a_second_compute_on_the_same_resource_is_skipped() {
    let out = manifests(
        &settings(),
        &[arm_vm("vm-b", "Succeeded"), arm_vm("vm-a", "Succeeded")],
    );
    assert_eq!(out.targets().len(), 1);
    assert_eq!(out.targets()[0].name(), "vm-a");
    assert_eq!(
        out.skipped[0].why,
        manifests::SkipReason::SameResourceAs("vm-a".into())
    );
}

#[test]
fn resource_ids_of_the_wrong_kind_are_skipped() {
    let hdi_on_a_vm = compute(
        "odd-hdi",
        json!({"properties": {"computeType": "HDInsight", "resourceId": VM1,
                              "properties": {"address": "x"}}}),
    );
    let batch_without_id = compute("odd-batch", json!({"properties": {"computeType": "Batch"}}));
    let out = manifests(&settings(), &[hdi_on_a_vm, batch_without_id]);
    assert!(out.targets().is_empty());
    let reasons: Vec<String> = out.skipped.iter().map(|s| s.why.to_string()).collect();
    assert!(
        reasons.iter().any(|r| r.contains("HDInsight cluster")),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("no properties.resourceId")),
        "{reasons:?}"
    );
}

fn workspace(out: &Output) -> (MLWorkspace, Vec<&Document>) {
    let doc = out
        .documents
        .iter()
        .find(|d| d.kind() == "MLWorkspace")
        .unwrap();
    let ws: MLWorkspace = serde_yaml::from_value(doc.object.clone()).unwrap();
    validate_cel(&ws).unwrap();
    (
        ws,
        out.documents
            .iter()
            .filter(|d| d.kind() == "Secret")
            .collect(),
    )
}

#[test]
fn the_workspace_credential_is_the_one_chosen() {
    let out = manifests(&settings(), &[]);
    let (ws, stubs) = workspace(&out);
    assert_eq!(ws.metadata.name.as_deref(), Some("prod-workspace"));
    assert_eq!(ws.spec.workspace_name, "prod-workspace");
    assert_eq!(ws.spec.cloud, None);
    let cs = ws.spec.credential.client_secret.unwrap();
    assert_eq!(
        (cs.tenant_id.as_str(), cs.client_id.as_str()),
        (TENANT, CLIENT)
    );
    assert_eq!(cs.secret_ref.name, "prod-workspace-sp");
    assert_eq!(stubs.len(), 1);
    assert_eq!(
        j(stubs[0])["stringData"]["clientSecret"],
        format!("<fill in: client secret of application {CLIENT}>")
    );

    for (choice, expect) in [
        (CredentialChoice::Default, json!({"type": "Default"})),
        (
            CredentialChoice::AzureCli { tenant_id: None },
            json!({"type": "Default"}),
        ),
        (
            CredentialChoice::WorkloadIdentity {
                tenant_id: TENANT.into(),
                client_id: CLIENT.into(),
            },
            json!({"type": "WorkloadIdentity", "workloadIdentity": {"clientId": CLIENT, "tenantId": TENANT}}),
        ),
        (
            CredentialChoice::ManagedIdentity { client_id: None },
            json!({"type": "ManagedIdentity"}),
        ),
        (
            CredentialChoice::ManagedIdentity {
                client_id: Some(CLIENT.into()),
            },
            json!({"type": "ManagedIdentity", "managedIdentity": {"clientId": CLIENT}}),
        ),
    ] {
        let out = manifests(&settings_with(choice.clone(), SshLogin::Password), &[]);
        let (ws, stubs) = workspace(&out);
        assert_eq!(serde_json::to_value(&ws.spec.credential).unwrap(), expect);
        assert!(stubs.is_empty(), "{choice:?}");
    }
}

#[test]
fn credential_flags_are_checked() {
    use CredentialKind as K;
    let t = || Some(TENANT.to_owned());
    let c = || Some(CLIENT.to_owned());
    assert!(CredentialChoice::from_flags(K::ClientSecret, t(), c()).is_ok());
    assert!(matches!(
        CredentialChoice::from_flags(K::ClientSecret, t(), None),
        Err(ImportError::MissingFlag {
            flag: "--client-id",
            ..
        })
    ));
    assert!(matches!(
        CredentialChoice::from_flags(K::WorkloadIdentity, None, c()),
        Err(ImportError::MissingFlag {
            flag: "--tenant-id",
            ..
        })
    ));
    assert!(matches!(
        CredentialChoice::from_flags(K::Default, t(), None),
        Err(ImportError::UnusedFlag {
            flag: "--tenant-id",
            ..
        })
    ));
    assert_eq!(
        CredentialChoice::from_flags(K::ManagedIdentity, None, c())
            .unwrap()
            .spec(),
        CredentialSpec::ManagedIdentity {
            user_assigned: Some(ManagedIdentityId::ClientId(CLIENT.into()))
        }
    );
    assert_eq!(
        CredentialChoice::from_flags(K::AzureCli, t(), None)
            .unwrap()
            .spec(),
        CredentialSpec::AzureCli { tenant_id: t() }
    );
    let bad = Settings::new(
        WorkspaceRef::new(SUB, "ml-rg", "ws"),
        "Team_A",
        None,
        Cloud::Custom,
        CredentialChoice::Default,
        SshLogin::Password,
    );
    assert!(matches!(
        bad,
        Err(ImportError::InvalidName {
            what: "--namespace",
            ..
        })
    ));
    let custom = Settings::new(
        WorkspaceRef::new(SUB, "ml-rg", "Prod_WS"),
        "team-a",
        None,
        Cloud::Custom,
        CredentialChoice::Default,
        SshLogin::Password,
    )
    .unwrap();
    assert_eq!(custom.workspace_object, "prod-ws");
    assert_eq!(custom.cloud, Some(crate::api::CloudName::Custom));
}

#[test]
fn the_yaml_parses_back_document_by_document() {
    let computes = [
        arm_vm("gpu-dsvm", "Succeeded"),
        compute(
            "dbw",
            json!({"properties": {"computeType": "Databricks", "resourceId": DBW, "provisioningState": "Succeeded",
                                  "properties": {"databricksAccessToken": null, "workspaceUrl": "adb-1.azuredatabricks.net"}}}),
        ),
        compute(
            "batch-pool",
            json!({"properties": {"computeType": "Batch", "resourceId": BATCH, "properties": null}}),
        ),
    ];
    let out = manifests(&settings(), &computes);
    let yaml = out.to_yaml().unwrap();
    let docs: Vec<Value> = serde_yaml::Deserializer::from_str(&yaml)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect();
    let objects: Vec<Value> = out.documents.iter().map(j).collect();
    assert_eq!(docs, objects);
    let kinds: Vec<&str> = docs.iter().map(|d| d["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "Secret",
            "MLWorkspace",
            "BatchTarget",
            "Secret",
            "DatabricksTarget",
            "Secret",
            "RemoteVmTarget"
        ]
    );
    assert!(
        yaml.contains("# Azure compute \"dbw\" (Databricks)\n"),
        "{yaml}"
    );
    assert_eq!(
        out.stubs(),
        ["prod-workspace-sp", "dbw-token", "gpu-dsvm-ssh"]
    );
    for d in &docs {
        assert_eq!(d["metadata"]["namespace"], "ml-team-a");
    }
}
