//! The managed identity Azure ML gives an attached compute (`identity` of the compute
//! resource), in the two forms `az ml compute attach --identity-type` accepts.

use std::collections::BTreeMap;

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// SystemAssigned or UserAssigned.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum IdentityType {
    /// Azure creates an identity for the compute.
    SystemAssigned,
    /// The user-assigned identities listed in `userAssignedIdentities`.
    UserAssigned,
}

/// The compute's managed identity: SystemAssigned, or UserAssigned with the identities' ARM ids
/// (not both, as `az ml` accepts).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.type == 'UserAssigned' ? (has(self.userAssignedIdentities) && size(self.userAssignedIdentities) > 0) : !has(self.userAssignedIdentities)").message("identity: UserAssigned needs userAssignedIdentities (ARM ids of user-assigned identities); SystemAssigned takes none"))]
pub struct ComputeIdentity {
    /// SystemAssigned or UserAssigned.
    #[serde(rename = "type")]
    pub type_: IdentityType,
    /// ARM ids of user-assigned identities (only with UserAssigned):
    /// /subscriptions/<id>/resourceGroups/<group>/providers/Microsoft.ManagedIdentity/userAssignedIdentities/<name>.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.all(id, id.matches('(?i)^/subscriptions/[0-9a-f-]{36}/resourcegroups/[^/]{1,90}/providers/microsoft[.]managedidentity/userassignedidentities/[^/]{1,128}$'))").message("identity.userAssignedIdentities must be ARM ids of user-assigned identities: /subscriptions/<id>/resourceGroups/<group>/providers/Microsoft.ManagedIdentity/userAssignedIdentities/<name>"))]
    #[schemars(length(max = 16), inner(length(max = 512)))]
    pub user_assigned_identities: Option<Vec<String>>,
}

impl ComputeIdentity {
    /// The wire form (`ManagedServiceIdentity`).
    pub fn to_wire(&self) -> crate::azure::models::ManagedServiceIdentity {
        use crate::azure::models::ManagedServiceIdentity;
        match self.type_ {
            IdentityType::SystemAssigned => ManagedServiceIdentity::system_assigned(),
            IdentityType::UserAssigned => ManagedServiceIdentity::user_assigned(
                self.user_assigned_identities.clone().unwrap_or_default(),
            ),
        }
    }
}

/// An instance type of a Kubernetes compute: where its pods go and what they get.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InstanceTypeSpec {
    /// Node labels the job's pods must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<BTreeMap<String, String>>,
    /// Kubernetes resource requests and limits (quantities such as `"4"`, `"16Gi"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<InstanceTypeResourcesSpec>,
}

/// Requests and limits by resource name (`cpu`, `memory`, `nvidia.com/gpu`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct InstanceTypeResourcesSpec {
    /// Requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<BTreeMap<String, String>>,
    /// Limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<BTreeMap<String, String>>,
}
