//! Rule 13: preflight reads the underlying resource before the first PUT and checks the seed's
//! prerequisites, against the emulator's world resources that fail each check.

use std::time::Duration;

use azureml_attach::api::{HdInsightTarget, KubernetesTarget, RemoteVmTarget};

use crate::harness::*;

const T: Duration = Duration::from_secs(60);

fn rid(path: &str) -> String {
    format!("/subscriptions/{SUB}/resourceGroups/ml-rg/providers/{path}")
}

fn vm(name: &str, vm: &str, mode: Option<&str>) -> String {
    let mut yaml = vm_yaml(
        name,
        &rid(&format!("Microsoft.Compute/virtualMachines/{vm}")),
        22,
    );
    if let Some(mode) = mode {
        yaml.push_str(&format!("  preflight: {mode}\n"));
    }
    yaml
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule13_preflight_stops_warns_or_skips_before_the_first_put() {
    let w = World::new("e2e-preflight").await;
    let op = w.operator().await;
    let hdi = format!(
        r#"apiVersion: v1
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
  name: stopped-hdi
spec:
  workspaceRef: {{name: prod-workspace}}
  resourceId: {}
  address: spark-stopped-ssh.azurehdinsight.net
  credentials:
    secretRef: {{name: hdi-ssh}}
    passwordKey: password
---
apiVersion: attach.azureml.io/v1alpha1
kind: KubernetesTarget
metadata:
  name: aks-noext
spec:
  workspaceRef: {{name: prod-workspace}}
  resourceId: {}
"#,
        rid("Microsoft.HDInsight/clusters/spark-stopped"),
        rid("Microsoft.ContainerService/managedClusters/aks-noext"),
    );
    let yaml = [
        vm("windows-vm", "win-vm", None),
        vm("missing-vm", "no-such-vm", None),
        vm("private-vm", "private-vm", Some("Warn")),
        vm("rhel-vm", "rhel-vm", Some("Skip")),
        vm("ubuntu-vm", "dsvm-2", None),
        hdi,
    ]
    .join("---\n");
    w.apply(&yaml).await;

    let vms = w.api::<RemoteVmTarget>();
    let (_, _, msg) = wait_reason(&vms, "windows-vm", "PrerequisiteNotMet", T, &op).await;
    assert!(
        msg.contains("Windows") && msg.contains("preflight: Warn"),
        "{msg}"
    );
    let (_, _, msg) = wait_reason(&vms, "missing-vm", "ResourceNotFound", T, &op).await;
    assert!(msg.contains("no-such-vm"), "{msg}");
    let (_, _, msg) = wait_reason(
        &w.api::<HdInsightTarget>(),
        "stopped-hdi",
        "PrerequisiteNotMet",
        T,
        &op,
    )
    .await;
    assert!(msg.contains("spark-stopped"), "{msg}");
    let (_, _, msg) = wait_reason(
        &w.api::<KubernetesTarget>(),
        "aks-noext",
        "PrerequisiteNotMet",
        T,
        &op,
    )
    .await;
    assert!(
        msg.contains("az k8s-extension create") && msg.contains("Microsoft.AzureML.Kubernetes"),
        "{msg}"
    );

    // Warn attaches and reports the check beside Ready; Skip and a passing VM attach.
    wait_reason(&vms, "private-vm", "Attached", T, &op).await;
    wait_reason(&vms, "rhel-vm", "Attached", T, &op).await;
    wait_reason(&vms, "ubuntu-vm", "Attached", T, &op).await;
    let private = vms.get("private-vm").await.expect("private-vm");
    let status = private.status.expect("status");
    let pre = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Preflight")
        .expect("a Preflight condition with Warn");
    assert_eq!(pre.reason, "PrerequisiteNotMet");
    assert!(pre.message.contains("public IP"), "{}", pre.message);
    let rhel = vms.get("rhel-vm").await.expect("rhel-vm");
    assert!(
        rhel.status
            .expect("status")
            .conditions
            .iter()
            .all(|c| c.type_ != "Preflight"),
        "Skip reads nothing"
    );

    // No PUT for any target that failed with Enforce; the reads went through ARM.
    let reqs = w.arm_requests().await;
    for name in ["windows-vm", "missing-vm", "stopped-hdi", "aks-noext"] {
        assert!(
            !reqs
                .iter()
                .any(|e| e.method == "PUT" && e.path.ends_with(&format!("/computes/{name}"))),
            "a PUT for {name}"
        );
    }
    let reads = |needle: &str| {
        reqs.iter()
            .filter(|e| e.method == "GET" && e.path.contains(needle))
            .count()
    };
    assert!(reads("virtualMachines/win-vm") >= 1);
    assert!(reads("virtualMachines/rhel-vm") == 0, "Skip reads nothing");
    assert!(reads("managedClusters/aks-noext") >= 1);
}
