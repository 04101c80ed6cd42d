//! Typed ARM bodies for `Microsoft.MachineLearningServices` computes and workspaces.
//!
//! Shapes follow the OpenAPI spec (CONTRACT §2-§6); deserialization follows what real traffic
//! shows (FINDINGS §2): unknown fields are ignored, `null` is accepted everywhere, enums keep
//! values they do not know (`computeType: "Batch"`). Secret fields are [`SecretString`]s: they
//! serialize (they must reach Azure) but never show in `Debug`.

use std::collections::BTreeMap;
use std::fmt;

use secrecy::SecretString;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

/// Declares a string enum that keeps unknown values (`modelAsString: true` in the spec).
macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $wire:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
            /// A value this version of the operator does not know.
            Other(String),
        }

        impl $name {
            /// The wire value.
            pub fn as_str(&self) -> &str {
                match self {
                    $($name::$variant => $wire,)+
                    $name::Other(s) => s.as_str(),
                }
            }
        }

        impl From<&str> for $name {
            /// Case-insensitive: Azure is not consistent about casing across versions.
            fn from(s: &str) -> Self {
                $(if s.eq_ignore_ascii_case($wire) { return $name::$variant; })+
                $name::Other(s.to_string())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let s = String::deserialize(deserializer)?;
                Ok($name::from(s.as_str()))
            }
        }
    };
}

string_enum! {
    /// `Compute.computeType`, the discriminator (spec enum plus the SDK-v1 `Batch`).
    ComputeType {
        /// Azure Kubernetes Service (inference).
        Aks = "AKS",
        /// Arc/AKS Kubernetes compute.
        Kubernetes = "Kubernetes",
        /// Azure ML managed cluster.
        AmlCompute = "AmlCompute",
        /// Azure ML compute instance.
        ComputeInstance = "ComputeInstance",
        /// Data Factory.
        DataFactory = "DataFactory",
        /// A remote VM reached over SSH.
        VirtualMachine = "VirtualMachine",
        /// HDInsight cluster.
        HdInsight = "HDInsight",
        /// Azure Databricks workspace.
        Databricks = "Databricks",
        /// Azure Data Lake Analytics account.
        DataLakeAnalytics = "DataLakeAnalytics",
        /// Synapse Spark pool.
        SynapseSpark = "SynapseSpark",
        /// Azure Batch account (SDK-v1 wire format; in no published spec).
        Batch = "Batch",
    }
}

string_enum! {
    /// `Compute.provisioningState`.
    ProvisioningState {
        /// Unknown.
        Unknown = "Unknown",
        /// Updating.
        Updating = "Updating",
        /// Creating (the state right after an attach PUT).
        Creating = "Creating",
        /// Deleting.
        Deleting = "Deleting",
        /// Succeeded.
        Succeeded = "Succeeded",
        /// Failed; see `provisioningErrors`.
        Failed = "Failed",
        /// Canceled.
        Canceled = "Canceled",
    }
}

impl ProvisioningState {
    /// Succeeded, Failed and Canceled are terminal; anything else is still running.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            ProvisioningState::Succeeded | ProvisioningState::Failed | ProvisioningState::Canceled
        )
    }
}

string_enum! {
    /// `OperationStatusResult.status` of an async operation.
    OperationState {
        /// Still running.
        InProgress = "InProgress",
        /// Done.
        Succeeded = "Succeeded",
        /// Failed; see `error`.
        Failed = "Failed",
        /// Canceled.
        Canceled = "Canceled",
    }
}

impl OperationState {
    /// Succeeded, Failed and Canceled are terminal (ARM async-operations rules).
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            OperationState::Succeeded | OperationState::Failed | OperationState::Canceled
        )
    }
}

fn unknown_compute_type() -> ComputeType {
    ComputeType::Other(String::new())
}

/// `null` → `T::default()` (Azure sends `null` for empty lists and maps).
fn null_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// Serializes an optional secret by exposing it (the wire needs it); `Debug` still redacts.
fn expose_opt<S: Serializer>(
    secret: &Option<SecretString>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    use secrecy::ExposeSecret;
    match secret {
        Some(s) => serializer.serialize_some(s.expose_secret()),
        None => serializer.serialize_none(),
    }
}

/// `"<redacted>"` for a present secret in `Debug` output.
fn redacted(secret: &Option<SecretString>) -> Option<&'static str> {
    secret.as_ref().map(|_| "<redacted>")
}

