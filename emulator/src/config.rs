//! The emulator's configuration: the world it starts with (tenant, applications, workspaces,
//! underlying resources, pre-existing computes) and its behaviour (timings, throttling, Batch).
//!
//! Every field has a default; the defaults are the team's documented default world
//! (see `emulator/README.md`), so a YAML file only needs the fields it changes.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Default tenant of the default world.
pub const DEFAULT_TENANT: &str = "11111111-1111-1111-1111-111111111111";
/// Client id of the default application that authenticates with a secret.
pub const DEFAULT_SECRET_CLIENT_ID: &str = "22222222-2222-2222-2222-222222222222";
/// The default application's client secret.
pub const DEFAULT_CLIENT_SECRET: &str = "emulator-client-secret";
/// Client id of the default application with a federated identity credential.
pub const DEFAULT_FEDERATED_CLIENT_ID: &str = "33333333-3333-3333-3333-333333333333";
/// Issuer of the default federated identity credential.
pub const DEFAULT_FEDERATED_ISSUER: &str = "https://kubernetes.default.svc";
/// Subject of the default federated identity credential (the operator's ServiceAccount).
pub const DEFAULT_FEDERATED_SUBJECT: &str =
    "system:serviceaccount:azureml-attach-system:azureml-attach";
/// Audience of the default federated identity credential.
pub const DEFAULT_FEDERATED_AUDIENCE: &str = "api://AzureADTokenExchange";
/// Subscription of the default world.
pub const DEFAULT_SUBSCRIPTION: &str = "00000000-0000-0000-0000-000000000000";
/// Resource group of the default world.
pub const DEFAULT_RESOURCE_GROUP: &str = "ml-rg";
/// Workspace of the default world.
pub const DEFAULT_WORKSPACE: &str = "prod-workspace";
/// Location of the default world.
pub const DEFAULT_LOCATION: &str = "westeurope";

/// Errors loading a configuration file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("reading config file {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid YAML for [`EmulatorConfig`].
    #[error("parsing config file {path}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: serde_yaml::Error,
    },
}

/// Complete emulator configuration. `EmulatorConfig::default()` is the documented default world.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
/// Unknown top-level keys are ignored (serde cannot combine `flatten` with `deny_unknown_fields`).
#[serde(rename_all = "camelCase", default)]
pub struct EmulatorConfig {
    /// Address to listen on (default `127.0.0.1:0`, an ephemeral port).
    pub listen: SocketAddr,
    /// Where to write the generated CA certificate (PEM). `None`: a temporary file owned by the handle.
    pub ca_file: Option<PathBuf>,
    /// Extra DNS names or IP addresses for the server certificate (besides localhost, 127.0.0.1, ::1).
    pub tls_names: Vec<String>,
    /// Extra token audiences accepted by ARM (besides management.azure.com, management.core.windows.net
    /// and the emulator's own base URL / Host).
    pub arm_audiences: Vec<String>,
    /// The Entra tenant.
    pub tenant_id: String,
    /// Entra applications (service principals).
    pub applications: Vec<Application>,
    /// Managed identities served by the IMDS-style endpoint `GET /metadata/identity/oauth2/token`.
    pub managed_identities: Vec<ManagedIdentity>,
    /// Azure ML workspaces.
    pub workspaces: Vec<Workspace>,
    /// Underlying resources (VMs, clusters, accounts) that computes attach to.
    pub resources: Vec<WorldResource>,
    /// Computes that exist at start (attached outside Kubernetes), already Succeeded.
    pub computes: Vec<SeedCompute>,
    /// Behaviour that can also be changed at run time through `PUT /_emulator/config`.
    #[serde(flatten)]
    pub settings: Settings,
}

/// Behaviour settings, readable and changeable at run time (`/_emulator/config`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct Settings {
    /// How long a PUT stays `Creating` before it turns `Succeeded`/`Failed`.
    pub provisioning_delay_ms: u64,
    /// How long a DELETE stays `Deleting` before the compute disappears.
    pub deletion_delay_ms: u64,
    /// Lifetime of issued access tokens.
    pub token_lifetime_secs: u64,
    /// Accept `computeType: Batch` (in no spec; sent by the v1 Python SDK).
    pub accept_batch: bool,
    /// Refuse DELETE without `underlyingResourceAction` (the spec marks it required).
    pub require_underlying_resource_action: bool,
    /// Refuse request bodies with properties the spec does not define (ARM ignores them).
    pub reject_unknown_properties: bool,
    /// Computes per LIST page before a `nextLink` is returned.
    pub page_size: usize,
    /// Largest accepted request body; larger gets 413.
    pub max_body_bytes: usize,
    /// ARM-like throttling.
    pub throttling: Throttling,
}

