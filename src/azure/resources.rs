//! Typed reads of the underlying resources an attach depends on (preflight): virtual machines,
//! their network interfaces and public IPs, HDInsight clusters, AKS and Arc-enabled clusters and
//! their extensions, Synapse Spark pools.
//!
//! Every read goes through [`ArmClient`]'s throttled path (the reads bucket of the resource's
//! subscription, one quick retry) and answers `Ok(None)` on 404. The bodies keep only what
//! [`super::prerequisites`] checks; unknown fields are ignored and `null` is accepted anywhere.
//! Each service has its own api-version (the ML one would be refused).

use reqwest::Method;
use serde::{Deserialize, Deserializer};
use url::Url;

use super::arm::{ArmClient, decode};
use super::error::ArmError;

/// api-version of `Microsoft.Compute/virtualMachines`.
pub const COMPUTE_API_VERSION: &str = "2024-07-01";
/// api-version of `Microsoft.Network` (network interfaces, public IPs).
pub const NETWORK_API_VERSION: &str = "2024-05-01";
/// api-version of `Microsoft.HDInsight/clusters`.
pub const HDINSIGHT_API_VERSION: &str = "2021-06-01";
/// api-version of `Microsoft.ContainerService/managedClusters`.
pub const CONTAINER_SERVICE_API_VERSION: &str = "2025-01-01";
/// api-version of `Microsoft.Kubernetes/connectedClusters`.
pub const CONNECTED_CLUSTER_API_VERSION: &str = "2024-01-01";
/// api-version of `Microsoft.KubernetesConfiguration/extensions`.
pub const EXTENSIONS_API_VERSION: &str = "2023-05-01";
/// api-version of `Microsoft.Synapse` (workspaces, bigDataPools).
pub const SYNAPSE_API_VERSION: &str = "2021-06-01";

/// Upper bound on extension pages followed.
const MAX_PAGES: usize = 100;

fn null_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// A reference to another resource (`{"id": …}`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct SubResource {
    /// ARM id.
    #[serde(default)]
    pub id: Option<String>,
}

/// `Microsoft.Compute/virtualMachines` (only what preflight reads).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct VirtualMachine {
    /// ARM id.
    #[serde(default)]
    pub id: Option<String>,
    /// Name.
    #[serde(default)]
    pub name: Option<String>,
    /// Properties.
    #[serde(default, deserialize_with = "null_default")]
    pub properties: VirtualMachineProperties,
}

/// `VirtualMachineProperties`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VirtualMachineProperties {
    /// Image and OS disk.
    #[serde(default, deserialize_with = "null_default")]
    pub storage_profile: StorageProfile,
    /// NICs.
    #[serde(default, deserialize_with = "null_default")]
    pub network_profile: NetworkProfile,
    /// `Succeeded`, …
    #[serde(default)]
    pub provisioning_state: Option<String>,
}

/// `StorageProfile`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StorageProfile {
    /// Marketplace image (absent or only `id` for custom/gallery images).
    #[serde(default)]
    pub image_reference: Option<ImageReference>,
    /// OS disk.
    #[serde(default)]
    pub os_disk: Option<OsDisk>,
}

/// `ImageReference`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageReference {
    /// `Canonical`, `MicrosoftWindowsServer`, …
    #[serde(default)]
    pub publisher: Option<String>,
    /// `ubuntu-24_04-lts`, `0001-com-ubuntu-server-jammy`, …
    #[serde(default)]
    pub offer: Option<String>,
    /// `server`, `22_04-lts-gen2`, …
    #[serde(default)]
    pub sku: Option<String>,
    /// Custom or gallery image id.
    #[serde(default)]
    pub id: Option<String>,
}

/// `OSDisk`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OsDisk {
    /// `Linux` or `Windows`.
    #[serde(default)]
    pub os_type: Option<String>,
}

/// `NetworkProfile`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkProfile {
    /// NIC references.
    #[serde(default, deserialize_with = "null_default")]
    pub network_interfaces: Vec<NetworkInterfaceReference>,
}