/// A compute resource (`ComputeResource`): the body of compute GET/PUT/LIST.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ComputeResource {
    /// ARM id (read-only).
    #[serde(default, skip_serializing)]
    pub id: Option<String>,
    /// Compute name (read-only).
    #[serde(default, skip_serializing)]
    pub name: Option<String>,
    /// ARM type (read-only).
    #[serde(default, rename = "type", skip_serializing)]
    pub resource_type: Option<String>,
    /// Region; the SDK sets the workspace's location on attach.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// Resource tags.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<BTreeMap<String, String>>,
    /// Managed identity of the compute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<ManagedServiceIdentity>,
    /// SKU (sent by some clients on attach; never echoed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sku: Option<Sku>,
    /// The compute itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub properties: Option<Compute>,
}

impl ComputeResource {
    /// `properties.computeType`, if present.
    pub fn compute_type(&self) -> Option<&ComputeType> {
        self.properties.as_ref().map(|p| &p.compute_type)
    }

    /// `properties.resourceId`, if present.
    pub fn resource_id(&self) -> Option<&str> {
        self.properties
            .as_ref()
            .and_then(|p| p.resource_id.as_deref())
    }

    /// `properties.provisioningState`, if present.
    pub fn provisioning_state(&self) -> Option<&ProvisioningState> {
        self.properties
            .as_ref()
            .and_then(|p| p.provisioning_state.as_ref())
    }
}

/// Managed identity (`ManagedServiceIdentity`, common-types v3).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ManagedServiceIdentity {
    /// `None`, `SystemAssigned`, `UserAssigned`, `SystemAssigned,UserAssigned`.
    #[serde(rename = "type")]
    pub identity_type: String,
    /// Read-only.
    #[serde(default, skip_serializing)]
    pub principal_id: Option<String>,
    /// Read-only.
    #[serde(default, skip_serializing)]
    pub tenant_id: Option<String>,
    /// ARM ids of user-assigned identities → their (read-only) details.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_assigned_identities: Option<BTreeMap<String, Value>>,
}

impl ManagedServiceIdentity {
    /// `SystemAssigned`.
    pub fn system_assigned() -> Self {
        Self {
            identity_type: "SystemAssigned".to_owned(),
            ..Self::default()
        }
    }

    /// `UserAssigned` with these identities' ARM ids.
    pub fn user_assigned<I: IntoIterator<Item = String>>(ids: I) -> Self {
        Self {
            identity_type: "UserAssigned".to_owned(),
            user_assigned_identities: Some(
                ids.into_iter()
                    .map(|id| (id, Value::Object(serde_json::Map::new())))
                    .collect(),
            ),
            ..Self::default()
        }
    }
}

/// SKU.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Sku {
    /// SKU name.
    #[serde(default)]
    pub name: Option<String>,
    /// SKU tier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
}

/// `Compute`: common properties plus the type-specific `properties`.
#[derive(Clone, Debug)]
pub struct Compute {
    /// The discriminator.
    pub compute_type: ComputeType,
    /// ARM id of the underlying resource.
    pub resource_id: Option<String>,
    /// Free text.
    pub description: Option<String>,
    /// Location of the underlying compute (create-only).
    pub compute_location: Option<String>,
    /// Disable key-based auth (create-only).
    pub disable_local_auth: Option<bool>,
    /// Read-only.
    pub provisioning_state: Option<ProvisioningState>,
    /// Read-only.
    pub provisioning_errors: Vec<ErrorResponse>,
    /// Read-only: true if the compute was brought from outside (attached).
    pub is_attached_compute: Option<bool>,
    /// Read-only (ISO 8601 with 7 fractional digits; kept as text).
    pub created_on: Option<String>,
    /// Read-only.
    pub modified_on: Option<String>,
    /// The type-specific properties.
    pub properties: Option<ComputeProperties>,
}

impl Compute {
    /// A compute of `compute_type` for the resource `resource_id`, everything else empty.
    pub fn new(compute_type: ComputeType, resource_id: Option<String>) -> Self {
        Self {
            compute_type,
            resource_id,
            description: None,
            compute_location: None,
            disable_local_auth: None,
            provisioning_state: None,
            provisioning_errors: Vec::new(),
            is_attached_compute: None,
            created_on: None,
            modified_on: None,
            properties: None,
        }
    }
}