/// ARM token-bucket throttling per (subscription, principal, operation class).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct Throttling {
    /// When false, no request is throttled (headers still report a full bucket).
    pub enabled: bool,
    /// GET/HEAD.
    pub reads: Bucket,
    /// PUT/PATCH/POST.
    pub writes: Bucket,
    /// DELETE.
    pub deletes: Bucket,
}

/// One token bucket: `burst` tokens, refilled at `per_second`.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Bucket {
    /// Bucket size.
    pub burst: u32,
    /// Refill rate (tokens per second).
    pub per_second: f64,
}

/// An Entra application (service principal) of the tenant.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Application {
    /// Client (application) id.
    pub client_id: String,
    /// Object id of the service principal (`oid` claim); derived from the client id when absent.
    #[serde(default)]
    pub object_id: Option<String>,
    /// Accepted client secrets.
    #[serde(default, skip_serializing)]
    pub secrets: Vec<String>,
    /// Federated identity credentials (workload identity).
    #[serde(default)]
    pub federated_credentials: Vec<FederatedCredential>,
}

/// A federated identity credential: which external tokens may stand in for the application.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FederatedCredential {
    /// Required `iss` of the assertion.
    pub issuer: String,
    /// Required `sub` of the assertion.
    pub subject: String,
    /// One of these must be in the assertion's `aud`.
    #[serde(default = "default_fic_audiences")]
    pub audiences: Vec<String>,
}

fn default_fic_audiences() -> Vec<String> {
    vec![DEFAULT_FEDERATED_AUDIENCE.to_owned()]
}

/// A managed identity served by the IMDS-style token endpoint.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ManagedIdentity {
    /// Client id of the identity; the first one is used when the request names none.
    pub client_id: String,
}

/// An Azure ML workspace.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Workspace {
    /// Subscription id.
    pub subscription_id: String,
    /// Resource group.
    pub resource_group: String,
    /// Workspace name.
    pub name: String,
    /// Region; also the `{region}` of async-operation URLs.
    pub location: String,
}

impl Workspace {
    /// The workspace's ARM id.
    pub fn id(&self) -> String {
        format!(
            "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.MachineLearningServices/workspaces/{}",
            self.subscription_id, self.resource_group, self.name
        )
    }
}

/// An underlying Azure resource (VM, HDInsight cluster, Batch account, Databricks workspace,
/// Data Lake Analytics account) with the credentials it accepts.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorldResource {
    /// ARM id; its provider type decides the kind.
    pub id: String,
    /// SSH address (VM, HDInsight).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// VM size reported on the compute (upper-cased like Azure).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vm_size: Option<String>,
    /// Accepted SSH user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Accepted SSH password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// Accepted SSH private key (PEM/OpenSSH text).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key: Option<String>,
    /// Databricks workspace URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace_url: Option<String>,
    /// Accepted Databricks access token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_token: Option<String>,
    /// VM: `storageProfile.osDisk.osType` (`Linux` when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os_type: Option<String>,
    /// VM: `storageProfile.imageReference` (Canonical Ubuntu 24.04 when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<ImageReference>,
    /// VM: whether its NIC `{vm}-nic` has the public IP `{vm}-ip` holding `address` (default
    /// true); when false the NIC has only a private address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_ip: Option<bool>,
    /// HDInsight: `properties.clusterState` (`Running` when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_state: Option<String>,
    /// HDInsight: whether `connectivityEndpoints` has the public `SSH` endpoint (default true);
    /// when false only the private `SSH-INTERNAL`/`HTTPS-INTERNAL` ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_endpoint: Option<bool>,
    /// Managed/connected cluster: its `Microsoft.KubernetesConfiguration/extensions`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extensions: Vec<ClusterExtension>,
}

/// A VM's `storageProfile.imageReference`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ImageReference {
    /// `Canonical`, `MicrosoftWindowsServer`, `RedHat`, …
    pub publisher: String,
    /// `ubuntu-24_04-lts`, `WindowsServer`, `RHEL`, …
    pub offer: String,
    /// `server`, `2022-datacenter-azure-edition`, …
    pub sku: String,
}

