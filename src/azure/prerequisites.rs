//! Pure checks of what an attach needs from its underlying resource (the seed article's
//! warnings): a VM runs Linux from an Ubuntu image and has a public IP; an HDInsight cluster is
//! Running with a public SSH endpoint; a Kubernetes cluster has the Azure ML extension
//! installed and Succeeded; a Synapse Spark pool is provisioned.
//!
//! Existence is not checked here: a read that answered `None` is `ResourceNotFound` for the
//! caller. Each failure names the fact found and what to do about it.

use super::resources::{
    ClusterExtension, HdInsightCluster, NetworkInterface, PublicIpAddress, SynapseSparkPool,
    VirtualMachine,
};

/// Extension type of the Azure ML extension for Kubernetes.
pub const AZUREML_EXTENSION_TYPE: &str = "Microsoft.AzureML.Kubernetes";

/// A prerequisite the resource does not meet.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{fact}; {remedy}")]
pub struct Unmet {
    /// What was found (`the VM runs Windows`).
    pub fact: String,
    /// What to do (`attach a Linux VM …`).
    pub remedy: String,
}

impl Unmet {
    fn new(fact: impl Into<String>, remedy: impl Into<String>) -> Self {
        Self {
            fact: fact.into(),
            remedy: remedy.into(),
        }
    }
}

fn eq(a: Option<&str>, b: &str) -> bool {
    a.is_some_and(|a| a.eq_ignore_ascii_case(b))
}

fn name_or<'a>(name: Option<&'a str>, id: Option<&'a str>) -> &'a str {
    name.or_else(|| id.and_then(|i| i.rsplit('/').next()))
        .unwrap_or("the resource")
}

/// A VM runs Linux, from an Ubuntu image (publisher `Canonical` or an offer naming Ubuntu), and
/// its primary NIC has a public IP with an address. `nic` and `ip` are what
/// [`super::ArmClient::get_vm_with_network`] found (`None`: none, or it does not exist).
pub fn vm_check(
    vm: &VirtualMachine,
    nic: Option<&NetworkInterface>,
    ip: Option<&PublicIpAddress>,
) -> Result<(), Unmet> {
    let name = name_or(vm.name.as_deref(), vm.id.as_deref());
    let storage = &vm.properties.storage_profile;
    let os = storage.os_disk.as_ref().and_then(|d| d.os_type.as_deref());
    if !eq(os, "Linux") {
        return Err(Unmet::new(
            format!("VM {name} runs {}", os.unwrap_or("an unknown OS")),
            "Azure ML attaches only Linux VMs running Ubuntu: attach an Ubuntu VM (e.g. image Canonical ubuntu-24_04-lts)",
        ));
    }
    let image = storage.image_reference.as_ref();
    let publisher = image.and_then(|i| i.publisher.as_deref());
    let offer = image.and_then(|i| i.offer.as_deref());
    let ubuntu = eq(publisher, "Canonical")
        || offer.is_some_and(|o| o.to_ascii_lowercase().contains("ubuntu"));
    if !ubuntu {
        let fact = match (publisher, offer) {
            (Some(p), Some(o)) => format!("VM {name} runs Linux from image {p} {o}, not Ubuntu"),
            _ => format!(
                "VM {name} runs Linux from a custom or gallery image that cannot be confirmed as Ubuntu"
            ),
        };
        return Err(Unmet::new(
            fact,
            "Azure ML supports only Ubuntu on attached VMs: attach an Ubuntu VM, or set preflight: Warn (or Skip) if the image is Ubuntu",
        ));
    }
    let Some(nic) = nic else {
        return Err(Unmet::new(
            format!("VM {name} has no network interface that could be read"),
            "give the VM a network interface with a public IP address",
        ));
    };
    if nic.public_ip_id().is_none() {
        return Err(Unmet::new(
            format!("VM {name} has no public IP address"),
            "associate a public IP address with the VM's network interface (az network nic ip-config update --public-ip-address …)",
        ));
    }
    match ip.and_then(|ip| ip.properties.ip_address.as_deref()) {
        Some(a) if !a.is_empty() => Ok(()),
        _ => Err(Unmet::new(
            format!("the public IP of VM {name} has no address allocated"),
            "start the VM or make the public IP static so it has an address",
        )),
    }
}

/// An HDInsight cluster is `Running` and has the public `SSH` endpoint.
pub fn hdinsight_check(cluster: &HdInsightCluster) -> Result<(), Unmet> {
    let name = name_or(cluster.name.as_deref(), cluster.id.as_deref());
    let state = cluster.properties.cluster_state.as_deref();
    if !eq(state, "Running") {
        return Err(Unmet::new(
            format!(
                "HDInsight cluster {name} is {}",
                state.unwrap_or("in an unknown state")
            ),
            "wait until the cluster is Running, or repair it, before attaching",
        ));
    }
    let public_ssh = cluster.properties.connectivity_endpoints.iter().any(|e| {
        eq(e.name.as_deref(), "SSH") && e.location.as_deref().is_some_and(|l| !l.is_empty())
    });
    if public_ssh {
        Ok(())
    } else {
        Err(Unmet::new(
            format!("HDInsight cluster {name} has no public SSH endpoint"),
            "Azure ML reaches HDInsight over public SSH: use a cluster with public network access",
        ))
    }
}