/// `NetworkInterfaceReference`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct NetworkInterfaceReference {
    /// NIC id.
    #[serde(default)]
    pub id: Option<String>,
    /// `{primary}`.
    #[serde(default, deserialize_with = "null_default")]
    pub properties: NetworkInterfaceReferenceProperties,
}

/// `NetworkInterfaceReferenceProperties`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct NetworkInterfaceReferenceProperties {
    /// Whether this is the primary NIC.
    #[serde(default)]
    pub primary: Option<bool>,
}

impl VirtualMachine {
    /// The primary NIC's id (the only one, or the one marked primary).
    pub fn primary_nic_id(&self) -> Option<&str> {
        let nics = &self.properties.network_profile.network_interfaces;
        nics.iter()
            .find(|n| n.properties.primary == Some(true))
            .or_else(|| nics.first())
            .and_then(|n| n.id.as_deref())
    }
}

/// `Microsoft.Network/networkInterfaces`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct NetworkInterface {
    /// ARM id.
    #[serde(default)]
    pub id: Option<String>,
    /// Properties.
    #[serde(default, deserialize_with = "null_default")]
    pub properties: NetworkInterfaceProperties,
}

/// `NetworkInterfacePropertiesFormat`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkInterfaceProperties {
    /// IP configurations.
    #[serde(default, deserialize_with = "null_default")]
    pub ip_configurations: Vec<IpConfiguration>,
}

/// `NetworkInterfaceIPConfiguration`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct IpConfiguration {
    /// Name.
    #[serde(default)]
    pub name: Option<String>,
    /// Properties.
    #[serde(default, deserialize_with = "null_default")]
    pub properties: IpConfigurationProperties,
}

/// `NetworkInterfaceIPConfigurationPropertiesFormat`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IpConfigurationProperties {
    /// Private address.
    #[serde(default, rename = "privateIPAddress")]
    pub private_ip_address: Option<String>,
    /// The public IP resource, if one is associated.
    #[serde(default, rename = "publicIPAddress")]
    pub public_ip_address: Option<SubResource>,
    /// Whether this is the primary configuration.
    #[serde(default)]
    pub primary: Option<bool>,
}

impl NetworkInterface {
    /// The id of the first public IP associated with one of the NIC's configurations.
    pub fn public_ip_id(&self) -> Option<&str> {
        self.properties
            .ip_configurations
            .iter()
            .find_map(|c| c.properties.public_ip_address.as_ref()?.id.as_deref())
    }
}

/// `Microsoft.Network/publicIPAddresses`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct PublicIpAddress {
    /// ARM id.
    #[serde(default)]
    pub id: Option<String>,
    /// Properties.
    #[serde(default, deserialize_with = "null_default")]
    pub properties: PublicIpAddressProperties,
}

/// `PublicIPAddressPropertiesFormat`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct PublicIpAddressProperties {
    /// The address (absent while a dynamic IP is unallocated).
    #[serde(default, rename = "ipAddress")]
    pub ip_address: Option<String>,
}

/// A VM with the NIC and public IP preflight looked at.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VmNetworkView {
    /// The VM.
    pub vm: VirtualMachine,
    /// Its primary NIC, when it has one that exists.
    pub nic: Option<NetworkInterface>,
    /// The NIC's public IP, when it has one that exists.
    pub public_ip: Option<PublicIpAddress>,
}

/// `Microsoft.HDInsight/clusters`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct HdInsightCluster {
    /// ARM id.
    #[serde(default)]
    pub id: Option<String>,
    /// Name.
    #[serde(default)]
    pub name: Option<String>,
    /// Properties.
    #[serde(default, deserialize_with = "null_default")]
    pub properties: HdInsightClusterProperties,
}

/// `ClusterGetProperties`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HdInsightClusterProperties {
    /// `Running`, `Accepted`, `Error`, `Deleting`, …
    #[serde(default)]
    pub cluster_state: Option<String>,
    /// `Succeeded`, …
    #[serde(default)]
    pub provisioning_state: Option<String>,
    /// `SSH`, `HTTPS` (public) or `SSH-INTERNAL`, `HTTPS-INTERNAL` (private link).
    #[serde(default, deserialize_with = "null_default")]
    pub connectivity_endpoints: Vec<ConnectivityEndpoint>,
}