impl ImageReference {
    /// An image reference.
    pub fn new(publisher: &str, offer: &str, sku: &str) -> Self {
        Self {
            publisher: publisher.to_owned(),
            offer: offer.to_owned(),
            sku: sku.to_owned(),
        }
    }
}

/// A cluster extension (`Microsoft.KubernetesConfiguration/extensions`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClusterExtension {
    /// Extension name (`azureml`).
    pub name: String,
    /// `properties.extensionType` (`Microsoft.AzureML.Kubernetes`).
    pub extension_type: String,
    /// `properties.provisioningState` (`Succeeded` when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provisioning_state: Option<String>,
}

/// Extension type of the Azure ML extension.
pub const AZUREML_EXTENSION_TYPE: &str = "Microsoft.AzureML.Kubernetes";

/// What kind of underlying resource an ARM id names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum ResourceKind {
    /// `Microsoft.Compute/virtualMachines`.
    VirtualMachine,
    /// `Microsoft.HDInsight/clusters`.
    HdInsight,
    /// `Microsoft.Batch/batchAccounts`.
    Batch,
    /// `Microsoft.Databricks/workspaces`.
    Databricks,
    /// `Microsoft.DataLakeAnalytics/accounts`.
    DataLakeAnalytics,
    /// `Microsoft.ContainerService/managedClusters` (AKS).
    ManagedCluster,
    /// `Microsoft.Kubernetes/connectedClusters` (Arc-enabled Kubernetes).
    ConnectedCluster,
    /// `Microsoft.Synapse/workspaces/{ws}/bigDataPools/{pool}`.
    SynapseSparkPool,
    /// Anything else.
    Other,
}

impl ResourceKind {
    /// Kind of the resource named by an ARM id (case-insensitive provider/type).
    pub fn of_id(id: &str) -> Self {
        let lower = id.to_ascii_lowercase();
        let provider = lower
            .rsplit_once("/providers/")
            .map(|(_, p)| p)
            .unwrap_or("");
        let mut parts = provider.split('/');
        let ns = parts.next().unwrap_or("");
        let ty = parts.next().unwrap_or("");
        let child = parts.nth(1).unwrap_or("");
        match (ns, ty) {
            ("microsoft.containerservice", "managedclusters") => Self::ManagedCluster,
            ("microsoft.kubernetes", "connectedclusters") => Self::ConnectedCluster,
            ("microsoft.synapse", "workspaces") if child == "bigdatapools" => {
                Self::SynapseSparkPool
            }
            ("microsoft.compute", "virtualmachines") => Self::VirtualMachine,
            ("microsoft.hdinsight", "clusters") => Self::HdInsight,
            ("microsoft.batch", "batchaccounts") => Self::Batch,
            ("microsoft.databricks", "workspaces") => Self::Databricks,
            ("microsoft.datalakeanalytics", "accounts") => Self::DataLakeAnalytics,
            _ => Self::Other,
        }
    }
}

/// A compute that exists at start or is added through `PUT /_emulator/computes`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SeedCompute {
    /// Workspace name (or the workspace's ARM id).
    pub workspace: String,
    /// Compute name.
    pub name: String,
    /// The ComputeResource body, as a PUT would send it.
    pub body: serde_json::Value,
}

fn rid(provider_path: &str) -> String {
    format!(
        "/subscriptions/{DEFAULT_SUBSCRIPTION}/resourceGroups/{DEFAULT_RESOURCE_GROUP}/providers/{provider_path}"
    )
}

/// Private key accepted by the default world's VMs.
pub const DEFAULT_VM_PRIVATE_KEY: &str =
    "-----BEGIN OPENSSH PRIVATE KEY-----\nemulator-dsvm-1-key\n-----END OPENSSH PRIVATE KEY-----\n";
/// Password accepted by the default world's VMs.
pub const DEFAULT_VM_PASSWORD: &str = "Emulator-VM-Passw0rd";
/// Password accepted by the default HDInsight cluster.
pub const DEFAULT_HDI_PASSWORD: &str = "Emulator-HDI-Passw0rd";
/// Token accepted by the default Databricks workspace.
pub const DEFAULT_DATABRICKS_TOKEN: &str = "dapi-emulator-0123456789abcdef";