/// A Kubernetes cluster (`cluster_id`, managed or connected) has an extension of type
/// `Microsoft.AzureML.Kubernetes` whose provisioningState is `Succeeded`.
pub fn kubernetes_check(cluster_id: &str, extensions: &[ClusterExtension]) -> Result<(), Unmet> {
    let segments: Vec<&str> = cluster_id.trim_start_matches('/').split('/').collect();
    let rg = segments.get(3).copied().unwrap_or("<resource-group>");
    let name = segments.last().copied().unwrap_or("<cluster>");
    let cluster_type = if cluster_id
        .to_ascii_lowercase()
        .contains("/microsoft.kubernetes/connectedclusters/")
    {
        "connectedClusters"
    } else {
        "managedClusters"
    };
    let create = format!(
        "az k8s-extension create --name azureml --extension-type {AZUREML_EXTENSION_TYPE} --cluster-type {cluster_type} --cluster-name {name} --resource-group {rg} --scope cluster --config enableTraining=True"
    );
    let Some(ext) = extensions.iter().find(|e| {
        eq(
            e.properties.extension_type.as_deref(),
            AZUREML_EXTENSION_TYPE,
        )
    }) else {
        return Err(Unmet::new(
            format!(
                "cluster {name} does not have the {AZUREML_EXTENSION_TYPE} extension installed"
            ),
            format!("install it: {create}"),
        ));
    };
    let state = ext.properties.provisioning_state.as_deref();
    if eq(state, "Succeeded") {
        Ok(())
    } else {
        let ext_name = ext.name.as_deref().unwrap_or("azureml");
        Err(Unmet::new(
            format!(
                "the {AZUREML_EXTENSION_TYPE} extension {ext_name} on cluster {name} is {}",
                state.unwrap_or("in an unknown state")
            ),
            format!(
                "wait for it to succeed, or see az k8s-extension show --name {ext_name} --cluster-type {cluster_type} --cluster-name {name} --resource-group {rg}; to reinstall, delete it and run {create}"
            ),
        ))
    }
}

