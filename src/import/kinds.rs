//! Per kind, the inverse of its body builder (`controller/kinds/`): the ARM compute →
//! the target's spec and the Secret stub it references.
//!
//! What a body holds comes back; what it does not (the Secret's name and key names) follows the
//! samples' conventions: `<name>-ssh` with `username` and `password` (or `privateKey`),
//! `<name>-token` with `token`. Secret values never come back: Azure does not return them.

use kube::Resource;
use serde::Serialize;
use serde_yaml::Value;

use super::manifests::{SkipReason, one_line, secret_stub, to_value};
use super::{PLACEHOLDER_PREFIX, SshLogin};
use crate::api::{
    BatchTarget, BatchTargetSpec, DataLakeAnalyticsTarget, DataLakeAnalyticsTargetSpec,
    DatabricksTarget, DatabricksTargetSpec, HdInsightTarget, HdInsightTargetSpec, LocalSecretRef,
    RemoteVmTarget, RemoteVmTargetSpec, SecretKeyRef, SshCredentials, TargetCommon,
    default_ssh_port,
};
use crate::api::{
    ComputeIdentity, IdentityType, InstanceTypeResourcesSpec, InstanceTypeSpec, KubernetesTarget,
    KubernetesTargetSpec, SynapseSparkTarget, SynapseSparkTargetSpec,
};
use crate::azure::models::{
    AdministratorAccount, ComputeProperties, ComputeResource, ComputeType,
    DataLakeAnalyticsProperties, DatabricksProperties, HdInsightProperties, KubernetesProperties,
    VirtualMachineProperties,
};
use crate::controller::target::Underlying;
use k8s_openapi::api::core::v1::Secret;

/// What every target of one import shares.
pub(super) struct Context<'a> {
    /// `metadata.namespace`.
    pub namespace: &'a str,
    /// The MLWorkspace's name.
    pub workspace_object: &'a str,
    /// Which SSH key the stubs hold.
    pub ssh_login: SshLogin,
}

/// One compute, imported.
pub(super) struct Imported {
    /// The target object.
    pub target: Value,
    /// The Secret stub it references, if any.
    pub secret: Option<Secret>,
    /// Comment lines for the target.
    pub comments: Vec<String>,
    /// The underlying resource's claim key (one target per resource).
    pub claim_key: String,
}

/// The target for `compute` (of a supported type), named `object`.
pub(super) fn import(
    compute: &ComputeResource,
    object: &str,
    compute_name: Option<String>,
    ctx: &Context<'_>,
) -> Result<Imported, SkipReason> {
    let shared = Shared {
        object,
        compute_name,
        ctx,
    };
    match compute.compute_type() {
        Some(ComputeType::VirtualMachine) => remote_vm(compute, shared),
        Some(ComputeType::HdInsight) => hdinsight(compute, shared),
        Some(ComputeType::Databricks) => databricks(compute, shared),
        Some(ComputeType::DataLakeAnalytics) => data_lake_analytics(compute, shared),
        Some(ComputeType::Batch) => batch(compute, shared),
        Some(ComputeType::Kubernetes) => kubernetes(compute, shared),
        Some(ComputeType::SynapseSpark) => synapse_spark(compute, shared),
        _ => Err(SkipReason::UnknownType),
    }
}

struct Shared<'a> {
    object: &'a str,
    compute_name: Option<String>,
    ctx: &'a Context<'a>,
}

impl Shared<'_> {
    /// The shared fields: the workspace object, the compute name when it is not the object's.
    fn common(&self) -> TargetCommon {
        TargetCommon {
            compute_name: self.compute_name.clone(),
            ..TargetCommon::new(self.ctx.workspace_object)
        }
    }

    /// The typed object as JSON, in the namespace.
    fn object<K: Resource + Serialize>(&self, mut target: K) -> Value {
        target.meta_mut().namespace = Some(self.ctx.namespace.to_owned());
        to_value(&target)
    }

    /// `<object>-ssh` with the user name (if Azure returned it) and a placeholder.
    fn ssh_secret(&self, account: Option<&AdministratorAccount>) -> (SshCredentials, Secret) {
        let name = format!("{}-ssh", self.object);
        let user = account
            .and_then(|a| a.username.as_deref())
            .filter(|u| !u.is_empty());
        let of = user.map(|u| format!(" of {u}")).unwrap_or_default();
        let username = user.map_or_else(
            || format!("{PLACEHOLDER_PREFIX}SSH user name>"),
            str::to_owned,
        );
        let (key, placeholder) = match self.ctx.ssh_login {
            SshLogin::Password => ("password", format!("{PLACEHOLDER_PREFIX}SSH password{of}>")),
            SshLogin::PrivateKey => (
                "privateKey",
                format!("{PLACEHOLDER_PREFIX}SSH private key{of}, OpenSSH or PEM text>"),
            ),
        };
        let credentials = SshCredentials {
            secret_ref: LocalSecretRef { name: name.clone() },
            username_key: "username".to_owned(),
            password_key: (self.ctx.ssh_login == SshLogin::Password).then(|| key.to_owned()),
            private_key_key: (self.ctx.ssh_login == SshLogin::PrivateKey).then(|| key.to_owned()),
        };
        let secret = secret_stub(
            &name,
            self.ctx.namespace,
            [("username", username), (key, placeholder)],
        );
        (credentials, secret)
    }
}

