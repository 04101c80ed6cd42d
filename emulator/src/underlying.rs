//! GET of the underlying resources an attach reads before it PUTs (preflight): virtual
//! machines, their network interfaces and public IPs, HDInsight clusters, AKS and Arc clusters
//! and their extensions, Synapse workspaces and Spark pools.
//!
//! Bodies follow the example responses of each service's REST API specification
//! (Azure/azure-rest-api-specs: `compute/…/virtualMachineExamples/VirtualMachine_Get.json`,
//! `network/…/NetworkInterfaceGet.json`, `PublicIpAddressGet.json`,
//! `hdinsight/…/GetLinuxSparkCluster.json`, `containerservice/…/ManagedClustersGet.json`,
//! `hybridkubernetes/…/GetClusterExample.json`, `kubernetesconfiguration/…/GetExtension.json`,
//! `synapse/…/GetBigDataPool.json`), filled from the world's [`WorldResource`]s: only the
//! fields a client can act on vary, the rest is constant and shape-faithful.

use serde_json::{Value, json};

use crate::config::{
    AZUREML_EXTENSION_TYPE, ClusterExtension, ImageReference, ResourceKind, WorldResource,
};
use crate::response::ArmError;
use crate::state::Inner;
use http::StatusCode;

/// Which underlying resource a path names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnderlyingKind {
    /// `Microsoft.Compute/virtualMachines/{vm}`.
    VirtualMachine,
    /// `Microsoft.Network/networkInterfaces/{nic}`.
    NetworkInterface,
    /// `Microsoft.Network/publicIPAddresses/{ip}`.
    PublicIpAddress,
    /// `Microsoft.HDInsight/clusters/{cluster}`.
    HdInsightCluster,
    /// `Microsoft.ContainerService/managedClusters/{cluster}`.
    ManagedCluster,
    /// `Microsoft.Kubernetes/connectedClusters/{cluster}`.
    ConnectedCluster,
    /// `{cluster}/providers/Microsoft.KubernetesConfiguration/extensions`.
    ExtensionList,
    /// `{cluster}/providers/Microsoft.KubernetesConfiguration/extensions/{name}`.
    Extension,
    /// `Microsoft.Synapse/workspaces/{ws}`.
    SynapseWorkspace,
    /// `Microsoft.Synapse/workspaces/{ws}/bigDataPools/{pool}`.
    SynapseSparkPool,
}

impl UnderlyingKind {
    /// api-versions served, newest first: stable versions of each service's spec.
    pub fn api_versions(self) -> &'static [&'static str] {
        match self {
            Self::VirtualMachine => &["2025-04-01", "2024-11-01", "2024-07-01", "2024-03-01"],
            Self::NetworkInterface | Self::PublicIpAddress => {
                &["2024-10-01", "2024-07-01", "2024-05-01", "2024-03-01"]
            }
            Self::HdInsightCluster => &["2024-08-01-preview", "2023-04-15-preview", "2021-06-01"],
            Self::ManagedCluster => &["2025-05-01", "2025-01-01", "2024-10-01", "2024-09-01"],
            Self::ConnectedCluster => &["2024-01-01", "2021-10-01"],
            Self::ExtensionList | Self::Extension => &["2024-11-01", "2023-05-01", "2022-11-01"],
            Self::SynapseWorkspace | Self::SynapseSparkPool => &["2021-06-01"],
        }
    }

    /// The spec's operationId of the GET.
    pub fn operation(self) -> &'static str {
        match self {
            Self::VirtualMachine => "VirtualMachines_Get",
            Self::NetworkInterface => "NetworkInterfaces_Get",
            Self::PublicIpAddress => "PublicIPAddresses_Get",
            Self::HdInsightCluster => "Clusters_Get",
            Self::ManagedCluster => "ManagedClusters_Get",
            Self::ConnectedCluster => "ConnectedCluster_Get",
            Self::ExtensionList => "Extensions_List",
            Self::Extension => "Extensions_Get",
            Self::SynapseWorkspace => "Workspaces_Get",
            Self::SynapseSparkPool => "BigDataPools_Get",
        }
    }

    /// The `type` segment named in RP error messages.
    fn type_name(self) -> &'static str {
        match self {
            Self::VirtualMachine => "virtualMachines",
            Self::NetworkInterface => "networkInterfaces",
            Self::PublicIpAddress => "publicIPAddresses",
            Self::HdInsightCluster => "clusters",
            Self::ManagedCluster => "managedClusters",
            Self::ConnectedCluster => "connectedClusters",
            Self::ExtensionList | Self::Extension => "extensions",
            Self::SynapseWorkspace => "workspaces",
            Self::SynapseSparkPool => "workspaces/bigDataPools",
        }
    }
}