/// A Synapse Spark pool is provisioned (`Succeeded`, or no state reported).
pub fn synapse_pool_check(pool: &SynapseSparkPool) -> Result<(), Unmet> {
    let name = name_or(pool.name.as_deref(), pool.id.as_deref());
    match pool.properties.provisioning_state.as_deref() {
        None => Ok(()),
        Some(s) if s.eq_ignore_ascii_case("Succeeded") => Ok(()),
        Some(s) => Err(Unmet::new(
            format!("Synapse Spark pool {name} is {s}"),
            "wait until the pool is provisioned (Succeeded) before attaching",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn vm(os: &str, publisher: &str, offer: &str) -> VirtualMachine {
        serde_json::from_value(json!({"name": "v", "properties": {"storageProfile": {
            "imageReference": {"publisher": publisher, "offer": offer, "sku": "s"},
            "osDisk": {"osType": os}}}}))
        .expect("vm")
    }
    fn nic(public: bool) -> NetworkInterface {
        let ip = if public {
            json!({"id": "ip"})
        } else {
            Value::Null
        };
        serde_json::from_value(json!({"properties": {"ipConfigurations": [
            {"properties": {"privateIPAddress": "10.0.0.4", "publicIPAddress": ip}}]}}))
        .expect("nic")
    }
    fn ip(addr: Option<&str>) -> PublicIpAddress {
        serde_json::from_value(json!({"properties": {"ipAddress": addr}})).expect("ip")
    }

    /// (label, VM, its NIC, its public IP, the fact expected or None for a pass).
    type VmCase<'a> = (
        &'a str,
        &'a VirtualMachine,
        Option<NetworkInterface>,
        Option<&'a PublicIpAddress>,
        Option<&'a str>,
    );

    #[test]
    fn vm_table() {
        let ubuntu = vm("Linux", "Canonical", "ubuntu-24_04-lts");
        let dsvm = vm("Linux", "microsoft-dsvm", "ubuntu-2204");
        let rhel = vm("Linux", "RedHat", "RHEL");
        let win = vm("Windows", "MicrosoftWindowsServer", "WindowsServer");
        let custom: VirtualMachine = serde_json::from_value(json!({"properties": {"storageProfile": {
            "imageReference": {"id": "/subscriptions/s/galleries/g"}, "osDisk": {"osType": "Linux"}}}}))
        .expect("vm");
        let addr = ip(Some("20.61.0.10"));
        let none = ip(None);
        let cases: [VmCase<'_>; 8] = [
            (
                "ubuntu with public ip",
                &ubuntu,
                Some(nic(true)),
                Some(&addr),
                None,
            ),
            (
                "dsvm offer names ubuntu",
                &dsvm,
                Some(nic(true)),
                Some(&addr),
                None,
            ),
            (
                "windows",
                &win,
                Some(nic(true)),
                Some(&addr),
                Some("runs Windows"),
            ),
            (
                "rhel",
                &rhel,
                Some(nic(true)),
                Some(&addr),
                Some("RedHat RHEL, not Ubuntu"),
            ),
            (
                "custom image",
                &custom,
                Some(nic(true)),
                Some(&addr),
                Some("cannot be confirmed"),
            ),
            (
                "no public ip",
                &ubuntu,
                Some(nic(false)),
                None,
                Some("no public IP address"),
            ),
            (
                "unallocated ip",
                &ubuntu,
                Some(nic(true)),
                Some(&none),
                Some("no address allocated"),
            ),
            ("no nic", &ubuntu, None, None, Some("no network interface")),
        ];
        for (label, vm, nic, ip, want) in cases {
            let got = vm_check(vm, nic.as_ref(), ip);
            match want {
                None => assert_eq!(got, Ok(()), "{label}"),
                Some(fact) => {
                    let e = got.expect_err(label);
                    assert!(e.fact.contains(fact), "{label}: {e:?}");
                    assert!(!e.remedy.is_empty(), "{label}");
                }
            }
        }
    }

    fn hdi(state: &str, endpoints: Value) -> HdInsightCluster {
        serde_json::from_value(json!({"name": "h", "properties": {"clusterState": state,
            "connectivityEndpoints": endpoints}}))
        .expect("hdi")
    }

    #[test]
    fn hdinsight_table() {
        let public = json!([{"name": "SSH", "location": "h-ssh.azurehdinsight.net", "port": 22}]);
        let private = json!([{"name": "SSH-INTERNAL", "location": "h-ssh.azurehdinsight.net", "privateIPAddress": "10.0.0.1"}]);
        assert_eq!(hdinsight_check(&hdi("Running", public.clone())), Ok(()));
        let e = hdinsight_check(&hdi("Error", public)).expect_err("not running");
        assert_eq!(e.fact, "HDInsight cluster h is Error");
        let e = hdinsight_check(&hdi("Running", private)).expect_err("private");
        assert!(e.fact.contains("no public SSH endpoint"), "{e:?}");
        let e = hdinsight_check(&hdi("Running", Value::Null)).expect_err("none");
        assert!(e.fact.contains("no public SSH endpoint"), "{e:?}");
    }

    fn ext(ty: &str, state: Option<&str>) -> ClusterExtension {
        serde_json::from_value(
            json!({"name": "azureml", "properties": {"extensionType": ty,
            "provisioningState": state}}),
        )
        .expect("ext")
    }

    #[test]
    fn kubernetes_table() {
        let aks = "/subscriptions/s/resourceGroups/ml-rg/providers/Microsoft.ContainerService/managedClusters/aks-1";
        let arc = "/subscriptions/s/resourceGroups/ml-rg/providers/Microsoft.Kubernetes/connectedClusters/arc-1";
        let ok = ext("microsoft.azureml.kubernetes", Some("Succeeded"));
        assert_eq!(kubernetes_check(aks, &[ok]), Ok(()));
        let e =
            kubernetes_check(aks, &[ext("microsoft.flux", Some("Succeeded"))]).expect_err("none");
        assert!(
            e.fact
                .contains("does not have the Microsoft.AzureML.Kubernetes extension")
        );
        assert!(e.remedy.contains("az k8s-extension create --name azureml --extension-type Microsoft.AzureML.Kubernetes --cluster-type managedClusters --cluster-name aks-1 --resource-group ml-rg"), "{}", e.remedy);
        let e = kubernetes_check(arc, &[]).expect_err("none");
        assert!(
            e.remedy.contains("--cluster-type connectedClusters"),
            "{}",
            e.remedy
        );
        let e = kubernetes_check(arc, &[ext(AZUREML_EXTENSION_TYPE, Some("Failed"))])
            .expect_err("failed");
        assert!(e.fact.ends_with("is Failed"), "{e:?}");
        assert!(e.remedy.contains("az k8s-extension"), "{}", e.remedy);
    }

    #[test]
    fn synapse_table() {
        let pool = |s: Value| -> SynapseSparkPool {
            serde_json::from_value(json!({"name": "p", "properties": {"provisioningState": s}}))
                .expect("pool")
        };
        assert_eq!(synapse_pool_check(&pool(json!("Succeeded"))), Ok(()));
        assert_eq!(synapse_pool_check(&pool(Value::Null)), Ok(()));
        assert!(synapse_pool_check(&pool(json!("Provisioning"))).is_err());
    }
}