/// `ConnectivityEndpoint`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectivityEndpoint {
    /// `SSH`, `HTTPS`, `SSH-INTERNAL`, …
    #[serde(default)]
    pub name: Option<String>,
    /// `TCP`.
    #[serde(default)]
    pub protocol: Option<String>,
    /// Host name.
    #[serde(default)]
    pub location: Option<String>,
    /// Port.
    #[serde(default)]
    pub port: Option<i32>,
    /// Private address (private endpoints only).
    #[serde(default, rename = "privateIPAddress")]
    pub private_ip_address: Option<String>,
}

/// `Microsoft.ContainerService/managedClusters` or `Microsoft.Kubernetes/connectedClusters`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct KubernetesCluster {
    /// ARM id.
    #[serde(default)]
    pub id: Option<String>,
    /// Name.
    #[serde(default)]
    pub name: Option<String>,
    /// Properties.
    #[serde(default, deserialize_with = "null_default")]
    pub properties: KubernetesClusterProperties,
}

/// The properties both cluster kinds share, plus Arc's connectivity.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KubernetesClusterProperties {
    /// `Succeeded`, …
    #[serde(default)]
    pub provisioning_state: Option<String>,
    /// Arc: `Connected`, `Offline`, `Expired`, …
    #[serde(default)]
    pub connectivity_status: Option<String>,
}

/// `Microsoft.KubernetesConfiguration/extensions`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct ClusterExtension {
    /// ARM id.
    #[serde(default)]
    pub id: Option<String>,
    /// Name (`azureml`).
    #[serde(default)]
    pub name: Option<String>,
    /// Properties.
    #[serde(default, deserialize_with = "null_default")]
    pub properties: ClusterExtensionProperties,
}

/// Extension properties.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterExtensionProperties {
    /// `Microsoft.AzureML.Kubernetes`, `microsoft.flux`, …
    #[serde(default)]
    pub extension_type: Option<String>,
    /// `Succeeded`, `Failed`, `Creating`, …
    #[serde(default)]
    pub provisioning_state: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ExtensionsList {
    #[serde(default, deserialize_with = "null_default")]
    value: Vec<ClusterExtension>,
    #[serde(default)]
    next_link: Option<String>,
}

/// `Microsoft.Synapse/workspaces/bigDataPools`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct SynapseSparkPool {
    /// ARM id.
    #[serde(default)]
    pub id: Option<String>,
    /// Name.
    #[serde(default)]
    pub name: Option<String>,
    /// Properties.
    #[serde(default, deserialize_with = "null_default")]
    pub properties: SynapseSparkPoolProperties,
}

/// `BigDataPoolResourceProperties`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SynapseSparkPoolProperties {
    /// `Succeeded`, …
    #[serde(default)]
    pub provisioning_state: Option<String>,
    /// `3.4`, …
    #[serde(default)]
    pub spark_version: Option<String>,
}

/// Operation names (the services' operationIds) for metrics, logs and errors.
mod op {
    pub const VM_GET: &str = "VirtualMachines_Get";
    pub const NIC_GET: &str = "NetworkInterfaces_Get";
    pub const PUBLIC_IP_GET: &str = "PublicIPAddresses_Get";
    pub const HDINSIGHT_GET: &str = "Clusters_Get";
    pub const MANAGED_CLUSTER_GET: &str = "ManagedClusters_Get";
    pub const CONNECTED_CLUSTER_GET: &str = "ConnectedCluster_Get";
    pub const EXTENSIONS_LIST: &str = "Extensions_List";
    pub const SPARK_POOL_GET: &str = "BigDataPools_Get";
}

/// The subscription of an ARM id (`/subscriptions/{sub}/…`).
fn subscription_of(id: &str) -> Option<&str> {
    let mut s = id.trim_start_matches('/').split('/');
    match (s.next(), s.next()) {
        (Some(k), Some(sub)) if k.eq_ignore_ascii_case("subscriptions") && !sub.is_empty() => {
            Some(sub)
        }
        _ => None,
    }
}