/// Wire form of [`Compute`] without `properties`, which is parsed after the discriminator.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawCompute {
    // Required by the spec, but one odd compute must not break a whole LIST.
    #[serde(default = "unknown_compute_type")]
    compute_type: ComputeType,
    #[serde(default)]
    resource_id: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    compute_location: Option<String>,
    #[serde(default)]
    disable_local_auth: Option<bool>,
    #[serde(default)]
    provisioning_state: Option<ProvisioningState>,
    #[serde(default, deserialize_with = "null_default")]
    provisioning_errors: Vec<ErrorResponse>,
    #[serde(default)]
    is_attached_compute: Option<bool>,
    #[serde(default)]
    created_on: Option<String>,
    #[serde(default)]
    modified_on: Option<String>,
}

impl Serialize for Compute {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Out<'a> {
            compute_type: &'a ComputeType,
            #[serde(skip_serializing_if = "Option::is_none")]
            resource_id: &'a Option<String>,
            #[serde(skip_serializing_if = "Option::is_none")]
            description: &'a Option<String>,
            #[serde(skip_serializing_if = "Option::is_none")]
            compute_location: &'a Option<String>,
            #[serde(skip_serializing_if = "Option::is_none")]
            disable_local_auth: &'a Option<bool>,
            #[serde(skip_serializing_if = "Option::is_none")]
            properties: &'a Option<ComputeProperties>,
        }
        Out {
            compute_type: &self.compute_type,
            resource_id: &self.resource_id,
            description: &self.description,
            compute_location: &self.compute_location,
            disable_local_auth: &self.disable_local_auth,
            properties: &self.properties,
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Compute {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // Read once as a map so the type-specific `properties` can be parsed after the
        // discriminator is known.
        let mut map = serde_json::Map::<String, Value>::deserialize(deserializer)?;
        let properties = map.remove("properties");
        let raw: RawCompute =
            serde_json::from_value(Value::Object(map)).map_err(serde::de::Error::custom)?;
        let properties = match properties {
            None | Some(Value::Null) => None,
            Some(value) => Some(ComputeProperties::from_value(&raw.compute_type, value)),
        };
        Ok(Compute {
            compute_type: raw.compute_type,
            resource_id: raw.resource_id,
            description: raw.description,
            compute_location: raw.compute_location,
            disable_local_auth: raw.disable_local_auth,
            provisioning_state: raw.provisioning_state,
            provisioning_errors: raw.provisioning_errors,
            is_attached_compute: raw.is_attached_compute,
            created_on: raw.created_on,
            modified_on: raw.modified_on,
            properties,
        })
    }
}

/// The type-specific `properties.properties`.
#[derive(Clone, Debug, Serialize)]
#[serde(untagged)]
pub enum ComputeProperties {
    /// `VirtualMachine`.
    VirtualMachine(VirtualMachineProperties),
    /// `HDInsight`.
    HdInsight(HdInsightProperties),
    /// `Databricks`.
    Databricks(DatabricksProperties),
    /// `DataLakeAnalytics`.
    DataLakeAnalytics(DataLakeAnalyticsProperties),
    /// `Kubernetes` (AKS or Arc-enabled cluster with the Azure ML extension).
    Kubernetes(KubernetesProperties),
    /// `SynapseSpark`.
    SynapseSpark(SynapseSparkProperties),
    /// Any other type, or a body that did not match its type's shape.
    Other(OpaqueProperties),
}

impl ComputeProperties {
    /// Parses `value` according to `compute_type`; falls back to [`ComputeProperties::Other`]
    /// rather than failing the whole body (a LIST must not break on one odd compute).
    fn from_value(compute_type: &ComputeType, value: Value) -> Self {
        fn typed<T: DeserializeOwned>(value: &Value) -> Option<T> {
            serde_json::from_value(value.clone()).ok()
        }
        let parsed = match compute_type {
            ComputeType::VirtualMachine => typed(&value).map(ComputeProperties::VirtualMachine),
            ComputeType::HdInsight => typed(&value).map(ComputeProperties::HdInsight),
            ComputeType::Databricks => typed(&value).map(ComputeProperties::Databricks),
            ComputeType::DataLakeAnalytics => {
                typed(&value).map(ComputeProperties::DataLakeAnalytics)
            }
            ComputeType::Kubernetes => typed(&value).map(ComputeProperties::Kubernetes),
            ComputeType::SynapseSpark => typed(&value).map(ComputeProperties::SynapseSpark),
            _ => None,
        };
        parsed.unwrap_or(ComputeProperties::Other(OpaqueProperties(value)))
    }
}