/// `properties.resourceId`, if it is the ARM id of `provider/type` (as the CRDs check it).
fn resource_id_of(compute: &ComputeResource, provider: &str, type_: &str) -> Option<String> {
    let id = compute.resource_id()?.trim().trim_end_matches('/');
    let parts: Vec<&str> = id.split('/').collect();
    let ok = id.len() <= 512
        && parts.len() == 9
        && parts[0].is_empty()
        && parts[1].eq_ignore_ascii_case("subscriptions")
        && is_guid(parts[2])
        && parts[3].eq_ignore_ascii_case("resourceGroups")
        && (1..=90).contains(&parts[4].len())
        && parts[5].eq_ignore_ascii_case("providers")
        && parts[6].eq_ignore_ascii_case(provider)
        && parts[7].eq_ignore_ascii_case(type_)
        && (1..=80).contains(&parts[8].len());
    ok.then(|| id.to_owned())
}

fn is_guid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The resource id of the kind's resource, or why not.
fn required_resource_id(
    compute: &ComputeResource,
    provider: &str,
    type_: &str,
    what: &'static str,
) -> Result<String, SkipReason> {
    match compute.resource_id() {
        None | Some("") => Err(SkipReason::NoUnderlyingResource("no properties.resourceId")),
        Some(_) => resource_id_of(compute, provider, type_).ok_or(SkipReason::WrongResource(what)),
    }
}

fn ssh_port(port: Option<i32>) -> Result<i32, SkipReason> {
    match port {
        None => Ok(default_ssh_port()),
        Some(p) if (1..=65535).contains(&p) => Ok(p),
        Some(p) => Err(SkipReason::SshPort(p)),
    }
}

fn non_empty(s: &Option<String>) -> Option<String> {
    s.as_ref().filter(|s| !s.trim().is_empty()).cloned()
}

fn typed<'a, T>(
    compute: &'a ComputeResource,
    pick: impl Fn(&'a ComputeProperties) -> Option<&'a T>,
) -> Option<&'a T> {
    compute
        .properties
        .as_ref()?
        .properties
        .as_ref()
        .and_then(pick)
}

/// Inverse of `RemoteVmTarget::build_properties`: resourceId (when it is a VM's) or address,
/// sshPort, and the user name if Azure returned it.
fn remote_vm(compute: &ComputeResource, s: Shared<'_>) -> Result<Imported, SkipReason> {
    let props: Option<&VirtualMachineProperties> = typed(compute, |p| match p {
        ComputeProperties::VirtualMachine(v) => Some(v),
        _ => None,
    });
    let address = props.and_then(|p| non_empty(&p.address));
    let vm_id = resource_id_of(compute, "Microsoft.Compute", "virtualMachines");
    let (resource_id, address) = match (vm_id, address) {
        (Some(id), _) => (Some(id), None),
        (None, Some(address)) => (None, Some(address)),
        (None, None) if compute.resource_id().is_some_and(|r| !r.is_empty()) => {
            return Err(SkipReason::WrongResource("a virtual machine"));
        }
        (None, None) => {
            return Err(SkipReason::NoUnderlyingResource(
                "neither properties.resourceId nor an address",
            ));
        }
    };
    let underlying = match (&resource_id, &address) {
        (Some(id), _) => Underlying::ResourceId(id.clone()),
        (None, a) => Underlying::Address(a.clone().unwrap_or_default()),
    };
    let ssh_port = ssh_port(props.and_then(|p| p.ssh_port))?;
    let (credentials, secret) = s.ssh_secret(props.and_then(|p| p.administrator_account.as_ref()));
    let spec = RemoteVmTargetSpec {
        common: s.common(),
        resource_id,
        address,
        ssh_port,
        credentials,
    };
    Ok(Imported {
        target: s.object(RemoteVmTarget::new(s.object, spec)),
        secret: Some(secret),
        comments: Vec::new(),
        claim_key: underlying.claim_key(),
    })
}