/// A parsed underlying-resource path.
#[derive(Clone, Debug, PartialEq)]
pub struct UnderlyingRoute {
    /// Subscription.
    pub sub: String,
    /// Resource group.
    pub rg: String,
    /// What it names.
    pub kind: UnderlyingKind,
    /// ARM id of the resource (for extensions: of the cluster), as spelled in the path.
    pub id: String,
    /// Extension name ([`UnderlyingKind::Extension`]).
    pub child: Option<String>,
}

/// Classify decoded path segments starting with `subscriptions`.
pub fn classify(s: &[&str]) -> Option<UnderlyingRoute> {
    let eq = |a: &str, b: &str| a.eq_ignore_ascii_case(b);
    let [_, sub, g, rg, p, ns, ty, name, rest @ ..] = s else {
        return None;
    };
    if !eq(g, "resourceGroups") || !eq(p, "providers") || name.is_empty() {
        return None;
    }
    let id = |n: usize| format!("/{}", s[..n].join("/"));
    let route = |kind, id: String, child: Option<String>| {
        Some(UnderlyingRoute {
            sub: (*sub).to_owned(),
            rg: (*rg).to_owned(),
            kind,
            id,
            child,
        })
    };
    let cluster = if eq(ns, "Microsoft.ContainerService") && eq(ty, "managedClusters") {
        Some(UnderlyingKind::ManagedCluster)
    } else if eq(ns, "Microsoft.Kubernetes") && eq(ty, "connectedClusters") {
        Some(UnderlyingKind::ConnectedCluster)
    } else {
        None
    };
    match (rest, cluster) {
        ([], Some(kind)) => route(kind, id(8), None),
        ([p2, ns2, e], Some(_))
            if eq(p2, "providers")
                && eq(ns2, "Microsoft.KubernetesConfiguration")
                && eq(e, "extensions") =>
        {
            route(UnderlyingKind::ExtensionList, id(8), None)
        }
        ([p2, ns2, e, ext], Some(_))
            if eq(p2, "providers")
                && eq(ns2, "Microsoft.KubernetesConfiguration")
                && eq(e, "extensions")
                && !ext.is_empty() =>
        {
            route(UnderlyingKind::Extension, id(8), Some((*ext).to_owned()))
        }
        ([], None) => {
            let kind = if eq(ns, "Microsoft.Compute") && eq(ty, "virtualMachines") {
                UnderlyingKind::VirtualMachine
            } else if eq(ns, "Microsoft.Network") && eq(ty, "networkInterfaces") {
                UnderlyingKind::NetworkInterface
            } else if eq(ns, "Microsoft.Network") && eq(ty, "publicIPAddresses") {
                UnderlyingKind::PublicIpAddress
            } else if eq(ns, "Microsoft.HDInsight") && eq(ty, "clusters") {
                UnderlyingKind::HdInsightCluster
            } else if eq(ns, "Microsoft.Synapse") && eq(ty, "workspaces") {
                UnderlyingKind::SynapseWorkspace
            } else {
                return None;
            };
            route(kind, id(8), None)
        }
        ([b, pool], None)
            if eq(ns, "Microsoft.Synapse")
                && eq(ty, "workspaces")
                && eq(b, "bigDataPools")
                && !pool.is_empty() =>
        {
            route(UnderlyingKind::SynapseSparkPool, id(10), None)
        }
        _ => None,
    }
}