/// Properties of a type the operator does not model. `Debug` shows only the keys, since
/// other types carry secrets too (AKS ssl keys, Kubernetes relay connection strings).
#[derive(Clone, Serialize)]
#[serde(transparent)]
pub struct OpaqueProperties(pub Value);

impl fmt::Debug for OpaqueProperties {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Value::Object(map) => f.debug_set().entries(map.keys()).finish(),
            _ => f.write_str("<opaque>"),
        }
    }
}

/// SSH credentials (`VirtualMachineSshCredentials`), for VirtualMachine and HDInsight.
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdministratorAccount {
    /// User name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Password (secret).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "expose_opt"
    )]
    pub password: Option<SecretString>,
    /// SSH public key (marked x-ms-secret by the spec).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "expose_opt"
    )]
    pub public_key_data: Option<SecretString>,
    /// SSH private key (secret).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "expose_opt"
    )]
    pub private_key_data: Option<SecretString>,
}

impl fmt::Debug for AdministratorAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdministratorAccount")
            .field("username", &self.username)
            .field("password", &redacted(&self.password))
            .field("public_key_data", &redacted(&self.public_key_data))
            .field("private_key_data", &redacted(&self.private_key_data))
            .finish()
    }
}

/// `VirtualMachineSchemaProperties`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VirtualMachineProperties {
    /// VM size (read back upper-cased; the SDK never sends it on attach).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub virtual_machine_size: Option<String>,
    /// SSH port (22).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_port: Option<i32>,
    /// Notebook server port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notebook_server_port: Option<i32>,
    /// Public IP or DNS name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Credentials (always `null` on reads).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub administrator_account: Option<AdministratorAccount>,
    /// Whether it is a notebook instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_notebook_instance_compute: Option<bool>,
}

/// `HDInsightProperties`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HdInsightProperties {
    /// SSH port (22).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_port: Option<i32>,
    /// `<cluster>-ssh.azurehdinsight.net`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Credentials (always `null` on reads).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub administrator_account: Option<AdministratorAccount>,
}

/// `DatabricksProperties`.
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DatabricksProperties {
    /// Personal access token (secret).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "expose_opt"
    )]
    pub databricks_access_token: Option<SecretString>,
    /// `adb-….azuredatabricks.net`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace_url: Option<String>,
}

impl fmt::Debug for DatabricksProperties {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatabricksProperties")
            .field(
                "databricks_access_token",
                &redacted(&self.databricks_access_token),
            )
            .field("workspace_url", &self.workspace_url)
            .finish()
    }
}

/// `DataLakeAnalyticsSchemaProperties`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DataLakeAnalyticsProperties {
    /// Data Lake Store account name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_lake_store_account_name: Option<String>,
}

/// `KubernetesProperties`. The connection strings are secrets Azure fills in; the operator
/// never sends them, so they are read-only here and never serialized.
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KubernetesProperties {
    /// Relay connection string (secret; read-only).
    #[serde(default, skip_serializing)]
    pub relay_connection_string: Option<SecretString>,
    /// Service Bus connection string (secret; read-only).
    #[serde(default, skip_serializing)]
    pub service_bus_connection_string: Option<SecretString>,
    /// Principal id of the extension (read-only).
    #[serde(default, skip_serializing)]
    pub extension_principal_id: Option<String>,
    /// Extension release train (`stable`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extension_instance_release_train: Option<String>,
    /// VC name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vc_name: Option<String>,
    /// Namespace jobs run in (Azure's default: `default`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Instance type used when a job names none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_instance_type: Option<String>,
    /// Instance types by name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_types: Option<BTreeMap<String, InstanceType>>,
}

impl fmt::Debug for KubernetesProperties {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KubernetesProperties")
            .field(
                "relay_connection_string",
                &redacted(&self.relay_connection_string),
            )
            .field(
                "service_bus_connection_string",
                &redacted(&self.service_bus_connection_string),
            )
            .field("extension_principal_id", &self.extension_principal_id)
            .field(
                "extension_instance_release_train",
                &self.extension_instance_release_train,
            )
            .field("vc_name", &self.vc_name)
            .field("namespace", &self.namespace)
            .field("default_instance_type", &self.default_instance_type)
            .field("instance_types", &self.instance_types)
            .finish()
    }
}

/// `InstanceTypeSchema`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceType {
    /// Node selector (label → value).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<BTreeMap<String, String>>,
    /// Resource requests and limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<InstanceTypeResources>,
}