fn vm(name: &str, address: &str) -> WorldResource {
    WorldResource {
        id: rid(&format!("Microsoft.Compute/virtualMachines/{name}")),
        address: Some(address.to_owned()),
        vm_size: Some("Standard_D2s_v3".to_owned()),
        username: Some("azureuser".to_owned()),
        password: Some(DEFAULT_VM_PASSWORD.to_owned()),
        private_key: Some(DEFAULT_VM_PRIVATE_KEY.to_owned()),
        ..WorldResource::default()
    }
}

/// The resources of the default world.
pub fn default_resources() -> Vec<WorldResource> {
    vec![
        vm("dsvm-1", "20.61.0.10"),
        vm("dsvm-2", "20.61.0.11"),
        WorldResource {
            id: rid("Microsoft.HDInsight/clusters/spark-1"),
            address: Some("spark-1-ssh.azurehdinsight.net".to_owned()),
            username: Some("sshuser".to_owned()),
            password: Some(DEFAULT_HDI_PASSWORD.to_owned()),
            ..WorldResource::default()
        },
        WorldResource {
            id: rid("Microsoft.Batch/batchAccounts/batch1"),
            ..WorldResource::default()
        },
        WorldResource {
            id: rid("Microsoft.Databricks/workspaces/dbw-1"),
            workspace_url: Some("adb-1234567890123456.7.azuredatabricks.net".to_owned()),
            access_token: Some(DEFAULT_DATABRICKS_TOKEN.to_owned()),
            ..WorldResource::default()
        },
        WorldResource {
            id: rid("Microsoft.DataLakeAnalytics/accounts/adla1"),
            ..WorldResource::default()
        },
    ]
}

/// The preflight world: underlying resources that pass each prerequisite check and resources
/// that fail one each. Part of the default world (after [`default_resources`]); names in
/// `emulator/README.md`.
pub fn preflight_resources() -> Vec<WorldResource> {
    let azureml = || ClusterExtension {
        name: "azureml".to_owned(),
        extension_type: AZUREML_EXTENSION_TYPE.to_owned(),
        provisioning_state: None,
    };
    vec![
        // Fails "Linux": a Windows Server VM.
        WorldResource {
            os_type: Some("Windows".to_owned()),
            image: Some(ImageReference::new(
                "MicrosoftWindowsServer",
                "WindowsServer",
                "2022-datacenter-azure-edition",
            )),
            ..vm("win-vm", "20.61.0.20")
        },
        // Fails "Ubuntu": Linux from a Red Hat image.
        WorldResource {
            image: Some(ImageReference::new("RedHat", "RHEL", "9-lvm-gen2")),
            ..vm("rhel-vm", "20.61.0.21")
        },
        // Fails "public IP": only a private address.
        WorldResource {
            public_ip: Some(false),
            ..vm("private-vm", "10.0.0.22")
        },
        // Fails "Running".
        WorldResource {
            id: rid("Microsoft.HDInsight/clusters/spark-stopped"),
            address: Some("spark-stopped-ssh.azurehdinsight.net".to_owned()),
            username: Some("sshuser".to_owned()),
            password: Some(DEFAULT_HDI_PASSWORD.to_owned()),
            cluster_state: Some("Error".to_owned()),
            ..WorldResource::default()
        },
        // Fails "public endpoint": private link only.
        WorldResource {
            id: rid("Microsoft.HDInsight/clusters/spark-private"),
            address: Some("spark-private-int.azurehdinsight.net".to_owned()),
            username: Some("sshuser".to_owned()),
            password: Some(DEFAULT_HDI_PASSWORD.to_owned()),
            public_endpoint: Some(false),
            ..WorldResource::default()
        },
        // Passes: AKS and Arc clusters with the Azure ML extension.
        WorldResource {
            id: rid("Microsoft.ContainerService/managedClusters/aks-1"),
            extensions: vec![azureml()],
            ..WorldResource::default()
        },
        WorldResource {
            id: rid("Microsoft.Kubernetes/connectedClusters/arc-1"),
            extensions: vec![azureml()],
            ..WorldResource::default()
        },
        // Fails "extension installed".
        WorldResource {
            id: rid("Microsoft.ContainerService/managedClusters/aks-noext"),
            extensions: vec![ClusterExtension {
                name: "flux".to_owned(),
                extension_type: "microsoft.flux".to_owned(),
                provisioning_state: None,
            }],
            ..WorldResource::default()
        },
        // Fails "extension Succeeded".
        WorldResource {
            id: rid("Microsoft.Kubernetes/connectedClusters/arc-failed"),
            extensions: vec![ClusterExtension {
                provisioning_state: Some("Failed".to_owned()),
                ..azureml()
            }],
            ..WorldResource::default()
        },
        // Passes: a Synapse Spark pool.
        WorldResource {
            id: rid("Microsoft.Synapse/workspaces/syn-1/bigDataPools/pool1"),
            ..WorldResource::default()
        },
    ]
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            ca_file: None,
            tls_names: Vec::new(),
            arm_audiences: Vec::new(),
            tenant_id: DEFAULT_TENANT.to_owned(),
            applications: vec![
                Application {
                    client_id: DEFAULT_SECRET_CLIENT_ID.to_owned(),
                    object_id: None,
                    secrets: vec![DEFAULT_CLIENT_SECRET.to_owned()],
                    federated_credentials: Vec::new(),
                },
                Application {
                    client_id: DEFAULT_FEDERATED_CLIENT_ID.to_owned(),
                    object_id: None,
                    secrets: Vec::new(),
                    federated_credentials: vec![FederatedCredential {
                        issuer: DEFAULT_FEDERATED_ISSUER.to_owned(),
                        subject: DEFAULT_FEDERATED_SUBJECT.to_owned(),
                        audiences: default_fic_audiences(),
                    }],
                },
            ],
            managed_identities: Vec::new(),
            workspaces: vec![Workspace {
                subscription_id: DEFAULT_SUBSCRIPTION.to_owned(),
                resource_group: DEFAULT_RESOURCE_GROUP.to_owned(),
                name: DEFAULT_WORKSPACE.to_owned(),
                location: DEFAULT_LOCATION.to_owned(),
            }],
            resources: default_resources()
                .into_iter()
                .chain(preflight_resources())
                .collect(),
            computes: Vec::new(),
            settings: Settings::default(),
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            provisioning_delay_ms: 1500,
            deletion_delay_ms: 500,
            token_lifetime_secs: 3600,
            accept_batch: true,
            require_underlying_resource_action: true,
            reject_unknown_properties: false,
            page_size: 50,
            max_body_bytes: 1024 * 1024,
            throttling: Throttling::default(),
        }
    }
}