fn not_found(route: &UnderlyingRoute, inner: &Inner) -> ArmError {
    if !inner.resource_group_known(&route.sub, &route.rg) {
        return ArmError::new(
            StatusCode::NOT_FOUND,
            "ResourceGroupNotFound",
            format!("Resource group '{}' could not be found.", route.rg),
        );
    }
    let name = route.id.rsplit('/').next().unwrap_or_default();
    let provider = route
        .id
        .split('/')
        .skip_while(|s| !s.eq_ignore_ascii_case("providers"))
        .nth(1)
        .unwrap_or_default();
    let what = match (route.kind, &route.child) {
        (UnderlyingKind::Extension, Some(ext)) => {
            format!("Microsoft.KubernetesConfiguration/extensions/{ext}")
        }
        _ => format!("{provider}/{}/{name}", route.kind.type_name()),
    };
    ArmError::new(
        StatusCode::NOT_FOUND,
        "ResourceNotFound",
        format!(
            "The Resource '{what}' under resource group '{}' was not found. For more details please go to https://aka.ms/ARMResourceNotFoundFix",
            route.rg
        ),
    )
}

fn world<'i>(inner: &'i Inner, id: &str, kind: ResourceKind) -> Option<&'i WorldResource> {
    inner
        .resources
        .get(&id.to_ascii_lowercase())
        .filter(|r| ResourceKind::of_id(&r.id) == kind)
}

fn guid(id: &str, what: &str) -> String {
    let ns = uuid::Uuid::new_v5(
        &uuid::Uuid::NAMESPACE_URL,
        id.to_ascii_lowercase().as_bytes(),
    );
    uuid::Uuid::new_v5(&ns, what.as_bytes()).to_string()
}

fn name_of(id: &str) -> &str {
    id.rsplit('/').next().unwrap_or_default()
}

/// `/subscriptions/{sub}/resourceGroups/{rg}/providers/{provider_path}`.
fn sibling(route: &UnderlyingRoute, provider_path: &str) -> String {
    format!(
        "/subscriptions/{}/resourceGroups/{}/providers/{provider_path}",
        route.sub, route.rg
    )
}

/// The VM behind a derived NIC (`{vm}-nic`) or public IP (`{vm}-ip`) name.
fn vm_behind<'i>(
    inner: &'i Inner,
    route: &UnderlyingRoute,
    suffix: &str,
) -> Option<&'i WorldResource> {
    let base = name_of(&route.id).strip_suffix(suffix)?;
    world(
        inner,
        &sibling(route, &format!("Microsoft.Compute/virtualMachines/{base}")),
        ResourceKind::VirtualMachine,
    )
}

fn has_public_ip(vm: &WorldResource) -> bool {
    vm.public_ip != Some(false)
}

