//! GET of the underlying resources preflight reads (`underlying.rs`), the world's fixtures that
//! fail each prerequisite, their api-version checks and throttling, and the Kubernetes and
//! SynapseSpark computes that attach them; plus the two wire details of PUT and DELETE.

mod common;

use azureml_emulator::{EmulatorConfig, config::SettingsPatch};
use common::*;
use reqwest::{Method, StatusCode};
use serde_json::json;

fn rid(p: &str) -> String {
    format!("/subscriptions/{SUB}/resourceGroups/ml-rg/providers/{p}")
}

async fn get_v(e: &Env, id: &str, v: &str) -> Resp {
    e.arm(Method::GET, &format!("{id}?api-version={v}"), None)
        .await
}

#[tokio::test]
async fn vms_nics_and_public_ips() {
    let e = env().await;
    let vm = get_v(&e, VM1, "2024-07-01").await;
    assert_eq!(vm.status, StatusCode::OK, "{}", vm.text);
    let p = &vm.body["properties"];
    assert_eq!(vm.body["type"], "Microsoft.Compute/virtualMachines");
    assert_eq!(p["storageProfile"]["osDisk"]["osType"], "Linux");
    assert_eq!(
        p["storageProfile"]["imageReference"]["publisher"],
        "Canonical"
    );
    assert_eq!(
        p["storageProfile"]["imageReference"]["offer"],
        "ubuntu-24_04-lts"
    );
    let nic_id = p["networkProfile"]["networkInterfaces"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        nic_id,
        rid("Microsoft.Network/networkInterfaces/dsvm-1-nic")
    );
    let nic = get_v(&e, &nic_id, "2024-05-01").await;
    assert_eq!(nic.status, StatusCode::OK, "{}", nic.text);
    let ip_id =
        nic.body["properties"]["ipConfigurations"][0]["properties"]["publicIPAddress"]["id"]
            .as_str()
            .unwrap()
            .to_owned();
    let ip = get_v(&e, &ip_id, "2024-05-01").await;
    assert_eq!(ip.status, StatusCode::OK, "{}", ip.text);
    assert_eq!(ip.body["properties"]["ipAddress"], "20.61.0.10");

    let win = get_v(
        &e,
        &rid("Microsoft.Compute/virtualMachines/win-vm"),
        "2024-07-01",
    )
    .await;
    assert_eq!(
        win.body["properties"]["storageProfile"]["osDisk"]["osType"],
        "Windows"
    );
    assert!(win.body["properties"]["osProfile"]["windowsConfiguration"].is_object());
    let rhel = get_v(
        &e,
        &rid("Microsoft.Compute/virtualMachines/rhel-vm"),
        "2024-07-01",
    )
    .await;
    assert_eq!(
        rhel.body["properties"]["storageProfile"]["imageReference"]["publisher"],
        "RedHat"
    );
    let private = get_v(
        &e,
        &rid("Microsoft.Network/networkInterfaces/private-vm-nic"),
        "2024-05-01",
    )
    .await;
    let cfg = &private.body["properties"]["ipConfigurations"][0]["properties"];
    assert!(cfg.get("publicIPAddress").is_none(), "{cfg}");
    assert_eq!(cfg["privateIPAddress"], "10.0.0.22");
    let none = get_v(
        &e,
        &rid("Microsoft.Network/publicIPAddresses/private-vm-ip"),
        "2024-05-01",
    )
    .await;
    assert_eq!(none.status, StatusCode::NOT_FOUND);
    assert_eq!(none.code(), "ResourceNotFound");
}

#[tokio::test]
async fn hdinsight_clusters() {
    let e = env().await;
    let ok = get_v(&e, HDI, "2021-06-01").await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text);
    assert_eq!(ok.body["properties"]["clusterState"], "Running");
    let ssh = &ok.body["properties"]["connectivityEndpoints"][0];
    assert_eq!(ssh["name"], "SSH");
    assert_eq!(ssh["location"], "spark-1-ssh.azurehdinsight.net");
    let stopped = get_v(
        &e,
        &rid("Microsoft.HDInsight/clusters/spark-stopped"),
        "2021-06-01",
    )
    .await;
    assert_ne!(stopped.body["properties"]["clusterState"], "Running");
    let private = get_v(
        &e,
        &rid("Microsoft.HDInsight/clusters/spark-private"),
        "2021-06-01",
    )
    .await;
    let names: Vec<&str> = private.body["properties"]["connectivityEndpoints"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["name"].as_str())
        .collect();
    assert_eq!(names, ["SSH-INTERNAL", "HTTPS-INTERNAL"]);
}

