//! `azureml-attach import`: the manifests that bring a workspace's existing attachments under
//! management.
//!
//! One LIST of the workspace's computes (through the same [`ArmClient`] and throttle as the
//! operator), then a pure mapping ([`manifests`]) that inverts each kind's body builder: an
//! `MLWorkspace`, one target per supported compute, and Secret stubs whose values are
//! placeholders (Azure never returns credentials; listKeys is not called). Applied, every
//! target finds its compute under its name and adopts it (rule 3): no PUT.

mod kinds;
mod manifests;

#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;

use crate::api::CloudName;
use crate::azure::models::ComputeResource;
use crate::azure::{
    ArmClient, ArmError, AzureConfig, Cloud, ConfigError, CredentialError, CredentialFactory,
    CredentialSpec, ManagedIdentityId, Throttle, WorkspaceRef,
};

pub use manifests::{Document, Output, SkipReason, Skipped, manifests};

/// Prefix of every placeholder value in a Secret stub (`<fill in: …>`).
pub const PLACEHOLDER_PREFIX: &str = "<fill in: ";

/// How many times a throttled LIST is retried (after ARM's `Retry-After`).
const THROTTLED_RETRIES: usize = 3;
/// The longest single wait for a throttled LIST.
const MAX_THROTTLE_WAIT: Duration = Duration::from_secs(30);

/// `--credential`: the identity, as an `MLWorkspace` takes it (plus `AzureCli` for the import
/// itself).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum CredentialKind {
    /// The operator's own identity (workload identity env, else managed identity).
    #[value(name = "Default")]
    Default,
    /// Workload identity federation with `--tenant-id` and `--client-id`.
    #[value(name = "WorkloadIdentity")]
    WorkloadIdentity,
    /// An app registration's client secret (`--tenant-id`, `--client-id`, env `AZURE_CLIENT_SECRET`).
    #[value(name = "ClientSecret")]
    ClientSecret,
    /// A managed identity; user-assigned with `--client-id`.
    #[value(name = "ManagedIdentity")]
    ManagedIdentity,
    /// The Azure CLI's account for the import; the MLWorkspace gets `type: Default`.
    #[value(name = "AzureCli")]
    AzureCli,
}

/// `--ssh-login`: which key the SSH Secret stubs hold (Azure does not say which was used).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum SshLogin {
    /// `passwordKey: password`.
    #[default]
    Password,
    /// `privateKeyKey: privateKey`.
    PrivateKey,
}

/// The chosen identity with its settings, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CredentialChoice {
    /// `Default`.
    Default,
    /// `WorkloadIdentity`.
    WorkloadIdentity {
        /// Tenant id.
        tenant_id: String,
        /// Client id.
        client_id: String,
    },
    /// `ClientSecret`.
    ClientSecret {
        /// Tenant id.
        tenant_id: String,
        /// Client id.
        client_id: String,
    },
    /// `ManagedIdentity`, system-assigned unless a client id is given.
    ManagedIdentity {
        /// Client id of a user-assigned identity.
        client_id: Option<String>,
    },
    /// `AzureCli`.
    AzureCli {
        /// Tenant override.
        tenant_id: Option<String>,
    },
}

impl CredentialChoice {
    /// Checks that `--tenant-id` and `--client-id` are given exactly where `kind` uses them.
    pub fn from_flags(
        kind: CredentialKind,
        tenant_id: Option<String>,
        client_id: Option<String>,
    ) -> Result<Self, ImportError> {
        let required = |flag: &'static str, v: Option<String>| {
            v.filter(|v| !v.trim().is_empty())
                .ok_or(ImportError::MissingFlag { flag, kind })
        };
        let unused = |flag: &'static str, v: &Option<String>| match v {
            Some(_) => Err(ImportError::UnusedFlag { flag, kind }),
            None => Ok(()),
        };
        Ok(match kind {
            CredentialKind::Default => {
                unused("--tenant-id", &tenant_id)?;
                unused("--client-id", &client_id)?;
                CredentialChoice::Default
            }
            CredentialKind::WorkloadIdentity => CredentialChoice::WorkloadIdentity {
                tenant_id: required("--tenant-id", tenant_id)?,
                client_id: required("--client-id", client_id)?,
            },
            CredentialKind::ClientSecret => CredentialChoice::ClientSecret {
                tenant_id: required("--tenant-id", tenant_id)?,
                client_id: required("--client-id", client_id)?,
            },
            CredentialKind::ManagedIdentity => {
                unused("--tenant-id", &tenant_id)?;
                CredentialChoice::ManagedIdentity { client_id }
            }
            CredentialKind::AzureCli => {
                unused("--client-id", &client_id)?;
                CredentialChoice::AzureCli { tenant_id }
            }
        })
    }

    /// How the import itself authenticates.
    pub fn spec(&self) -> CredentialSpec {
        match self {
            CredentialChoice::Default => CredentialSpec::OperatorDefault,
            CredentialChoice::WorkloadIdentity {
                tenant_id,
                client_id,
            } => CredentialSpec::WorkloadIdentity {
                tenant_id: Some(tenant_id.clone()),
                client_id: Some(client_id.clone()),
            },
            CredentialChoice::ClientSecret {
                tenant_id,
                client_id,
            } => CredentialSpec::ClientSecret {
                tenant_id: tenant_id.clone(),
                client_id: client_id.clone(),
            },
            CredentialChoice::ManagedIdentity { client_id } => CredentialSpec::ManagedIdentity {
                user_assigned: client_id.clone().map(ManagedIdentityId::ClientId),
            },
            CredentialChoice::AzureCli { tenant_id } => CredentialSpec::AzureCli {
                tenant_id: tenant_id.clone(),
            },
        }
    }
}