/// `InstanceTypeSchema.resources`: Kubernetes quantities by resource name (`cpu`, `memory`,
/// `nvidia.com/gpu`). Azure's examples answer `null` for unset ones; they are dropped.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceTypeResources {
    /// Requests.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "quantities"
    )]
    pub requests: Option<BTreeMap<String, String>>,
    /// Limits.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "quantities"
    )]
    pub limits: Option<BTreeMap<String, String>>,
}

/// A map of quantities, with `null` values dropped.
fn quantities<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<BTreeMap<String, String>>, D::Error> {
    let map = Option::<BTreeMap<String, Option<String>>>::deserialize(deserializer)?;
    Ok(map.map(|m| m.into_iter().filter_map(|(k, v)| Some((k, v?))).collect()))
}

/// The `properties` of a SynapseSpark compute: the pool's settings, as Azure reports them.
/// The operator sends none (like terraform: CONTRACT §2); the pool is `resourceId`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SynapseSparkProperties {
    /// Auto scale.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_scale_properties: Option<Value>,
    /// Auto pause.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_pause_properties: Option<Value>,
    /// Spark version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spark_version: Option<String>,
    /// Nodes currently assigned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_count: Option<i32>,
    /// Node size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_size: Option<String>,
    /// Node size family.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_size_family: Option<String>,
    /// Subscription of the Synapse workspace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscription_id: Option<String>,
    /// Resource group of the Synapse workspace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_group: Option<String>,
    /// Synapse workspace name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace_name: Option<String>,
    /// Pool name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool_name: Option<String>,
}

/// `PaginatedComputeResourcesList`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaginatedComputeResourcesList {
    /// One page of computes.
    #[serde(default, deserialize_with = "null_default")]
    pub value: Vec<ComputeResource>,
    /// Next page, absent on the last (real ARM omits the key entirely).
    #[serde(default)]
    pub next_link: Option<String>,
}

/// A workspace (the subset the operator reads).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Workspace {
    /// ARM id.
    #[serde(default)]
    pub id: Option<String>,
    /// Name.
    #[serde(default)]
    pub name: Option<String>,
    /// Region.
    #[serde(default)]
    pub location: Option<String>,
    /// Properties subset.
    #[serde(default)]
    pub properties: Option<WorkspaceProperties>,
}

/// `WorkspaceProperties` subset.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkspaceProperties {
    /// Workspace GUID.
    #[serde(default)]
    pub workspace_id: Option<String>,
    /// Display name.
    #[serde(default)]
    pub friendly_name: Option<String>,
    /// Description.
    #[serde(default)]
    pub description: Option<String>,
    /// Workspace provisioning state (a plain string; workspaces have their own enum).
    #[serde(default)]
    pub provisioning_state: Option<String>,
    /// Tenant id.
    #[serde(default)]
    pub tenant_id: Option<String>,
    /// Discovery URL.
    #[serde(default)]
    pub discovery_url: Option<String>,
}

/// `OperationStatusResult` of an `Azure-AsyncOperation` URL.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OperationStatus {
    /// Operation id.
    #[serde(default)]
    pub id: Option<String>,
    /// Operation name.
    #[serde(default)]
    pub name: Option<String>,
    /// Current state.
    pub status: OperationState,
    /// Percent complete (absent while InProgress in real traffic).
    #[serde(default)]
    pub percent_complete: Option<f64>,
    /// Start time.
    #[serde(default)]
    pub start_time: Option<String>,
    /// End time.
    #[serde(default)]
    pub end_time: Option<String>,
    /// Present when Failed/Canceled.
    #[serde(default)]
    pub error: Option<ErrorDetail>,
    /// `Retry-After` of the poll response (not part of the body).
    #[serde(skip)]
    pub retry_after: Option<std::time::Duration>,
}

impl OperationStatus {
    /// A status with only `status` set (used for `Location`-style polls, which answer with a
    /// status code and no status body).
    pub fn with_state(status: OperationState) -> Self {
        Self {
            id: None,
            name: None,
            status,
            percent_complete: None,
            start_time: None,
            end_time: None,
            error: None,
            retry_after: None,
        }
    }
}

/// `ErrorResponse` (common-types v3).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ErrorResponse {
    /// The error.
    #[serde(default)]
    pub error: Option<ErrorDetail>,
}

/// `ErrorDetail` (common-types v3); every field optional, `null`-tolerant.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorDetail {
    /// Error code.
    #[serde(default)]
    pub code: Option<String>,
    /// Message.
    #[serde(default)]
    pub message: Option<String>,
    /// Target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Nested details.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub details: Vec<ErrorDetail>,
    /// Additional info.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub additional_info: Vec<ErrorAdditionalInfo>,
}