#[tokio::test]
async fn clusters_and_extensions() {
    let e = env().await;
    let aks = rid("Microsoft.ContainerService/managedClusters/aks-1");
    let r = get_v(&e, &aks, "2025-01-01").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["properties"]["provisioningState"], "Succeeded");
    let arc = rid("Microsoft.Kubernetes/connectedClusters/arc-1");
    let r = get_v(&e, &arc, "2024-01-01").await;
    assert_eq!(r.body["properties"]["connectivityStatus"], "Connected");
    let ext = "/providers/Microsoft.KubernetesConfiguration/extensions";
    let l = get_v(&e, &format!("{aks}{ext}"), "2023-05-01").await;
    assert_eq!(l.status, StatusCode::OK, "{}", l.text);
    assert_eq!(
        l.body["value"][0]["properties"]["extensionType"],
        "Microsoft.AzureML.Kubernetes"
    );
    assert_eq!(
        l.body["value"][0]["properties"]["provisioningState"],
        "Succeeded"
    );
    let one = get_v(&e, &format!("{aks}{ext}/azureml"), "2023-05-01").await;
    assert_eq!(one.body["name"], "azureml");
    let noext = rid("Microsoft.ContainerService/managedClusters/aks-noext");
    let l = get_v(&e, &format!("{noext}{ext}"), "2023-05-01").await;
    assert_eq!(
        l.body["value"][0]["properties"]["extensionType"],
        "microsoft.flux"
    );
    let failed = rid("Microsoft.Kubernetes/connectedClusters/arc-failed");
    let l = get_v(&e, &format!("{failed}{ext}"), "2023-05-01").await;
    assert_eq!(
        l.body["value"][0]["properties"]["provisioningState"],
        "Failed"
    );
    let gone = rid("Microsoft.ContainerService/managedClusters/nope");
    let l = get_v(&e, &format!("{gone}{ext}"), "2023-05-01").await;
    assert_eq!(l.status, StatusCode::NOT_FOUND);
    assert!(l.text.contains("managedClusters/nope"), "{}", l.text);
}

#[tokio::test]
async fn synapse_pools() {
    let e = env().await;
    let pool = rid("Microsoft.Synapse/workspaces/syn-1/bigDataPools/pool1");
    let r = get_v(&e, &pool, "2021-06-01").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["type"], "Microsoft.Synapse/workspaces/bigDataPools");
    let ws = get_v(&e, &rid("Microsoft.Synapse/workspaces/syn-1"), "2021-06-01").await;
    assert_eq!(ws.status, StatusCode::OK);
    let missing = get_v(
        &e,
        &rid("Microsoft.Synapse/workspaces/syn-1/bigDataPools/nope"),
        "2021-06-01",
    )
    .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn api_versions_are_per_service() {
    let e = env().await;
    // The ML api-version is not the Compute RP's.
    let r = get_v(&e, VM1, V).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.code(), "NoRegisteredProviderFound");
    let r = e.arm(Method::GET, VM1, None).await;
    assert_eq!(r.code(), "MissingApiVersionParameter");
    let r = e
        .arm(
            Method::PUT,
            &format!("{VM1}?api-version=2024-07-01"),
            Some(&json!({})),
        )
        .await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    let other_rg = format!(
        "/subscriptions/{SUB}/resourceGroups/nope/providers/Microsoft.Compute/virtualMachines/x"
    );
    assert_eq!(
        get_v(&e, &other_rg, "2024-07-01").await.code(),
        "ResourceGroupNotFound"
    );
}