impl ArmClient {
    /// `{arm}{id}{suffix…}?api-version=V`, refusing ids that are not a plain ARM path (same
    /// rules as the compute URLs: no empty, `.`/`..` or control-character segments).
    fn resource_url(&self, id: &str, suffix: &[&str], api_version: &str) -> Result<Url, ArmError> {
        let invalid = |reason: String| ArmError::InvalidOperationUrl { reason };
        if subscription_of(id).is_none() {
            return Err(invalid(format!("{id:?} is not an ARM resource id")));
        }
        let segments: Vec<&str> = id
            .trim_start_matches('/')
            .split('/')
            .chain(suffix.iter().copied())
            .collect();
        if let Some(bad) = segments
            .iter()
            .find(|s| matches!(**s, "" | "." | "..") || s.chars().any(char::is_control))
        {
            return Err(invalid(format!(
                "{bad:?} is not a valid name in an ARM resource path"
            )));
        }
        let mut url = self.endpoints().arm_endpoint.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty();
            path.extend(segments);
        }
        url.query_pairs_mut()
            .append_pair("api-version", api_version);
        Ok(url)
    }

    /// GET a resource; `None` on 404.
    async fn read<T: serde::de::DeserializeOwned>(
        &self,
        operation: &'static str,
        id: &str,
        suffix: &[&str],
        api_version: &str,
    ) -> Result<Option<T>, ArmError> {
        let url = self.resource_url(id, suffix, api_version)?;
        let subscription = subscription_of(id).unwrap_or_default();
        match self
            .execute(operation, Method::GET, url, subscription, None)
            .await
        {
            Ok(resp) => decode(operation, &resp.body).map(Some),
            Err(ArmError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// GET a virtual machine.
    pub async fn get_virtual_machine(&self, id: &str) -> Result<Option<VirtualMachine>, ArmError> {
        self.read(op::VM_GET, id, &[], COMPUTE_API_VERSION).await
    }

    /// GET a network interface.
    pub async fn get_network_interface(
        &self,
        id: &str,
    ) -> Result<Option<NetworkInterface>, ArmError> {
        self.read(op::NIC_GET, id, &[], NETWORK_API_VERSION).await
    }

    /// GET a public IP address.
    pub async fn get_public_ip(&self, id: &str) -> Result<Option<PublicIpAddress>, ArmError> {
        self.read(op::PUBLIC_IP_GET, id, &[], NETWORK_API_VERSION)
            .await
    }

    /// GET a VM, then its primary NIC and that NIC's public IP (up to three reads).
    /// `None` when the VM does not exist.
    pub async fn get_vm_with_network(&self, id: &str) -> Result<Option<VmNetworkView>, ArmError> {
        let Some(vm) = self.get_virtual_machine(id).await? else {
            return Ok(None);
        };
        let nic = match vm.primary_nic_id() {
            Some(nic_id) => self.get_network_interface(nic_id).await?,
            None => None,
        };
        let public_ip = match nic.as_ref().and_then(NetworkInterface::public_ip_id) {
            Some(ip_id) => self.get_public_ip(ip_id).await?,
            None => None,
        };
        Ok(Some(VmNetworkView { vm, nic, public_ip }))
    }

    /// GET an HDInsight cluster.
    pub async fn get_hdinsight_cluster(
        &self,
        id: &str,
    ) -> Result<Option<HdInsightCluster>, ArmError> {
        self.read(op::HDINSIGHT_GET, id, &[], HDINSIGHT_API_VERSION)
            .await
    }

    /// GET an AKS cluster.
    pub async fn get_managed_cluster(
        &self,
        id: &str,
    ) -> Result<Option<KubernetesCluster>, ArmError> {
        self.read(
            op::MANAGED_CLUSTER_GET,
            id,
            &[],
            CONTAINER_SERVICE_API_VERSION,
        )
        .await
    }

    /// GET an Arc-enabled cluster.
    pub async fn get_connected_cluster(
        &self,
        id: &str,
    ) -> Result<Option<KubernetesCluster>, ArmError> {
        self.read(
            op::CONNECTED_CLUSTER_GET,
            id,
            &[],
            CONNECTED_CLUSTER_API_VERSION,
        )
        .await
    }

    /// GET a managed or connected cluster, by the provider in its id.
    pub async fn get_kubernetes_cluster(
        &self,
        id: &str,
    ) -> Result<Option<KubernetesCluster>, ArmError> {
        if id
            .to_ascii_lowercase()
            .contains("/providers/microsoft.kubernetes/connectedclusters/")
        {
            self.get_connected_cluster(id).await
        } else {
            self.get_managed_cluster(id).await
        }
    }

    /// LIST a cluster's extensions (following `nextLink`); `None` when the cluster is gone.
    pub async fn list_cluster_extensions(
        &self,
        cluster_id: &str,
    ) -> Result<Option<Vec<ClusterExtension>>, ArmError> {
        let suffix = [
            "providers",
            "Microsoft.KubernetesConfiguration",
            "extensions",
        ];
        let mut url = self.resource_url(cluster_id, &suffix, EXTENSIONS_API_VERSION)?;
        let subscription = subscription_of(cluster_id).unwrap_or_default();
        let mut all = Vec::new();
        for _ in 0..MAX_PAGES {
            let resp = match self
                .execute(op::EXTENSIONS_LIST, Method::GET, url, subscription, None)
                .await
            {
                Ok(resp) => resp,
                Err(ArmError::NotFound { .. }) => return Ok(None),
                Err(e) => return Err(e),
            };
            let page: ExtensionsList = decode(op::EXTENSIONS_LIST, &resp.body)?;
            all.extend(page.value);
            match page.next_link.filter(|l| !l.is_empty()) {
                Some(next) => url = self.same_origin_url(&next, false)?,
                None => return Ok(Some(all)),
            }
        }
        Err(ArmError::InvalidOperationUrl {
            reason: format!(
                "{} returned more than {MAX_PAGES} pages",
                op::EXTENSIONS_LIST
            ),
        })
    }

    /// GET a Synapse Spark pool.
    pub async fn get_synapse_pool(&self, id: &str) -> Result<Option<SynapseSparkPool>, ArmError> {
        self.read(op::SPARK_POOL_GET, id, &[], SYNAPSE_API_VERSION)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_tolerate_nulls_and_unknown_fields() {
        let vm: VirtualMachine = serde_json::from_value(serde_json::json!({
            "id": "/subscriptions/s/resourceGroups/r/providers/Microsoft.Compute/virtualMachines/v",
            "zz": 1,
            "properties": {"storageProfile": {"imageReference": {"publisher": "Canonical",
                "offer": "ubuntu-24_04-lts", "sku": "server", "version": "latest"},
                "osDisk": {"osType": "Linux", "name": "d"}},
                "networkProfile": {"networkInterfaces": [
                    {"id": "a", "properties": {"primary": false}},
                    {"id": "b", "properties": {"primary": true}}]}}
        }))
        .expect("a VM");
        assert_eq!(vm.primary_nic_id(), Some("b"));
        let empty: VirtualMachine =
            serde_json::from_value(serde_json::json!({"properties": null})).expect("null");
        assert_eq!(empty.primary_nic_id(), None);
        let nic: NetworkInterface = serde_json::from_value(serde_json::json!({"properties":
            {"ipConfigurations": [{"properties": {"privateIPAddress": "10.0.0.4", "publicIPAddress": null}},
                                  {"properties": {"publicIPAddress": {"id": "ip"}}}]}}))
        .expect("a NIC");
        assert_eq!(nic.public_ip_id(), Some("ip"));
        let hdi: HdInsightCluster = serde_json::from_value(serde_json::json!({"properties":
            {"clusterState": "Running", "connectivityEndpoints": null}}))
        .expect("a cluster");
        assert!(hdi.properties.connectivity_endpoints.is_empty());
    }

    #[test]
    fn subscriptions_of_ids() {
        assert_eq!(
            subscription_of("/subscriptions/s1/resourceGroups/r"),
            Some("s1")
        );
        assert_eq!(subscription_of("/SUBSCRIPTIONS/s1"), Some("s1"));
        assert_eq!(subscription_of("/resourceGroups/r"), None);
        assert_eq!(subscription_of(""), None);
    }
}