/// Answer a GET of an underlying resource.
pub fn get(inner: &Inner, route: &UnderlyingRoute) -> Result<Value, ArmError> {
    let location = inner
        .workspaces
        .iter()
        .find(|w| w.subscription_id.eq_ignore_ascii_case(&route.sub))
        .map_or("westeurope", |w| w.location.as_str());
    let missing = || not_found(route, inner);
    match route.kind {
        UnderlyingKind::VirtualMachine => {
            let vm = world(inner, &route.id, ResourceKind::VirtualMachine).ok_or_else(missing)?;
            Ok(vm_body(vm, route, location))
        }
        UnderlyingKind::NetworkInterface => {
            let vm = vm_behind(inner, route, "-nic").ok_or_else(missing)?;
            Ok(nic_body(vm, route, location))
        }
        UnderlyingKind::PublicIpAddress => {
            let vm = vm_behind(inner, route, "-ip")
                .filter(|vm| has_public_ip(vm))
                .ok_or_else(missing)?;
            Ok(public_ip_body(vm, route, location))
        }
        UnderlyingKind::HdInsightCluster => {
            let c = world(inner, &route.id, ResourceKind::HdInsight).ok_or_else(missing)?;
            Ok(hdinsight_body(c, location))
        }
        UnderlyingKind::ManagedCluster => {
            let c = world(inner, &route.id, ResourceKind::ManagedCluster).ok_or_else(missing)?;
            Ok(managed_cluster_body(c, location))
        }
        UnderlyingKind::ConnectedCluster => {
            let c = world(inner, &route.id, ResourceKind::ConnectedCluster).ok_or_else(missing)?;
            Ok(connected_cluster_body(c, &inner.tenant_id, location))
        }
        UnderlyingKind::ExtensionList | UnderlyingKind::Extension => {
            let cluster = world(inner, &route.id, ResourceKind::ManagedCluster)
                .or_else(|| world(inner, &route.id, ResourceKind::ConnectedCluster))
                .ok_or_else(|| {
                    not_found(
                        &UnderlyingRoute {
                            kind: match ResourceKind::of_id(&route.id) {
                                ResourceKind::ConnectedCluster => UnderlyingKind::ConnectedCluster,
                                _ => UnderlyingKind::ManagedCluster,
                            },
                            child: None,
                            ..route.clone()
                        },
                        inner,
                    )
                })?;
            let body = |e: &ClusterExtension| extension_body(cluster, e, &inner.tenant_id);
            match &route.child {
                None => Ok(json!({
                    "value": cluster.extensions.iter().map(body).collect::<Vec<_>>(),
                    "nextLink": null,
                })),
                Some(name) => cluster
                    .extensions
                    .iter()
                    .find(|e| e.name.eq_ignore_ascii_case(name))
                    .map(body)
                    .ok_or_else(missing),
            }
        }
        UnderlyingKind::SynapseWorkspace => {
            let prefix = format!("{}/bigdatapools/", route.id.to_ascii_lowercase());
            if !inner.resources.keys().any(|k| k.starts_with(&prefix)) {
                return Err(missing());
            }
            Ok(synapse_workspace_body(route, &inner.tenant_id, location))
        }
        UnderlyingKind::SynapseSparkPool => {
            let pool =
                world(inner, &route.id, ResourceKind::SynapseSparkPool).ok_or_else(missing)?;
            Ok(spark_pool_body(pool, location))
        }
    }
}

fn default_image() -> ImageReference {
    ImageReference::new("Canonical", "ubuntu-24_04-lts", "server")
}