/// `ErrorAdditionalInfo`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ErrorAdditionalInfo {
    /// Info type.
    #[serde(default, rename = "type")]
    pub info_type: Option<String>,
    /// Info object.
    #[serde(default)]
    pub info: Option<Value>,
}

/// `ComputeSecrets` from POST listKeys: polymorphic on `computeType`, read tolerantly as the
/// union of the known subtypes (the spec's own example mixes them).
#[derive(Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ComputeSecrets {
    /// Discriminator (may not match the fields present).
    #[serde(default)]
    pub compute_type: Option<ComputeType>,
    /// VirtualMachine secrets.
    #[serde(default)]
    pub administrator_account: Option<AdministratorAccount>,
    /// Databricks secrets.
    #[serde(default)]
    pub databricks_access_token: Option<SecretString>,
    /// AKS secrets.
    #[serde(default)]
    pub user_kube_config: Option<SecretString>,
    /// AKS secrets.
    #[serde(default)]
    pub admin_kube_config: Option<SecretString>,
    /// AKS image pull secret name.
    #[serde(default)]
    pub image_pull_secret_name: Option<String>,
}

impl fmt::Debug for ComputeSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ComputeSecrets")
            .field("compute_type", &self.compute_type)
            .field("administrator_account", &self.administrator_account)
            .field(
                "databricks_access_token",
                &redacted(&self.databricks_access_token),
            )
            .field("user_kube_config", &redacted(&self.user_kube_config))
            .field("admin_kube_config", &redacted(&self.admin_kube_config))
            .field("image_pull_secret_name", &self.image_pull_secret_name)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;
    use serde_json::json;
    use std::path::PathBuf;

    fn fixture(name: &str) -> String {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/azure")
            .join(name);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    /// The 200 body of a spec example file.
    fn example_body(name: &str, status: &str) -> Value {
        let example: Value = serde_json::from_str(&fixture(name)).unwrap();
        example["responses"][status]["body"].clone()
    }

    #[test]
    fn attached_vm_get_from_real_traffic() {
        let compute: ComputeResource = serde_json::from_str(&fixture("aso-vm-get.json")).unwrap();
        assert_eq!(compute.name.as_deref(), Some("asotestrggjat"));
        assert_eq!(compute.location.as_deref(), Some("westus3"));
        assert!(compute.tags.is_none());
        assert_eq!(compute.compute_type(), Some(&ComputeType::VirtualMachine));
        assert_eq!(
            compute.provisioning_state(),
            Some(&ProvisioningState::Succeeded)
        );
        let props = compute.properties.as_ref().unwrap();
        assert_eq!(props.is_attached_compute, Some(true));
        assert!(props.provisioning_errors.is_empty());
        assert!(
            compute
                .resource_id()
                .unwrap()
                .ends_with("virtualMachines/asotest-vm-wdexvp")
        );
        match &props.properties {
            Some(ComputeProperties::VirtualMachine(vm)) => {
                assert_eq!(vm.ssh_port, Some(22));
                assert_eq!(vm.address.as_deref(), Some("20.172.9.250"));
                assert!(vm.administrator_account.is_none());
            }
            other => panic!("unexpected {other:?}"),
        }
        let identity = compute.identity.unwrap();
        assert_eq!(identity.identity_type, "SystemAssigned");
        assert!(identity.principal_id.is_some());
    }

    #[test]
    fn attach_put_201_is_creating() {
        let compute: ComputeResource =
            serde_json::from_str(&fixture("aso-vm-attach-put-201.json")).unwrap();
        assert_eq!(
            compute.provisioning_state(),
            Some(&ProvisioningState::Creating)
        );
        assert!(!compute.provisioning_state().unwrap().is_terminal());
    }

    #[test]
    fn attach_request_round_trips_with_secrets_on_the_wire_only() {
        let compute: ComputeResource =
            serde_json::from_str(&fixture("aso-vm-attach-put-request.json")).unwrap();
        let debug = format!("{compute:?}");
        assert!(!debug.contains("{PASSWORD}"), "{debug}");
        assert!(debug.contains("<redacted>"));
        let wire = serde_json::to_value(&compute).unwrap();
        assert_eq!(
            wire["properties"]["properties"]["administratorAccount"]["password"],
            "{PASSWORD}"
        );
        assert_eq!(wire["properties"]["computeType"], "VirtualMachine");
        assert_eq!(wire["sku"]["name"], "Standard_S1");
        assert_eq!(wire["identity"], json!({"type": "SystemAssigned"}));
        // Read-only fields never go back to Azure.
        assert!(wire.get("name").is_none());
        assert!(wire["properties"].get("provisioningState").is_none());
    }

    #[test]
    fn lists_from_real_traffic_and_the_spec() {
        for name in ["ps-list.json", "cli-list.json"] {
            let list: PaginatedComputeResourcesList = serde_json::from_str(&fixture(name)).unwrap();
            assert!(!list.value.is_empty(), "{name}");
            assert!(list.next_link.is_none(), "{name}");
            for compute in &list.value {
                assert!(matches!(
                    compute.properties.as_ref().unwrap().properties,
                    Some(ComputeProperties::Other(_)) | None
                ));
            }
        }
        let list: PaginatedComputeResourcesList =
            serde_json::from_value(example_body("spec-list.json", "200")).unwrap();
        assert!(!list.value.is_empty());
        let _: ComputeResource = serde_json::from_str(&fixture("ps-get.json")).unwrap();
        let _: ComputeResource =
            serde_json::from_str(&fixture("py-amlcompute-put-201.json")).unwrap();
    }

    #[test]
    fn spec_examples_deserialize() {
        let k8s: ComputeResource =
            serde_json::from_value(example_body("spec-get-kubernetes.json", "200")).unwrap();
        assert_eq!(k8s.compute_type(), Some(&ComputeType::Kubernetes));
        match k8s.properties.as_ref().and_then(|p| p.properties.as_ref()) {
            Some(ComputeProperties::Kubernetes(k)) => {
                assert_eq!(k.namespace.as_deref(), Some("default"));
                assert_eq!(
                    k.extension_instance_release_train.as_deref(),
                    Some("stable")
                );
                // `"nvidia.com/gpu": null` is dropped, the rest kept.
                let it = &k.instance_types.as_ref().unwrap()["defaultInstanceType"];
                let requests = it.resources.as_ref().unwrap().requests.as_ref().unwrap();
                assert_eq!(requests.len(), 2);
            }
            other => panic!("typed Kubernetes properties, got {other:?}"),
        }
        let secret = KubernetesProperties {
            relay_connection_string: Some(SecretString::from(
                "Endpoint=sb://relay;SharedAccessKey=k",
            )),
            ..KubernetesProperties::default()
        };
        assert!(!format!("{secret:?}").contains("SharedAccessKey"));
        // Read-only secrets are never sent back.
        assert!(!serde_json::to_string(&secret).unwrap().contains("relay"));
        let aks: ComputeResource =
            serde_json::from_value(example_body("spec-2026-get-aks.json", "200")).unwrap();
        assert_eq!(aks.compute_type(), Some(&ComputeType::Aks));
        let put: Value = serde_json::from_str(&fixture("spec-put-kubernetes.json")).unwrap();
        let body: ComputeResource =
            serde_json::from_value(put["parameters"]["parameters"].clone()).unwrap();
        assert_eq!(body.compute_type(), Some(&ComputeType::Kubernetes));
    }

    #[test]
    fn unknown_compute_types_and_states_are_kept() {
        let body = json!({
            "location": "westeurope",
            "properties": {"computeType": "Batch", "resourceId": "/subscriptions/s/resourceGroups/r/providers/Microsoft.Batch/batchAccounts/b",
                           "provisioningState": "Migrating", "properties": null, "newField": {"x": 1}}
        });
        let compute: ComputeResource = serde_json::from_value(body).unwrap();
        assert_eq!(compute.compute_type(), Some(&ComputeType::Batch));
        assert_eq!(
            compute.provisioning_state(),
            Some(&ProvisioningState::Other("Migrating".into()))
        );
        let wire = serde_json::to_value(&compute).unwrap();
        assert_eq!(wire["properties"]["computeType"], "Batch");
        assert_eq!(ComputeType::from("hdinsight"), ComputeType::HdInsight);
        assert_eq!(ComputeType::from("Quantum").as_str(), "Quantum");
    }

    #[test]
    fn typed_properties_build_the_attach_bodies() {
        let mut vm = Compute::new(
            ComputeType::VirtualMachine,
            Some("/subscriptions/s/resourceGroups/r/providers/Microsoft.Compute/virtualMachines/dsvm-1".into()),
        );
        vm.properties = Some(ComputeProperties::VirtualMachine(
            VirtualMachineProperties {
                ssh_port: Some(22),
                administrator_account: Some(AdministratorAccount {
                    username: Some("azureuser".into()),
                    private_key_data: Some(SecretString::from("KEY")),
                    ..Default::default()
                }),
                ..Default::default()
            },
        ));
        let resource = ComputeResource {
            location: Some("westeurope".into()),
            properties: Some(vm),
            ..Default::default()
        };
        let wire = serde_json::to_value(&resource).unwrap();
        assert_eq!(
            wire,
            json!({"location": "westeurope", "properties": {"computeType": "VirtualMachine",
                "resourceId": "/subscriptions/s/resourceGroups/r/providers/Microsoft.Compute/virtualMachines/dsvm-1",
                "properties": {"sshPort": 22, "administratorAccount": {"username": "azureuser", "privateKeyData": "KEY"}}}})
        );
        assert!(!format!("{resource:?}").contains("KEY"));

        let mut dbw = Compute::new(ComputeType::Databricks, Some("/x".into()));
        dbw.properties = Some(ComputeProperties::Databricks(DatabricksProperties {
            databricks_access_token: Some(SecretString::from("dapi-secret")),
            workspace_url: Some("adb-1.azuredatabricks.net".into()),
        }));
        let wire = serde_json::to_value(&dbw).unwrap();
        assert_eq!(wire["properties"]["databricksAccessToken"], "dapi-secret");
        assert!(!format!("{dbw:?}").contains("dapi-secret"));
        // Read back: Databricks GET does not echo the token, and parses typed.
        let back: Compute = serde_json::from_value(json!({"computeType": "Databricks",
            "properties": {"databricksAccessToken": null, "workspaceUrl": "adb-1.azuredatabricks.net"}})).unwrap();
        assert!(
            matches!(back.properties, Some(ComputeProperties::Databricks(ref d)) if d.databricks_access_token.is_none())
        );
    }

    #[test]
    fn operation_status_bodies() {
        let done: OperationStatus =
            serde_json::from_str(&fixture("aso-operation-succeeded.json")).unwrap();
        assert_eq!(done.status, OperationState::Succeeded);
        assert_eq!(done.percent_complete, Some(100.0));
        assert!(done.status.is_terminal());
        let running: OperationStatus =
            serde_json::from_str(&fixture("py-operation-inprogress.json")).unwrap();
        assert_eq!(running.status, OperationState::InProgress);
        assert!(!running.status.is_terminal());
        let failed: OperationStatus = serde_json::from_value(json!({"status": "Failed",
            "error": {"code": "BadArgument", "message": "no", "details": null, "additionalInfo": null}})).unwrap();
        assert_eq!(failed.error.unwrap().code.as_deref(), Some("BadArgument"));
    }

    #[test]
    fn workspace_and_errors() {
        let ws: Workspace = serde_json::from_str(&fixture("aso-workspace-get.json")).unwrap();
        assert_eq!(ws.location.as_deref(), Some("westus3"));
        assert!(ws.properties.unwrap().workspace_id.is_some());
        let err: ErrorResponse = serde_json::from_str(&fixture("aso-workspace-404.json")).unwrap();
        assert_eq!(err.error.unwrap().code.as_deref(), Some("ResourceNotFound"));
    }

    #[test]
    fn list_keys_bodies_are_read_tolerantly_and_never_debug_printed() {
        let mixed: ComputeSecrets =
            serde_json::from_value(example_body("spec-listkeys-vm.json", "200")).unwrap();
        assert_eq!(mixed.compute_type, Some(ComputeType::Aks));
        let account = mixed.administrator_account.as_ref().unwrap();
        assert_eq!(
            account.password.as_ref().unwrap().expose_secret(),
            "the password"
        );
        let debug = format!("{mixed:?}");
        assert!(!debug.contains("the password"), "{debug}");
        let aks: ComputeSecrets =
            serde_json::from_value(example_body("spec-listkeys-aks.json", "200")).unwrap();
        assert!(aks.user_kube_config.is_some());
        assert!(!format!("{aks:?}").contains("user kube config"));
        let untyped: Compute =
            serde_json::from_value(json!({"provisioningState": "Succeeded"})).unwrap();
        assert_eq!(untyped.compute_type, ComputeType::Other(String::new()));
        let bare: ComputeSecrets =
            serde_json::from_value(json!({"computeType": "HDInsight", "extra": 1})).unwrap();
        assert_eq!(bare.compute_type, Some(ComputeType::HdInsight));
    }
}