impl Default for Throttling {
    fn default() -> Self {
        Self {
            enabled: true,
            reads: Bucket {
                burst: 250,
                per_second: 25.0,
            },
            writes: Bucket {
                burst: 200,
                per_second: 10.0,
            },
            deletes: Bucket {
                burst: 200,
                per_second: 10.0,
            },
        }
    }
}

impl EmulatorConfig {
    /// Parse a YAML (or JSON) configuration; missing fields take the default world's values.
    pub fn from_yaml(text: &str) -> Result<Self, serde_yaml::Error> {
        serde_yaml::from_str(text)
    }

    /// Read and parse a YAML configuration file.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_yaml(&text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source,
        })
    }

    /// Small delays for fast tests: provisioning 50 ms, deletion 20 ms.
    pub fn fast() -> Self {
        let mut c = Self::default();
        c.settings.provisioning_delay_ms = 50;
        c.settings.deletion_delay_ms = 20;
        c
    }
}

/// Partial update of [`Settings`] (`PUT /_emulator/config`); absent fields are unchanged.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SettingsPatch {
    /// See [`Settings::provisioning_delay_ms`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provisioning_delay_ms: Option<u64>,
    /// See [`Settings::deletion_delay_ms`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_delay_ms: Option<u64>,
    /// See [`Settings::token_lifetime_secs`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_lifetime_secs: Option<u64>,
    /// See [`Settings::accept_batch`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accept_batch: Option<bool>,
    /// See [`Settings::require_underlying_resource_action`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub require_underlying_resource_action: Option<bool>,
    /// See [`Settings::reject_unknown_properties`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reject_unknown_properties: Option<bool>,
    /// See [`Settings::page_size`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page_size: Option<usize>,
    /// See [`Settings::max_body_bytes`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_body_bytes: Option<usize>,
    /// See [`Settings::throttling`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throttling: Option<ThrottlingPatch>,
}

/// Partial update of [`Throttling`].
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ThrottlingPatch {
    /// See [`Throttling::enabled`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// See [`Throttling::reads`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reads: Option<Bucket>,
    /// See [`Throttling::writes`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub writes: Option<Bucket>,
    /// See [`Throttling::deletes`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletes: Option<Bucket>,
}