fn vm_body(vm: &WorldResource, route: &UnderlyingRoute, location: &str) -> Value {
    let name = name_of(&vm.id);
    let os_type = vm.os_type.as_deref().unwrap_or("Linux");
    let image = vm.image.clone().unwrap_or_else(default_image);
    let windows = os_type.eq_ignore_ascii_case("Windows");
    let mut os_profile = json!({
        "computerName": name,
        "adminUsername": vm.username.as_deref().unwrap_or("azureuser"),
        "secrets": [],
        "allowExtensionOperations": true,
        "requireGuestProvisionSignal": true,
    });
    if windows {
        os_profile["windowsConfiguration"] = json!({
            "provisionVMAgent": true, "enableAutomaticUpdates": true,
            "patchSettings": {"patchMode": "AutomaticByOS", "assessmentMode": "ImageDefault"}
        });
    } else {
        os_profile["linuxConfiguration"] = json!({
            "disablePasswordAuthentication": false, "provisionVMAgent": true,
            "patchSettings": {"patchMode": "ImageDefault", "assessmentMode": "ImageDefault"}
        });
    }
    let disk = format!(
        "{name}_OsDisk_1_{}",
        guid(&vm.id, "osdisk").replace('-', "")
    );
    json!({
        "name": name,
        "id": vm.id,
        "type": "Microsoft.Compute/virtualMachines",
        "location": location,
        "tags": {},
        "properties": {
            "vmId": guid(&vm.id, "vmId"),
            "hardwareProfile": { "vmSize": vm.vm_size.as_deref().unwrap_or("Standard_D2s_v3") },
            "storageProfile": {
                "imageReference": {
                    "publisher": image.publisher,
                    "offer": image.offer,
                    "sku": image.sku,
                    "version": "latest",
                    "exactVersion": "24.04.202510010",
                },
                "osDisk": {
                    "osType": os_type,
                    "name": disk,
                    "createOption": "FromImage",
                    "caching": "ReadWrite",
                    "managedDisk": {
                        "storageAccountType": "Premium_LRS",
                        "id": sibling(route, &format!("Microsoft.Compute/disks/{disk}")),
                    },
                    "deleteOption": "Delete",
                    "diskSizeGB": 30,
                },
                "dataDisks": [],
                "diskControllerType": "SCSI",
            },
            "osProfile": os_profile,
            "networkProfile": {
                "networkInterfaces": [{
                    "id": sibling(route, &format!("Microsoft.Network/networkInterfaces/{name}-nic")),
                    "properties": { "primary": true, "deleteOption": "Detach" },
                }],
            },
            "diagnosticsProfile": { "bootDiagnostics": { "enabled": true } },
            "provisioningState": "Succeeded",
            "timeCreated": "2025-10-01T09:00:00.0000000+00:00",
        },
    })
}

fn nic_body(vm: &WorldResource, route: &UnderlyingRoute, location: &str) -> Value {
    let name = format!("{}-nic", name_of(&vm.id));
    let nic_id = sibling(
        route,
        &format!("Microsoft.Network/networkInterfaces/{name}"),
    );
    let etag = format!("W/\"{}\"", guid(&nic_id, "etag"));
    let private_ip = if has_public_ip(vm) {
        "10.0.0.4".to_owned()
    } else {
        vm.address.clone().unwrap_or_else(|| "10.0.0.4".to_owned())
    };
    let mut ip_props = json!({
        "provisioningState": "Succeeded",
        "privateIPAddress": private_ip,
        "privateIPAllocationMethod": "Dynamic",
        "subnet": { "id": sibling(route, "Microsoft.Network/virtualNetworks/ml-vnet/subnets/default") },
        "primary": true,
        "privateIPAddressVersion": "IPv4",
    });
    if has_public_ip(vm) {
        ip_props["publicIPAddress"] = json!({
            "id": sibling(route, &format!("Microsoft.Network/publicIPAddresses/{}-ip", name_of(&vm.id)))
        });
    }
    json!({
        "name": name,
        "id": nic_id,
        "etag": etag,
        "type": "Microsoft.Network/networkInterfaces",
        "location": location,
        "properties": {
            "provisioningState": "Succeeded",
            "resourceGuid": guid(&nic_id, "resourceGuid"),
            "ipConfigurations": [{
                "name": "ipconfig1",
                "id": format!("{nic_id}/ipConfigurations/ipconfig1"),
                "etag": etag,
                "type": "Microsoft.Network/networkInterfaces/ipConfigurations",
                "properties": ip_props,
            }],
            "dnsSettings": { "dnsServers": [], "appliedDnsServers": [] },
            "macAddress": "00-0D-3A-1B-C7-21",
            "enableAcceleratedNetworking": true,
            "enableIPForwarding": false,
            "primary": true,
            "virtualMachine": { "id": vm.id },
            "nicType": "Standard",
        },
    })
}

