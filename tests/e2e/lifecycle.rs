//! Every kind attaches to Ready and detaches; deletion sends Detach only; secrets never leak.

use std::time::Duration;

use azureml_attach::api::{
    BatchTarget, DataLakeAnalyticsTarget, DatabricksTarget, HdInsightTarget, KubernetesTarget,
    RemoteVmTarget, SynapseSparkTarget,
};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::events::v1::Event;
use kube::api::ListParams;

use crate::harness::*;

const T: Duration = Duration::from_secs(60);

fn all_kinds_yaml() -> String {
    format!(
        r#"{vm}
---
apiVersion: v1
kind: Secret
metadata:
  name: hdi-ssh
  labels:
    attach.azureml.io/credential: "true"
stringData:
  username: sshuser
  password: {HDI_PASSWORD}
---
apiVersion: attach.azureml.io/v1alpha1
kind: HdInsightTarget
metadata:
  name: spark
spec:
  workspaceRef: {{name: prod-workspace}}
  resourceId: {HDI}
  address: spark-1-ssh.azurehdinsight.net
  credentials:
    secretRef: {{name: hdi-ssh}}
    passwordKey: password
---
apiVersion: attach.azureml.io/v1alpha1
kind: BatchTarget
metadata:
  name: batch
spec:
  workspaceRef: {{name: prod-workspace}}
  resourceId: {BATCH}
---
apiVersion: v1
kind: Secret
metadata:
  name: dbw-token
  labels:
    attach.azureml.io/credential: "true"
stringData:
  token: {DBX_TOKEN}
---
apiVersion: attach.azureml.io/v1alpha1
kind: DatabricksTarget
metadata:
  name: dbx
spec:
  workspaceRef: {{name: prod-workspace}}
  resourceId: {DBW}
  workspaceUrl: adb-1234567890123456.7.azuredatabricks.net
  accessTokenSecretRef: {{name: dbw-token, key: token}}
  writeConnectionSecretToRef: {{name: dbx-conn}}
---
apiVersion: attach.azureml.io/v1alpha1
kind: DataLakeAnalyticsTarget
metadata:
  name: adla
spec:
  workspaceRef: {{name: prod-workspace}}
  resourceId: {ADLA}
---
apiVersion: attach.azureml.io/v1alpha1
kind: KubernetesTarget
metadata:
  name: aks
spec:
  workspaceRef: {{name: prod-workspace}}
  resourceId: {AKS}
  namespace: azureml
  defaultInstanceType: cpu
  instanceTypes:
    cpu: {{nodeSelector: {{agentpool: cpu}}, resources: {{requests: {{cpu: "2"}}}}}}
  identity: {{type: SystemAssigned}}
---
apiVersion: attach.azureml.io/v1alpha1
kind: KubernetesTarget
metadata:
  name: arc
spec:
  workspaceRef: {{name: prod-workspace}}
  resourceId: {ARC}
  identity: {{type: UserAssigned, userAssignedIdentities: [{UAI}]}}
---
apiVersion: attach.azureml.io/v1alpha1
kind: SynapseSparkTarget
metadata:
  name: syn
spec:
  workspaceRef: {{name: prod-workspace}}
  resourceId: {SYNAPSE_POOL}
"#,
        vm = vm_yaml("gpu-dsvm", VM1, 22)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_attaches_to_ready_and_detaches_with_detach_only() {
    let w = World::new("e2e-kinds").await;
    let op = w.operator().await;
    w.apply(&all_kinds_yaml()).await;

    wait_reason(&w.api::<RemoteVmTarget>(), "gpu-dsvm", "Attached", T, &op).await;
    wait_reason(&w.api::<HdInsightTarget>(), "spark", "Attached", T, &op).await;
    wait_reason(&w.api::<BatchTarget>(), "batch", "Attached", T, &op).await;
    wait_reason(&w.api::<DatabricksTarget>(), "dbx", "Attached", T, &op).await;
    wait_reason(
        &w.api::<DataLakeAnalyticsTarget>(),
        "adla",
        "Attached",
        T,
        &op,
    )
    .await;
    wait_reason(&w.api::<KubernetesTarget>(), "aks", "Attached", T, &op).await;
    wait_reason(&w.api::<KubernetesTarget>(), "arc", "Attached", T, &op).await;
    wait_reason(&w.api::<SynapseSparkTarget>(), "syn", "Attached", T, &op).await;

    let state = w.control.state().await.unwrap();
    let mut names: Vec<_> = state
        .computes
        .iter()
        .map(|c| (c.name.clone(), c.compute_type.clone()))
        .collect();
    names.sort();
    assert_eq!(
        names,
        vec![
            ("adla".into(), "DataLakeAnalytics".into()),
            ("aks".into(), "Kubernetes".into()),
            ("arc".into(), "Kubernetes".into()),
            ("batch".into(), "Batch".into()),
            ("dbx".into(), "Databricks".into()),
            ("gpu-dsvm".into(), "VirtualMachine".into()),
            ("spark".into(), "HDInsight".into()),
            ("syn".into(), "SynapseSpark".into()),
        ]
    );
    let vm = w.api::<RemoteVmTarget>().get("gpu-dsvm").await.unwrap();
    let st = vm.status.unwrap();
    assert_eq!(st.provisioning_state.as_deref(), Some("Succeeded"));
    assert!(
        st.compute_id
            .unwrap()
            .ends_with("/workspaces/prod-workspace/computes/gpu-dsvm")
    );

    // The connection Secret exists, is owned by the target, and holds the ids.
    let conn = w
        .api::<Secret>()
        .get("dbx-conn")
        .await
        .expect("connection secret");
    assert_eq!(
        conn.metadata.owner_references.unwrap()[0].kind,
        "DatabricksTarget"
    );
    assert!(conn.data.unwrap().contains_key("computeId"));

    w.delete::<RemoteVmTarget>("gpu-dsvm").await;
    w.delete::<HdInsightTarget>("spark").await;
    w.delete::<BatchTarget>("batch").await;
    w.delete::<DatabricksTarget>("dbx").await;
    w.delete::<DataLakeAnalyticsTarget>("adla").await;
    w.delete::<KubernetesTarget>("aks").await;
    w.delete::<KubernetesTarget>("arc").await;
    w.delete::<SynapseSparkTarget>("syn").await;
    wait_gone(&w.api::<RemoteVmTarget>(), "gpu-dsvm", T, &op).await;
    wait_gone(&w.api::<HdInsightTarget>(), "spark", T, &op).await;
    wait_gone(&w.api::<BatchTarget>(), "batch", T, &op).await;
    wait_gone(&w.api::<DatabricksTarget>(), "dbx", T, &op).await;
    wait_gone(&w.api::<DataLakeAnalyticsTarget>(), "adla", T, &op).await;
    wait_gone(&w.api::<KubernetesTarget>(), "aks", T, &op).await;
    wait_gone(&w.api::<KubernetesTarget>(), "arc", T, &op).await;
    wait_gone(&w.api::<SynapseSparkTarget>(), "syn", T, &op).await;

    // Rule 1: every DELETE said Detach, the emulator deleted no underlying resource.
    let reqs = w.arm_requests().await;
    // The MLWorkspace's client secret (from a Secret) is the identity that attached.
    let put = reqs.iter().find(|e| e.method == "PUT").expect("a PUT");
    assert_eq!(
        put.principal.as_deref(),
        Some("22222222-2222-2222-2222-222222222222")
    );
    let deletes: Vec<_> = reqs.iter().filter(|e| e.method == "DELETE").collect();
    assert_eq!(deletes.len(), 8, "{deletes:#?}");
    for d in deletes {
        assert!(
            d.query
                .as_deref()
                .unwrap_or("")
                .contains("underlyingResourceAction=Detach"),
            "{d:?}"
        );
    }
    let state = w.control.state().await.unwrap();
    assert!(state.computes.is_empty(), "{:?}", state.computes);
    assert!(
        state.deleted_resources.is_empty(),
        "{:?}",
        state.deleted_resources
    );

    // No secret value in the operator's log, in events, or in status.
    let logs = op.logs();
    let events = w.api::<Event>().list(&ListParams::default()).await.unwrap();
    let events_text = serde_json::to_string(&events.items).unwrap();
    for secret in [VM_PASSWORD, HDI_PASSWORD, DBX_TOKEN, CLIENT_SECRET] {
        assert!(!logs.contains(secret), "secret value in operator log");
        assert!(!events_text.contains(secret), "secret value in events");
    }
    assert!(
        events_text.contains("Attached") && events_text.contains("Detached"),
        "{events_text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_arm_calls_attach_ready_detach() {
    let w = World::new("e2e-count").await;
    // A resync longer than the lifecycle, so the count is this target's own calls.
    let op = Operator::start(&w, &[&w.ns], &[], "60s").await;
    // Let the workspace reach Azure first, then count only the target's calls.
    let mut waited = 0;
    while !w
        .arm_requests()
        .await
        .iter()
        .any(|e| e.operation.starts_with("Workspaces_Get"))
        && waited < 100
    {
        tokio::time::sleep(Duration::from_millis(200)).await;
        waited += 1;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    w.control.clear_requests().await.unwrap();
    w.apply(&vm_yaml("count-vm", VM1, 22)).await;
    wait_reason(&w.api::<RemoteVmTarget>(), "count-vm", "Attached", T, &op).await;
    w.delete::<RemoteVmTarget>("count-vm").await;
    wait_gone(&w.api::<RemoteVmTarget>(), "count-vm", T, &op).await;
    let reqs = w.arm_requests().await;
    let all: Vec<String> = reqs
        .iter()
        .map(|e| format!("{} {}", e.operation, e.status))
        .collect();
    eprintln!("MEASURE lifecycle ARM calls: {} {:?}", all.len(), all);
    // Preflight (rule 13) reads the VM, its NIC and its public IP once before the PUT.
    let preflight = [
        "VirtualMachines_Get",
        "NetworkInterfaces_Get",
        "PublicIPAddresses_Get",
    ];
    let (reads, ops): (Vec<String>, Vec<String>) = all
        .into_iter()
        .partition(|o| preflight.iter().any(|p| o.starts_with(p)));
    assert_eq!(reads.len(), 3, "one preflight: {reads:?}");
    assert!(
        ops.len() <= 6,
        "one attach->Ready->detach lifecycle took {} ARM calls: {ops:?}",
        ops.len()
    );
}
