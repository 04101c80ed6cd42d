//! `KubernetesTarget`: an existing AKS or Azure Arc-enabled Kubernetes cluster with the Azure ML
//! extension installed.

use std::collections::BTreeMap;

use super::common::TargetStatus;
use super::identity::{ComputeIdentity, InstanceTypeSpec};
use super::target::target_crd;

fn default_namespace() -> String {
    "default".to_owned()
}

target_crd! {
    /// Attach an existing AKS cluster or Arc-enabled cluster to an Azure ML workspace as a
    /// `Kubernetes` compute (one of the three kinds `az ml` v2 attaches). The cluster needs the
    /// `Microsoft.AzureML.Kubernetes` extension to run jobs. It is never deleted: removing the
    /// object detaches it.
    kind = "KubernetesTarget",
    shortnames = ["k8starget"],
    doc = "An existing AKS or Arc-enabled Kubernetes cluster (with the Azure ML extension) attached to an Azure ML workspace as a Kubernetes compute.",
    #[x_kube(validation = Rule::new("!has(self.defaultInstanceType) || (has(self.instanceTypes) && self.defaultInstanceType in self.instanceTypes)").message("spec.defaultInstanceType must name one of spec.instanceTypes"))]
    pub struct KubernetesTargetSpec {
        /// ARM id of the cluster: .../providers/Microsoft.ContainerService/managedClusters/<name> (AKS)
        /// or .../providers/Microsoft.Kubernetes/connectedClusters/<name> (Arc).
        /// Immutable: a different cluster is a different attachment.
        #[x_kube(
            validation = Rule::new("self.matches('(?i)^/subscriptions/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/resourcegroups/[^/]{1,90}/providers/(microsoft[.]containerservice/managedclusters|microsoft[.]kubernetes/connectedclusters)/[^/]{1,63}$')").message("spec.resourceId must be the ARM id of an AKS cluster (.../providers/Microsoft.ContainerService/managedClusters/<name>) or an Arc-enabled cluster (.../providers/Microsoft.Kubernetes/connectedClusters/<name>)"),
            validation = Rule::new("self == oldSelf").message("spec.resourceId is immutable: delete the target and create a new one")
        )]
        #[schemars(length(max = 512))]
        pub resource_id: String,
        /// The cluster namespace Azure ML runs jobs in (default `default`). Changing it re-attaches.
        #[serde(default = "default_namespace")]
        #[x_kube(validation = Rule::new("self.matches('^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$')").message("spec.namespace must be a Kubernetes namespace name (lower-case letters, digits and '-', at most 63)"))]
        #[schemars(length(max = 63))]
        pub namespace: String,
        /// The instance type a job gets when it names none; must be one of `instanceTypes`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(length(max = 63))]
        pub default_instance_type: Option<String>,
        /// Instance types by name: node selector and resources of the job's pods.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(length(max = 32))]
        pub instance_types: Option<BTreeMap<String, InstanceTypeSpec>>,
        /// The compute's managed identity (optional). Changing it re-attaches.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub identity: Option<ComputeIdentity>,
    }
}