fn public_ip_body(vm: &WorldResource, route: &UnderlyingRoute, location: &str) -> Value {
    let name = format!("{}-ip", name_of(&vm.id));
    let id = sibling(
        route,
        &format!("Microsoft.Network/publicIPAddresses/{name}"),
    );
    let nic = sibling(
        route,
        &format!(
            "Microsoft.Network/networkInterfaces/{}-nic",
            name_of(&vm.id)
        ),
    );
    json!({
        "name": name,
        "id": id,
        "etag": format!("W/\"{}\"", guid(&id, "etag")),
        "location": location,
        "type": "Microsoft.Network/publicIPAddresses",
        "sku": { "name": "Standard", "tier": "Regional" },
        "properties": {
            "provisioningState": "Succeeded",
            "resourceGuid": guid(&id, "resourceGuid"),
            "ipAddress": vm.address,
            "publicIPAddressVersion": "IPv4",
            "publicIPAllocationMethod": "Static",
            "idleTimeoutInMinutes": 4,
            "ipTags": [],
            "ipConfiguration": { "id": format!("{nic}/ipConfigurations/ipconfig1") },
        },
    })
}

fn hdinsight_body(c: &WorldResource, location: &str) -> Value {
    let name = name_of(&c.id);
    let endpoints = if c.public_endpoint == Some(false) {
        json!([
            {"name": "SSH-INTERNAL", "protocol": "TCP", "location": format!("{name}-ssh.azurehdinsight.net"), "port": 22, "privateIPAddress": "10.0.0.11"},
            {"name": "HTTPS-INTERNAL", "protocol": "TCP", "location": format!("{name}-int.azurehdinsight.net"), "port": 443, "privateIPAddress": "10.0.0.12"},
        ])
    } else {
        json!([
            {"name": "SSH", "protocol": "TCP", "location": c.address.clone().unwrap_or_else(|| format!("{name}-ssh.azurehdinsight.net")), "port": 22},
            {"name": "HTTPS", "protocol": "TCP", "location": format!("{name}.azurehdinsight.net"), "port": 443},
        ])
    };
    json!({
        "id": c.id,
        "name": name,
        "type": "Microsoft.HDInsight/clusters",
        "location": location,
        "etag": guid(&c.id, "etag"),
        "tags": {},
        "properties": {
            "clusterVersion": "5.1.3000.0",
            "clusterHdpVersion": "5.1.3000.0",
            "osType": "Linux",
            "tier": "Standard",
            "clusterId": guid(&c.id, "clusterId").replace('-', ""),
            "clusterDefinition": {
                "blueprint": "https://blueprints.azurehdinsight.net/spark-5.1.3000.0.json",
                "kind": "SPARK",
                "componentVersion": { "Spark": "3.3" },
            },
            "computeProfile": { "roles": [
                {"name": "headnode", "targetInstanceCount": 2, "hardwareProfile": {"vmSize": "standard_e8_v3"}, "osProfile": {"linuxOperatingSystemProfile": {"username": c.username.as_deref().unwrap_or("sshuser")}}},
                {"name": "workernode", "targetInstanceCount": 4, "hardwareProfile": {"vmSize": "standard_e8_v3"}, "osProfile": {"linuxOperatingSystemProfile": {"username": c.username.as_deref().unwrap_or("sshuser")}}},
            ]},
            "provisioningState": "Succeeded",
            "clusterState": c.cluster_state.as_deref().unwrap_or("Running"),
            "createdDate": "2025-10-01T09:00:00.000",
            "quotaInfo": { "coresUsed": 48 },
            "connectivityEndpoints": endpoints,
            "minSupportedTlsVersion": "1.2",
            "encryptionInTransitProperties": { "isEncryptionInTransitEnabled": false },
            "storageProfile": { "storageaccounts": [] },
        },
    })
}