#[tokio::test]
async fn underlying_reads_are_throttled_like_every_read() {
    let e = env().await;
    e.control
        .update_config(&SettingsPatch {
            throttling: Some(azureml_emulator::config::ThrottlingPatch {
                reads: Some(azureml_emulator::config::Bucket {
                    burst: 2,
                    per_second: 0.001,
                }),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let r = get_v(&e, VM1, "2024-07-01").await;
        statuses.push(r.status.as_u16());
        if r.status == StatusCode::TOO_MANY_REQUESTS {
            assert!(r.header("retry-after").is_some());
        }
    }
    assert_eq!(statuses, [200, 200, 429]);
}

#[tokio::test]
async fn kubernetes_and_synapse_computes_attach() {
    let e = env().await;
    let k8s = json!({"location": "westeurope", "identity": {"type": "SystemAssigned"},
        "properties": {"computeType": "Kubernetes",
            "resourceId": rid("Microsoft.Kubernetes/connectedClusters/arc-1"),
            "properties": {"namespace": "ml", "defaultInstanceType": "cpu",
                "instanceTypes": {"cpu": {"nodeSelector": {"pool": "cpu"},
                    "resources": {"requests": {"cpu": "1", "memory": "4Gi"}, "limits": {"cpu": "2", "memory": "8Gi"}}}}}}});
    let r = e.put(&compute_path("k8s-one"), &k8s).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    // Not sent, so not echoed by the first 201 (FINDINGS §2).
    assert!(
        r.body["properties"].get("computeLocation").is_none(),
        "{}",
        r.text
    );
    let props = &r.body["properties"]["properties"];
    assert_eq!(props["extensionInstanceReleaseTrain"], "stable");
    assert_eq!(props["relayConnectionString"], serde_json::Value::Null);
    assert!(r.body["identity"]["principalId"].is_string());
    let op = r.header("azure-asyncoperation").unwrap().to_owned();
    assert_eq!(e.wait_op(&op).await.body["status"], "Succeeded");
    let g = e.get(&compute_path("k8s-one")).await;
    assert_eq!(g.body["properties"]["computeLocation"], "westeurope");
    assert_eq!(g.body["properties"]["isAttachedCompute"], true);

    let syn = json!({"location": "westeurope", "properties": {"computeType": "SynapseSpark",
        "resourceId": rid("Microsoft.Synapse/workspaces/syn-1/bigDataPools/pool1"),
        "computeLocation": "westeurope"}});
    let r = e.put(&compute_path("syn-one"), &syn).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["properties"]["computeLocation"], "westeurope");
    let op = r.header("azure-asyncoperation").unwrap().to_owned();
    assert_eq!(e.wait_op(&op).await.body["status"], "Succeeded");
    let g = e.get(&compute_path("syn-one")).await;
    assert_eq!(g.body["properties"]["properties"]["poolName"], "pool1");

    // A pool that does not exist fails provisioning.
    let mut bad = syn.clone();
    bad["properties"]["resourceId"] =
        json!(rid("Microsoft.Synapse/workspaces/syn-1/bigDataPools/nope"));
    let r = e.put(&compute_path("syn-bad"), &bad).await;
    let op = r.header("azure-asyncoperation").unwrap().to_owned();
    let done = e.wait_op(&op).await;
    assert_eq!(done.body["status"], "Failed");
    assert_eq!(done.body["error"]["code"], "UnderlyingResourceNotFound");
    // A VM is not a Kubernetes cluster.
    let mut wrong = k8s.clone();
    wrong["properties"]["resourceId"] = json!(VM1);
    let r = e.put(&compute_path("k8s-bad"), &wrong).await;
    let op = r.header("azure-asyncoperation").unwrap().to_owned();
    assert_eq!(
        e.wait_op(&op).await.body["error"]["code"],
        "InvalidUnderlyingResource"
    );
    // A bad body is refused by the spec.
    let mut typo = k8s.clone();
    typo["properties"]["properties"]["instanceTypes"]["cpu"]["resources"]["requests"] = json!("1");
    let r = e.put(&compute_path("k8s-typo"), &typo).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);

    // DELETE: 202 with Azure-AsyncOperation only.
    let d = e
        .arm(
            Method::DELETE,
            &with_version(&format!(
                "{}?underlyingResourceAction=Detach",
                compute_path("k8s-one")
            )),
            None,
        )
        .await;
    assert_eq!(d.status, StatusCode::ACCEPTED);
    assert!(d.header("location").is_none());
    assert!(d.header("azure-asyncoperation").is_some());
}

#[tokio::test]
async fn a_seeded_world_resource_is_read_back() {
    let mut cfg = EmulatorConfig::fast();
    cfg.resources.push(azureml_emulator::WorldResource {
        id: rid("Microsoft.Compute/virtualMachines/suse-vm"),
        address: Some("20.61.0.99".into()),
        image: Some(azureml_emulator::ImageReference::new(
            "SUSE",
            "sles-15-sp6",
            "gen2",
        )),
        ..Default::default()
    });
    let e = env_with(cfg).await;
    let r = get_v(
        &e,
        &rid("Microsoft.Compute/virtualMachines/suse-vm"),
        "2025-04-01",
    )
    .await;
    assert_eq!(
        r.body["properties"]["storageProfile"]["imageReference"]["offer"],
        "sles-15-sp6"
    );
}
