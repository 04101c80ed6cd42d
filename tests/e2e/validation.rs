//! Bad manifests are refused by the API server, with a message a person understands.

use crate::harness::*;

async fn refused(w: &World, yaml: &str) -> String {
    match w.env.apply_yaml(Some(&w.ns), yaml).await {
        Ok(_) => panic!("the API server accepted:\n{yaml}"),
        Err(e) => e.to_string(),
    }
}

fn vm(spec: &str) -> String {
    format!(
        "apiVersion: attach.azureml.io/v1alpha1\nkind: RemoteVmTarget\nmetadata:\n  name: bad-vm\nspec:\n  workspaceRef: {{name: prod-workspace}}\n{spec}"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_manifests_are_refused_with_readable_messages() {
    let w = World::new("e2e-bad").await;
    let creds = "  credentials: {secretRef: {name: s}, passwordKey: password}\n";

    let msg = refused(
        &w,
        &vm(&format!(
            "  resourceId: /subscriptions/nope/virtualMachines/x\n{creds}"
        )),
    )
    .await;
    assert!(
        msg.contains("spec.resourceId must be a virtual machine's ARM id"),
        "{msg}"
    );

    let msg = refused(
        &w,
        &vm(&format!(
            "  computeName: dsvm-1\n  resourceId: {VM1}\n{creds}"
        )),
    )
    .await;
    assert!(msg.contains("not end in -<digits>"), "{msg}");

    let msg = refused(
        &w,
        &vm(&format!(
            "  computeName: 9lives\n  resourceId: {VM1}\n{creds}"
        )),
    )
    .await;
    assert!(msg.contains("start with a letter"), "{msg}");

    let msg = refused(
        &w,
        &vm(&format!("  resourceId: {VM1}\n  credentials: {{secretRef: {{name: s}}, passwordKey: p, privateKeyKey: k}}\n")),
    )
    .await;
    assert!(
        msg.contains("exactly one of credentials.passwordKey"),
        "{msg}"
    );

    let msg = refused(
        &w,
        &vm(&format!("  resourceId: {VM1}\n  sshPort: 0\n{creds}")),
    )
    .await;
    assert!(msg.contains("sshPort"), "{msg}");

    let msg = refused(
        &w,
        &vm(&format!("  resourceId: {VM1}\n  address: 1.2.3.4\n{creds}")),
    )
    .await;
    assert!(msg.contains("exactly one of spec.resourceId"), "{msg}");

    // metadata.name that is not a compute name needs spec.computeName.
    let msg = refused(
        &w,
        &vm(&format!("  resourceId: {VM1}\n{creds}")).replace("name: bad-vm", "name: vm.with.dots"),
    )
    .await;
    assert!(msg.contains("set spec.computeName"), "{msg}");

    let msg = refused(
        &w,
        &format!(
            "apiVersion: attach.azureml.io/v1alpha1\nkind: DatabricksTarget\nmetadata:\n  name: bad-dbx\nspec:\n  workspaceRef: {{name: prod-workspace}}\n  resourceId: {VM1}\n  accessTokenSecretRef: {{name: t, key: token}}\n"
        ),
    )
    .await;
    assert!(msg.contains("Databricks workspace"), "{msg}");

    // A Databricks workspace URL is a host, optionally with https://, without a path.
    let dbx = |url: &str| {
        format!(
            "apiVersion: attach.azureml.io/v1alpha1\nkind: DatabricksTarget\nmetadata:\n  name: bad-dbx-url\nspec:\n  workspaceRef: {{name: prod-workspace}}\n  resourceId: {DBW}\n  workspaceUrl: {url}\n  accessTokenSecretRef: {{name: t, key: token}}\n"
        )
    };
    let msg = refused(&w, &dbx("http://adb-1.7.azuredatabricks.net")).await;
    assert!(
        msg.contains("spec.workspaceUrl may only use https://"),
        "{msg}"
    );
    let msg = refused(&w, &dbx("https://adb-1.7.azuredatabricks.net/o/1")).await;
    assert!(
        msg.contains("spec.workspaceUrl must be the workspace's host"),
        "{msg}"
    );

    // An HDInsight SSH address carries no scheme.
    let hdi = |address: &str| {
        format!(
            "apiVersion: attach.azureml.io/v1alpha1\nkind: HdInsightTarget\nmetadata:\n  name: bad-hdi\nspec:\n  workspaceRef: {{name: prod-workspace}}\n  resourceId: {HDI}\n  address: {address}\n{creds}"
        )
    };
    let msg = refused(&w, &hdi("https://spark-1-ssh.azurehdinsight.net")).await;
    assert!(msg.contains("spec.address is an SSH host"), "{msg}");
    assert!(msg.contains("remove the scheme"), "{msg}");
    let msg = refused(&w, &hdi("spark-1-ssh.azurehdinsight.net:22")).await;
    assert!(msg.contains("without a port or path"), "{msg}");

    // KubernetesTarget and SynapseSparkTarget: the resource type, instance types, identity forms.
    let k8s = |spec: &str| {
        format!(
            "apiVersion: attach.azureml.io/v1alpha1\nkind: KubernetesTarget\nmetadata:\n  name: bad-aks\nspec:\n  workspaceRef: {{name: prod-workspace}}\n{spec}"
        )
    };
    let msg = refused(&w, &k8s(&format!("  resourceId: {VM1}\n"))).await;
    assert!(
        msg.contains("must be the ARM id of an AKS cluster") && msg.contains("connectedClusters"),
        "{msg}"
    );
    let msg = refused(
        &w,
        &k8s(&format!(
            "  resourceId: {AKS}\n  defaultInstanceType: big\n"
        )),
    )
    .await;
    assert!(msg.contains("must name one of spec.instanceTypes"), "{msg}");
    let msg = refused(
        &w,
        &k8s(&format!(
            "  resourceId: {AKS}\n  identity: {{type: UserAssigned}}\n"
        )),
    )
    .await;
    assert!(
        msg.contains("UserAssigned needs userAssignedIdentities"),
        "{msg}"
    );
    let msg = refused(
        &w,
        &k8s(&format!(
            "  resourceId: {AKS}\n  namespace: Not_A_Namespace\n"
        )),
    )
    .await;
    assert!(
        msg.contains("spec.namespace must be a Kubernetes namespace name"),
        "{msg}"
    );
    let synapse = |spec: &str| {
        format!(
            "apiVersion: attach.azureml.io/v1alpha1\nkind: SynapseSparkTarget\nmetadata:\n  name: bad-syn\nspec:\n  workspaceRef: {{name: prod-workspace}}\n{spec}"
        )
    };
    let msg = refused(&w, &synapse(&format!("  resourceId: {VM1}\n"))).await;
    assert!(
        msg.contains("must be the ARM id of a Synapse Spark pool"),
        "{msg}"
    );
    let msg = refused(
        &w,
        &synapse(&format!(
            "  resourceId: {SYNAPSE_POOL}\n  identity: {{type: SystemAssigned, userAssignedIdentities: [{UAI}]}}\n"
        )),
    )
    .await;
    assert!(msg.contains("SystemAssigned takes none"), "{msg}");
    let msg = refused(
        &w,
        &synapse(&format!(
            "  resourceId: {SYNAPSE_POOL}\n  identity: {{type: UserAssigned, userAssignedIdentities: [/subscriptions/x]}}\n"
        )),
    )
    .await;
    assert!(
        msg.contains("must be ARM ids of user-assigned identities"),
        "{msg}"
    );

    // Immutable fields.
    w.apply(&vm(&format!("  resourceId: {VM1}\n{creds}"))).await;
    let msg = refused(&w, &vm(&format!("  resourceId: {VM2}\n{creds}"))).await;
    assert!(msg.contains("spec.resourceId is immutable"), "{msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_get_azureml_lists_every_kind_and_explain_is_useful() {
    let w = World::new("e2e-kubectl").await;
    w.apply(&vm(&format!(
        "  resourceId: {VM1}\n  credentials: {{secretRef: {{name: s}}, passwordKey: password}}\n"
    )))
    .await;
    w.apply(&format!(
        "apiVersion: attach.azureml.io/v1alpha1\nkind: BatchTarget\nmetadata:\n  name: some-batch\nspec:\n  workspaceRef: {{name: prod-workspace}}\n  resourceId: {BATCH}\n"
    ))
    .await;
    let out = w
        .env
        .kubectl()
        .args(["get", "azureml", "-n", &w.ns])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for needle in [
        "remotevmtarget.attach.azureml.io/bad-vm",
        "batchtarget.attach.azureml.io/some-batch",
        "mlworkspace.attach.azureml.io/prod-workspace",
    ] {
        assert!(text.contains(needle), "{needle} missing in\n{text}");
    }
    let out = w
        .env
        .kubectl()
        .args(["get", "rvm", "-n", &w.ns])
        .output()
        .unwrap();
    let header = String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap_or_default()
        .to_string();
    for col in ["WORKSPACE", "COMPUTE", "STATE", "READY", "REASON", "AGE"] {
        assert!(header.contains(col), "{col} missing in {header}");
    }
    let out = w
        .env
        .kubectl()
        .args(["explain", "remotevmtarget.spec.sshPort"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("SSH port"), "{text}");
}