fn managed_cluster_body(c: &WorldResource, location: &str) -> Value {
    let name = name_of(&c.id);
    json!({
        "id": c.id,
        "location": location,
        "name": name,
        "type": "Microsoft.ContainerService/ManagedClusters",
        "tags": {},
        "sku": { "name": "Base", "tier": "Free" },
        "identity": { "type": "SystemAssigned", "principalId": guid(&c.id, "principal"), "tenantId": crate::config::DEFAULT_TENANT },
        "properties": {
            "provisioningState": "Succeeded",
            "powerState": { "code": "Running" },
            "kubernetesVersion": "1.33",
            "currentKubernetesVersion": "1.33.2",
            "dnsPrefix": format!("{name}-dns"),
            "fqdn": format!("{name}-dns-{}.hcp.{location}.azmk8s.io", &guid(&c.id, "fqdn")[..8]),
            "azurePortalFQDN": format!("{name}-dns-{}.portal.hcp.{location}.azmk8s.io", &guid(&c.id, "fqdn")[..8]),
            "agentPoolProfiles": [{
                "name": "nodepool1", "count": 3, "vmSize": "Standard_D4ds_v5", "osDiskSizeGB": 128,
                "osDiskType": "Ephemeral", "maxPods": 110, "type": "VirtualMachineScaleSets",
                "provisioningState": "Succeeded", "powerState": { "code": "Running" },
                "orchestratorVersion": "1.33", "mode": "System", "osType": "Linux", "osSKU": "Ubuntu",
                "nodeImageVersion": "AKSUbuntu-2204gen2containerd-202510.01.0",
            }],
            "nodeResourceGroup": format!("MC_ml-rg_{name}_{location}"),
            "enableRBAC": true,
            "networkProfile": {
                "networkPlugin": "azure", "networkPluginMode": "overlay", "podCidr": "10.244.0.0/16",
                "serviceCidr": "10.0.0.0/16", "dnsServiceIP": "10.0.0.10", "outboundType": "loadBalancer",
                "loadBalancerSku": "standard",
            },
            "oidcIssuerProfile": { "enabled": true },
            "supportPlan": "KubernetesOfficial",
        },
    })
}

fn connected_cluster_body(c: &WorldResource, tenant: &str, location: &str) -> Value {
    json!({
        "id": c.id,
        "name": name_of(&c.id),
        "type": "Microsoft.Kubernetes/connectedClusters",
        "location": location,
        "tags": {},
        "identity": { "type": "SystemAssigned", "principalId": guid(&c.id, "principal"), "tenantId": tenant },
        "kind": "ProvisionedCluster",
        "properties": {
            "agentPublicKeyCertificate": "MIICYzCCAcygAwIBAgIBADANBgkqhkiG9w0BAQUFADAuMQswCQYDVQQGEwJVUzEM",
            "kubernetesVersion": "1.32.3",
            "totalNodeCount": 3,
            "totalCoreCount": 12,
            "agentVersion": "1.26.0",
            "provisioningState": "Succeeded",
            "distribution": "k3s",
            "distributionVersion": "1.32.3",
            "infrastructure": "generic",
            "offering": "",
            "connectivityStatus": "Connected",
            "lastConnectivityTime": "2025-10-01T09:00:00.000Z",
            "managedIdentityCertificateExpirationTime": "2026-12-31T09:00:00.000Z",
            "privateLinkState": "Disabled",
        },
    })
}

fn extension_body(cluster: &WorldResource, e: &ClusterExtension, tenant: &str) -> Value {
    let id = format!(
        "{}/providers/Microsoft.KubernetesConfiguration/extensions/{}",
        cluster.id, e.name
    );
    let azureml = e
        .extension_type
        .eq_ignore_ascii_case(AZUREML_EXTENSION_TYPE);
    let settings = if azureml {
        json!({"enableTraining": "True", "enableInference": "False", "allowInsecureConnections": "False", "inferenceRouterServiceType": "ClusterIP"})
    } else {
        json!({})
    };
    json!({
        "id": id,
        "name": e.name,
        "type": "Microsoft.KubernetesConfiguration/extensions",
        "identity": { "type": "SystemAssigned", "principalId": guid(&id, "principal"), "tenantId": tenant },
        "systemData": {
            "createdBy": "admin@example.com", "createdByType": "User",
            "createdAt": "2025-10-01T09:00:00.0000000Z",
            "lastModifiedBy": "admin@example.com", "lastModifiedByType": "User",
            "lastModifiedAt": "2025-10-01T09:00:00.0000000Z",
        },
        "properties": {
            "extensionType": e.extension_type,
            "autoUpgradeMinorVersion": true,
            "releaseTrain": "stable",
            "version": null,
            "currentVersion": if azureml { "1.1.96" } else { "1.15.1" },
            "scope": { "cluster": { "releaseNamespace": if azureml { "azureml" } else { "flux-system" } } },
            "configurationSettings": settings,
            "configurationProtectedSettings": {},
            "provisioningState": e.provisioning_state.as_deref().unwrap_or("Succeeded"),
            "statuses": [],
            "errorInfo": null,
            "customLocationSettings": null,
            "packageUri": null,
            "aksAssignedIdentity": null,
            "isSystemExtension": false,
        },
    })
}