/// Inverse of `HdInsightTarget::build_properties`: resourceId, address, sshPort, user name.
fn hdinsight(compute: &ComputeResource, s: Shared<'_>) -> Result<Imported, SkipReason> {
    let resource_id = required_resource_id(
        compute,
        "Microsoft.HDInsight",
        "clusters",
        "an HDInsight cluster",
    )?;
    let props: Option<&HdInsightProperties> = typed(compute, |p| match p {
        ComputeProperties::HdInsight(v) => Some(v),
        _ => None,
    });
    let mut comments = Vec::new();
    let address = match props.and_then(|p| non_empty(&p.address)) {
        Some(a) => a,
        None => {
            // HDInsight's SSH endpoint by convention; Azure did not say.
            let cluster = resource_id.rsplit('/').next().unwrap_or_default();
            comments.push(
                "spec.address is the cluster's conventional SSH endpoint: Azure returned none."
                    .to_owned(),
            );
            format!("{}-ssh.azurehdinsight.net", cluster.to_ascii_lowercase())
        }
    };
    let ssh_port = ssh_port(props.and_then(|p| p.ssh_port))?;
    let (credentials, secret) = s.ssh_secret(props.and_then(|p| p.administrator_account.as_ref()));
    let claim_key = Underlying::ResourceId(resource_id.clone()).claim_key();
    let spec = HdInsightTargetSpec {
        common: s.common(),
        resource_id,
        address,
        ssh_port,
        credentials,
    };
    Ok(Imported {
        target: s.object(HdInsightTarget::new(s.object, spec)),
        secret: Some(secret),
        comments,
        claim_key,
    })
}

/// Inverse of `DatabricksTarget::build_properties`: resourceId, workspaceUrl, and a stub for
/// the token.
fn databricks(compute: &ComputeResource, s: Shared<'_>) -> Result<Imported, SkipReason> {
    let resource_id = required_resource_id(
        compute,
        "Microsoft.Databricks",
        "workspaces",
        "a Databricks workspace",
    )?;
    let props: Option<&DatabricksProperties> = typed(compute, |p| match p {
        ComputeProperties::Databricks(v) => Some(v),
        _ => None,
    });
    let secret_name = format!("{}-token", s.object);
    let secret = secret_stub(
        &secret_name,
        s.ctx.namespace,
        [(
            "token",
            format!("{PLACEHOLDER_PREFIX}Databricks access token>"),
        )],
    );
    let claim_key = Underlying::ResourceId(resource_id.clone()).claim_key();
    let spec = DatabricksTargetSpec {
        common: s.common(),
        resource_id,
        workspace_url: props.and_then(|p| non_empty(&p.workspace_url)),
        access_token_secret_ref: SecretKeyRef {
            name: secret_name,
            key: "token".to_owned(),
        },
    };
    Ok(Imported {
        target: s.object(DatabricksTarget::new(s.object, spec)),
        secret: Some(secret),
        comments: Vec::new(),
        claim_key,
    })
}

/// Inverse of `DataLakeAnalyticsTarget::build_properties` (resourceId only). The kind has no
/// field for `dataLakeStoreAccountName`; when Azure reports one it is named in a comment.
fn data_lake_analytics(compute: &ComputeResource, s: Shared<'_>) -> Result<Imported, SkipReason> {
    let resource_id = required_resource_id(
        compute,
        "Microsoft.DataLakeAnalytics",
        "accounts",
        "a Data Lake Analytics account",
    )?;
    let props: Option<&DataLakeAnalyticsProperties> = typed(compute, |p| match p {
        ComputeProperties::DataLakeAnalytics(v) => Some(v),
        _ => None,
    });
    let comments = props
        .and_then(|p| non_empty(&p.data_lake_store_account_name))
        .map(|store| {
            vec![one_line(&format!(
                "Azure reports dataLakeStoreAccountName {store:?}; the kind does not set it (Azure keeps it)."
            ))]
        })
        .unwrap_or_default();
    let claim_key = Underlying::ResourceId(resource_id.clone()).claim_key();
    let spec = DataLakeAnalyticsTargetSpec {
        common: s.common(),
        resource_id,
    };
    Ok(Imported {
        target: s.object(DataLakeAnalyticsTarget::new(s.object, spec)),
        secret: None,
        comments,
        claim_key,
    })
}