impl Settings {
    /// Apply a partial update.
    pub fn apply(&mut self, p: &SettingsPatch) {
        if let Some(v) = p.provisioning_delay_ms {
            self.provisioning_delay_ms = v;
        }
        if let Some(v) = p.deletion_delay_ms {
            self.deletion_delay_ms = v;
        }
        if let Some(v) = p.token_lifetime_secs {
            self.token_lifetime_secs = v;
        }
        if let Some(v) = p.accept_batch {
            self.accept_batch = v;
        }
        if let Some(v) = p.require_underlying_resource_action {
            self.require_underlying_resource_action = v;
        }
        if let Some(v) = p.reject_unknown_properties {
            self.reject_unknown_properties = v;
        }
        if let Some(v) = p.page_size {
            self.page_size = v.max(1);
        }
        if let Some(v) = p.max_body_bytes {
            self.max_body_bytes = v;
        }
        if let Some(t) = &p.throttling {
            if let Some(v) = t.enabled {
                self.throttling.enabled = v;
            }
            if let Some(v) = t.reads {
                self.throttling.reads = v;
            }
            if let Some(v) = t.writes {
                self.throttling.writes = v;
            }
            if let Some(v) = t.deletes {
                self.throttling.deletes = v;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_yaml_is_the_default_world() {
        assert_eq!(
            EmulatorConfig::from_yaml("{}").unwrap(),
            EmulatorConfig::default()
        );
    }

    #[test]
    fn partial_yaml_keeps_other_defaults() {
        let c = EmulatorConfig::from_yaml(
            "provisioningDelayMs: 10\nthrottling: {enabled: false}\nacceptBatch: false\n",
        )
        .unwrap();
        assert_eq!(c.settings.provisioning_delay_ms, 10);
        assert!(!c.settings.throttling.enabled);
        assert_eq!(c.settings.throttling.reads.burst, 250);
        assert!(!c.settings.accept_batch);
        assert_eq!(c.resources, EmulatorConfig::default().resources);
    }

    #[test]
    fn preflight_fields_load_from_yaml() {
        let c = EmulatorConfig::from_yaml(
            "resources:\n- id: /subscriptions/s/resourceGroups/r/providers/Microsoft.Compute/virtualMachines/w\n  address: 1.2.3.4\n  osType: Windows\n  image: {publisher: MicrosoftWindowsServer, offer: WindowsServer, sku: 2022-datacenter}\n  publicIp: false\n- id: /subscriptions/s/resourceGroups/r/providers/Microsoft.Kubernetes/connectedClusters/c\n  extensions: [{name: azureml, extensionType: Microsoft.AzureML.Kubernetes, provisioningState: Failed}]\n",
        )
        .unwrap();
        assert_eq!(c.resources[0].os_type.as_deref(), Some("Windows"));
        assert_eq!(c.resources[0].public_ip, Some(false));
        assert_eq!(
            ResourceKind::of_id(&c.resources[1].id),
            ResourceKind::ConnectedCluster
        );
        assert_eq!(
            c.resources[1].extensions[0].provisioning_state.as_deref(),
            Some("Failed")
        );
        let kinds: Vec<ResourceKind> = preflight_resources()
            .iter()
            .map(|r| ResourceKind::of_id(&r.id))
            .collect();
        assert!(kinds.contains(&ResourceKind::SynapseSparkPool));
        assert!(!kinds.contains(&ResourceKind::Other));
    }

    #[test]
    fn resource_kinds() {
        let kinds: Vec<ResourceKind> = default_resources()
            .iter()
            .map(|r| ResourceKind::of_id(&r.id))
            .collect();
        assert_eq!(
            kinds,
            [
                ResourceKind::VirtualMachine,
                ResourceKind::VirtualMachine,
                ResourceKind::HdInsight,
                ResourceKind::Batch,
                ResourceKind::Databricks,
                ResourceKind::DataLakeAnalytics
            ]
        );
        assert_eq!(ResourceKind::of_id("/x"), ResourceKind::Other);
    }

    #[test]
    fn settings_patch_applies_partially() {
        let mut s = Settings::default();
        s.apply(&SettingsPatch {
            page_size: Some(0),
            throttling: Some(ThrottlingPatch {
                enabled: Some(false),
                ..Default::default()
            }),
            ..Default::default()
        });
        assert_eq!(s.page_size, 1);
        assert!(!s.throttling.enabled);
        assert_eq!(s.provisioning_delay_ms, 1500);
    }
}