fn synapse_workspace_body(route: &UnderlyingRoute, tenant: &str, location: &str) -> Value {
    let name = name_of(&route.id);
    json!({
        "id": route.id,
        "name": name,
        "type": "Microsoft.Synapse/workspaces",
        "location": location,
        "tags": {},
        "identity": { "type": "SystemAssigned", "principalId": guid(&route.id, "principal"), "tenantId": tenant },
        "properties": {
            "provisioningState": "Succeeded",
            "connectivityEndpoints": {
                "web": format!("https://web.azuresynapse.net?workspace=%2fsubscriptions%2f{}%2fresourceGroups%2f{}%2fproviders%2fMicrosoft.Synapse%2fworkspaces%2f{name}", route.sub, route.rg),
                "dev": format!("https://{name}.dev.azuresynapse.net"),
                "sql": format!("{name}.sql.azuresynapse.net"),
                "sqlOnDemand": format!("{name}-ondemand.sql.azuresynapse.net"),
            },
            "managedResourceGroupName": format!("synapseworkspace-managedrg-{}", guid(&route.id, "rg")),
            "workspaceUID": guid(&route.id, "uid"),
            "publicNetworkAccess": "Enabled",
        },
    })
}

fn spark_pool_body(pool: &WorldResource, location: &str) -> Value {
    json!({
        "id": pool.id,
        "name": name_of(&pool.id),
        "type": "Microsoft.Synapse/workspaces/bigDataPools",
        "location": location,
        "tags": {},
        "properties": {
            "provisioningState": "Succeeded",
            "autoScale": { "enabled": true, "minNodeCount": 3, "maxNodeCount": 10 },
            "autoPause": { "enabled": true, "delayInMinutes": 15 },
            "creationDate": "2025-10-01T09:00:00Z",
            "sparkVersion": "3.4",
            "nodeCount": 0,
            "nodeSize": "Medium",
            "nodeSizeFamily": "MemoryOptimized",
            "isComputeIsolationEnabled": false,
            "sessionLevelPackagesEnabled": false,
            "dynamicExecutorAllocation": { "enabled": false },
            "cacheSize": 0,
            "isAutotuneEnabled": false,
            "lastSucceededTimestamp": "2025-10-01T09:05:00Z",
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segs(path: &str) -> Vec<&str> {
        path.trim_start_matches('/').split('/').collect()
    }

    #[test]
    fn classifies_paths() {
        let vm = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/v";
        assert_eq!(
            classify(&segs(vm)).map(|r| (r.kind, r.id)),
            Some((UnderlyingKind::VirtualMachine, vm.to_owned()))
        );
        let ext = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Kubernetes/connectedClusters/c/providers/Microsoft.KubernetesConfiguration/extensions";
        let r = classify(&segs(ext)).unwrap();
        assert_eq!(r.kind, UnderlyingKind::ExtensionList);
        assert!(r.id.ends_with("connectedClusters/c"));
        let pool = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Synapse/workspaces/w/bigDataPools/p";
        assert_eq!(
            classify(&segs(pool)).map(|r| r.kind),
            Some(UnderlyingKind::SynapseSparkPool)
        );
        let ml = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/w";
        assert_eq!(classify(&segs(ml)), None);
    }
}