/// What the manifests are made for.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The Azure ML workspace.
    pub workspace: WorkspaceRef,
    /// `metadata.namespace` of every object.
    pub namespace: String,
    /// `metadata.name` of the MLWorkspace (the targets' `workspaceRef`).
    pub workspace_object: String,
    /// `spec.cloud` of the MLWorkspace (`None`: the operator's own `--cloud`).
    pub cloud: Option<CloudName>,
    /// The identity.
    pub credential: CredentialChoice,
    /// Which SSH key the stubs hold.
    pub ssh_login: SshLogin,
}

impl Settings {
    /// Settings from the command line: `workspace_object` defaults to the workspace's name
    /// (made a valid Kubernetes name), and names given explicitly must be valid as they are.
    pub fn new(
        workspace: WorkspaceRef,
        namespace: &str,
        workspace_object: Option<&str>,
        cloud: Cloud,
        credential: CredentialChoice,
        ssh_login: SshLogin,
    ) -> Result<Self, ImportError> {
        if !manifests::is_object_name(namespace) || namespace.len() > 63 || namespace.contains('.')
        {
            return Err(ImportError::InvalidName {
                what: "--namespace",
                value: namespace.to_owned(),
            });
        }
        let workspace_object = match workspace_object {
            Some(name) if manifests::is_object_name(name) => name.to_owned(),
            Some(name) => {
                return Err(ImportError::InvalidName {
                    what: "--workspace-object-name",
                    value: name.to_owned(),
                });
            }
            None => manifests::object_name(&workspace.workspace_name),
        };
        Ok(Self {
            workspace,
            namespace: namespace.to_owned(),
            workspace_object,
            cloud: cloud_name(cloud),
            credential,
            ssh_login,
        })
    }
}

/// The `MLWorkspace.spec.cloud` for the cloud the import talked to: none for the public cloud
/// (the operator's default), the cloud's name otherwise.
pub fn cloud_name(cloud: Cloud) -> Option<CloudName> {
    match cloud {
        Cloud::AzurePublic => None,
        Cloud::AzureChina => Some(CloudName::AzureChina),
        Cloud::AzureUSGovernment => Some(CloudName::AzureUSGovernment),
        Cloud::Custom => Some(CloudName::Custom),
    }
}

/// Why an import failed. Messages name flags and settings, never a secret.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// A flag the credential needs is missing.
    #[error("--credential {kind:?} needs {flag}")]
    MissingFlag {
        /// The flag.
        flag: &'static str,
        /// The credential.
        kind: CredentialKind,
    },
    /// A flag the credential does not use was given.
    #[error("{flag} is not used with --credential {kind:?}")]
    UnusedFlag {
        /// The flag.
        flag: &'static str,
        /// The credential.
        kind: CredentialKind,
    },
    /// `ClientSecret` without the environment variable.
    #[error(
        "--credential ClientSecret reads the client secret from the environment: set AZURE_CLIENT_SECRET"
    )]
    MissingClientSecret,
    /// A name that cannot be used in the manifests.
    #[error(
        "{what} {value:?} is not a valid Kubernetes name (lowercase letters, digits and '-', starting and ending with a letter or digit)"
    )]
    InvalidName {
        /// Which flag.
        what: &'static str,
        /// The value.
        value: String,
    },
    /// The cloud flags.
    #[error("invalid Azure configuration")]
    Config(#[from] ConfigError),
    /// The credential could not be built.
    #[error("cannot build the credential")]
    Credential(#[from] CredentialError),
    /// ARM refused or failed.
    #[error("cannot read the workspace")]
    Arm(#[from] ArmError),
    /// The manifests could not be written as YAML.
    #[error("cannot write the manifests as YAML")]
    Yaml(#[from] serde_yaml::Error),
}

/// Reads the workspace (a clear error when it does not exist) and LISTs its computes.
pub async fn list_computes(
    config: &AzureConfig,
    credential: &CredentialChoice,
    client_secret: Option<SecretString>,
    workspace: &WorkspaceRef,
) -> Result<Vec<ComputeResource>, ImportError> {
    let spec = credential.spec();
    if spec.needs_client_secret() && client_secret.is_none() {
        return Err(ImportError::MissingClientSecret);
    }
    let token = CredentialFactory::new(config).build(&spec, &config.endpoints, client_secret)?;
    let throttle = Arc::new(Throttle::new(config.throttle));
    let arm = ArmClient::new(config, token, throttle, None);
    arm.get_workspace(workspace).await?;
    let mut attempt = 0;
    loop {
        match arm.list_computes(workspace).await {
            Err(ArmError::Throttled { retry_after, .. }) if attempt < THROTTLED_RETRIES => {
                attempt += 1;
                tokio::time::sleep(retry_after.min(MAX_THROTTLE_WAIT)).await;
            }
            other => return Ok(other?),
        }
    }
}