/// The compute's identity, in the two forms the CRD accepts (anything else is left out).
fn identity_of(compute: &ComputeResource) -> Option<ComputeIdentity> {
    let identity = compute.identity.as_ref()?;
    let ids: Vec<String> = identity
        .user_assigned_identities
        .iter()
        .flat_map(|m| m.keys().cloned())
        .collect();
    match identity.identity_type.as_str() {
        "SystemAssigned" => Some(ComputeIdentity {
            type_: IdentityType::SystemAssigned,
            user_assigned_identities: None,
        }),
        "UserAssigned" if !ids.is_empty() => Some(ComputeIdentity {
            type_: IdentityType::UserAssigned,
            user_assigned_identities: Some(ids),
        }),
        _ => None,
    }
}

/// Inverse of `KubernetesTarget::build_properties`: the cluster, namespace and instance types.
fn kubernetes(compute: &ComputeResource, s: Shared<'_>) -> Result<Imported, SkipReason> {
    let resource_id = resource_id_of(compute, "Microsoft.ContainerService", "managedClusters")
        .or_else(|| resource_id_of(compute, "Microsoft.Kubernetes", "connectedClusters"));
    let resource_id = match (compute.resource_id(), resource_id) {
        (None | Some(""), _) => {
            return Err(SkipReason::NoUnderlyingResource("no properties.resourceId"));
        }
        (_, None) => return Err(SkipReason::WrongResource("an AKS or Arc-enabled cluster")),
        (_, Some(id)) => id,
    };
    let props: Option<&KubernetesProperties> = typed(compute, |p| match p {
        ComputeProperties::Kubernetes(v) => Some(v),
        _ => None,
    });
    let instance_types = props.and_then(|p| p.instance_types.as_ref()).map(|types| {
        types
            .iter()
            .map(|(name, t)| {
                let spec = InstanceTypeSpec {
                    node_selector: t.node_selector.clone(),
                    resources: t.resources.as_ref().map(|r| InstanceTypeResourcesSpec {
                        requests: r.requests.clone(),
                        limits: r.limits.clone(),
                    }),
                };
                (name.clone(), spec)
            })
            .collect()
    });
    let claim_key = Underlying::ResourceId(resource_id.clone()).claim_key();
    let spec = KubernetesTargetSpec {
        common: s.common(),
        resource_id,
        namespace: props
            .and_then(|p| non_empty(&p.namespace))
            .unwrap_or_else(|| "default".to_owned()),
        default_instance_type: props.and_then(|p| non_empty(&p.default_instance_type)),
        instance_types,
        identity: identity_of(compute),
    };
    Ok(Imported {
        target: s.object(KubernetesTarget::new(s.object, spec)),
        secret: None,
        comments: Vec::new(),
        claim_key,
    })
}

/// Inverse of `SynapseSparkTarget::build_properties`: the pool (and the identity).
fn synapse_spark(compute: &ComputeResource, s: Shared<'_>) -> Result<Imported, SkipReason> {
    let id = match compute.resource_id() {
        None | Some("") => {
            return Err(SkipReason::NoUnderlyingResource("no properties.resourceId"));
        }
        Some(id) => id.trim().trim_end_matches('/'),
    };
    let parts: Vec<&str> = id.split('/').collect();
    let is_pool = parts.len() == 11
        && parts[1].eq_ignore_ascii_case("subscriptions")
        && is_guid(parts[2])
        && parts[3].eq_ignore_ascii_case("resourceGroups")
        && parts[6].eq_ignore_ascii_case("Microsoft.Synapse")
        && parts[7].eq_ignore_ascii_case("workspaces")
        && parts[9].eq_ignore_ascii_case("bigDataPools");
    if !is_pool {
        return Err(SkipReason::WrongResource("a Synapse Spark pool"));
    }
    let resource_id = id.to_owned();
    let claim_key = Underlying::ResourceId(resource_id.clone()).claim_key();
    let spec = SynapseSparkTargetSpec {
        common: s.common(),
        resource_id,
        identity: identity_of(compute),
    };
    Ok(Imported {
        target: s.object(SynapseSparkTarget::new(s.object, spec)),
        secret: None,
        comments: Vec::new(),
        claim_key,
    })
}

/// Inverse of `BatchTarget::build_properties` (resourceId only).
fn batch(compute: &ComputeResource, s: Shared<'_>) -> Result<Imported, SkipReason> {
    let resource_id = required_resource_id(
        compute,
        "Microsoft.Batch",
        "batchAccounts",
        "a Batch account",
    )?;
    let claim_key = Underlying::ResourceId(resource_id.clone()).claim_key();
    let spec = BatchTargetSpec {
        common: s.common(),
        resource_id,
    };
    Ok(Imported {
        target: s.object(BatchTarget::new(s.object, spec)),
        secret: None,
        comments: Vec::new(),
        claim_key,
    })
}
