//! Entra ID credentials from `azure_identity` 1.x, chosen explicitly (the Rust SDK has no
//! `DefaultAzureCredential`).
//!
//! Every credential gets the same `ClientOptions`: the cloud's authority host (as a custom
//! cloud configuration, so that private clouds and the emulator work) and the operator's shared
//! reqwest client as transport (so the extra CA bundle and the ring provider apply to token
//! requests too). azure_identity caches tokens per credential instance and refreshes them
//! before expiry; the controller caches credential instances (keyed by [`CredentialSpec`],
//! [`CloudEndpoints`] and the referenced Secret's resourceVersion).

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use azure_core::cloud::{CloudConfiguration, CustomConfiguration};
use azure_core::credentials::{Secret, TokenCredential};
use azure_core::http::{ClientOptions, Transport};
use azure_identity::{
    AzureCliCredential, AzureCliCredentialOptions, ClientAssertionCredentialOptions,
    ClientSecretCredential, ClientSecretCredentialOptions, ManagedIdentityCredential,
    ManagedIdentityCredentialOptions, UserAssignedId, WorkloadIdentityCredential,
    WorkloadIdentityCredentialOptions,
};
use secrecy::{ExposeSecret, SecretString};

use super::cloud::{AzureConfig, CloudEndpoints};

/// Environment variables the AKS workload identity webhook injects.
pub const ENV_CLIENT_ID: &str = "AZURE_CLIENT_ID";
/// Tenant id variable.
pub const ENV_TENANT_ID: &str = "AZURE_TENANT_ID";
/// Projected service-account token file variable.
pub const ENV_FEDERATED_TOKEN_FILE: &str = "AZURE_FEDERATED_TOKEN_FILE";

/// A user-assigned managed identity.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ManagedIdentityId {
    /// By client (application) id.
    ClientId(String),
    /// By object (principal) id.
    ObjectId(String),
    /// By ARM resource id.
    ResourceId(String),
}

/// Which identity an `MLWorkspace` asks for. No secret material: a client secret is passed
/// separately to [`CredentialFactory::build`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum CredentialSpec {
    /// The operator's own identity: workload identity when the webhook's variables are set,
    /// otherwise the (system-assigned) managed identity.
    OperatorDefault,
    /// Workload identity (federated service-account token); `None` fields come from the
    /// webhook's environment (`AZURE_TENANT_ID`, `AZURE_CLIENT_ID`).
    WorkloadIdentity {
        /// Tenant override.
        tenant_id: Option<String>,
        /// Client (application) id override.
        client_id: Option<String>,
    },
    /// An app registration's client secret (the secret comes from a Kubernetes Secret).
    ClientSecret {
        /// Tenant id.
        tenant_id: String,
        /// Client (application) id.
        client_id: String,
    },
    /// Managed identity (IMDS or App Service); system-assigned when `user_assigned` is `None`.
    ManagedIdentity {
        /// A user-assigned identity.
        user_assigned: Option<ManagedIdentityId>,
    },
    /// The Azure CLI's logged-in account (local development only).
    AzureCli {
        /// Tenant override.
        tenant_id: Option<String>,
    },
}

impl CredentialSpec {
    /// Short name for logs, metrics and conditions.
    pub fn kind(&self) -> &'static str {
        match self {
            CredentialSpec::OperatorDefault => "OperatorDefault",
            CredentialSpec::WorkloadIdentity { .. } => "WorkloadIdentity",
            CredentialSpec::ClientSecret { .. } => "ClientSecret",
            CredentialSpec::ManagedIdentity { .. } => "ManagedIdentity",
            CredentialSpec::AzureCli { .. } => "AzureCli",
        }
    }

    /// Whether [`CredentialFactory::build`] needs a client secret for this spec.
    pub fn needs_client_secret(&self) -> bool {
        matches!(self, CredentialSpec::ClientSecret { .. })
    }
}

/// The workload identity settings of the operator's pod, read once at start.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WorkloadIdentityEnv {
    /// `AZURE_CLIENT_ID`.
    pub client_id: Option<String>,
    /// `AZURE_TENANT_ID`.
    pub tenant_id: Option<String>,
    /// `AZURE_FEDERATED_TOKEN_FILE`.
    pub token_file: Option<PathBuf>,
}

impl WorkloadIdentityEnv {
    /// Reads the webhook's variables (empty values count as unset).
    pub fn from_env() -> Self {
        fn var(name: &str) -> Option<String> {
            std::env::var(name).ok().filter(|v| !v.trim().is_empty())
        }
        Self {
            client_id: var(ENV_CLIENT_ID),
            tenant_id: var(ENV_TENANT_ID),
            token_file: var(ENV_FEDERATED_TOKEN_FILE).map(PathBuf::from),
        }
    }

    /// True when a federated token file is configured (the pod runs with workload identity).
    pub fn is_configured(&self) -> bool {
        self.token_file.is_some()
    }
}

/// Builds credentials that honour the configured authority host, CA bundle and TLS provider.
#[derive(Clone)]
pub struct CredentialFactory {
    http: reqwest::Client,
    workload: WorkloadIdentityEnv,
}

impl fmt::Debug for CredentialFactory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CredentialFactory")
            .field("workload", &self.workload)
            .finish_non_exhaustive()
    }
}

impl CredentialFactory {
    /// A factory using the config's HTTP client and the process environment.
    pub fn new(config: &AzureConfig) -> Self {
        Self::with_env(config, WorkloadIdentityEnv::from_env())
    }

    /// A factory with explicit workload identity settings (tests, or a non-webhook setup).
    pub fn with_env(config: &AzureConfig, workload: WorkloadIdentityEnv) -> Self {
        Self {
            http: config.http_client().clone(),
            workload,
        }
    }

    /// The workload identity settings in use.
    pub fn workload_env(&self) -> &WorkloadIdentityEnv {
        &self.workload
    }

    /// The azure_core options every credential gets: our transport and the authority host.
    fn client_options(&self, endpoints: &CloudEndpoints) -> ClientOptions {
        let mut custom = CustomConfiguration::default();
        custom.authority_host = endpoints.authority_host_str();
        ClientOptions {
            transport: Some(Transport::new(Arc::new(self.http.clone()))),
            cloud: Some(Arc::new(CloudConfiguration::from(custom))),
            ..Default::default()
        }
    }

    /// Builds the credential for `spec` against `endpoints`' authority host.
    ///
    /// `client_secret` is required for [`CredentialSpec::ClientSecret`] and ignored otherwise.
    /// Building does no network I/O (workload identity reads the token file once, to fail
    /// early on a missing projection).
    pub fn build(
        &self,
        spec: &CredentialSpec,
        endpoints: &CloudEndpoints,
        client_secret: Option<SecretString>,
    ) -> Result<Arc<dyn TokenCredential>, CredentialError> {
        let options = self.client_options(endpoints);
        match spec {
            CredentialSpec::OperatorDefault if self.workload.is_configured() => {
                self.workload_identity(None, None, options)
            }
            CredentialSpec::OperatorDefault => managed_identity(None, options),
            CredentialSpec::WorkloadIdentity {
                tenant_id,
                client_id,
            } => self.workload_identity(tenant_id.clone(), client_id.clone(), options),
            CredentialSpec::ClientSecret {
                tenant_id,
                client_id,
            } => {
                let secret = client_secret
                    .filter(|s| !s.expose_secret().is_empty())
                    .ok_or(CredentialError::MissingClientSecret)?;
                let credential = ClientSecretCredential::new(
                    tenant_id,
                    client_id.clone(),
                    Secret::new(secret.expose_secret().to_owned()),
                    Some(ClientSecretCredentialOptions {
                        client_options: options,
                    }),
                )
                .map_err(|source| CredentialError::Build {
                    kind: spec.kind(),
                    source,
                })?;
                Ok(credential)
            }
            CredentialSpec::ManagedIdentity { user_assigned } => {
                managed_identity(user_assigned.clone(), options)
            }
            CredentialSpec::AzureCli { tenant_id } => {
                let credential = AzureCliCredential::new(Some(AzureCliCredentialOptions {
                    tenant_id: tenant_id.clone(),
                    ..Default::default()
                }))
                .map_err(|source| CredentialError::Build {
                    kind: spec.kind(),
                    source,
                })?;
                Ok(credential)
            }
        }
    }

    fn workload_identity(
        &self,
        tenant_id: Option<String>,
        client_id: Option<String>,
        options: ClientOptions,
    ) -> Result<Arc<dyn TokenCredential>, CredentialError> {
        // Resolve from our snapshot of the environment so azure_identity never reads it.
        let tenant_id = tenant_id
            .or_else(|| self.workload.tenant_id.clone())
            .ok_or(CredentialError::MissingWorkloadIdentitySetting(
                ENV_TENANT_ID,
            ))?;
        let client_id = client_id
            .or_else(|| self.workload.client_id.clone())
            .ok_or(CredentialError::MissingWorkloadIdentitySetting(
                ENV_CLIENT_ID,
            ))?;
        let token_file = self.workload.token_file.clone().ok_or(
            CredentialError::MissingWorkloadIdentitySetting(ENV_FEDERATED_TOKEN_FILE),
        )?;
        let credential = WorkloadIdentityCredential::new(Some(WorkloadIdentityCredentialOptions {
            credential_options: ClientAssertionCredentialOptions {
                client_options: options,
            },
            client_id: Some(client_id),
            tenant_id: Some(tenant_id),
            token_file_path: Some(token_file),
        }))
        .map_err(|source| CredentialError::Build {
            kind: "WorkloadIdentity",
            source,
        })?;
        Ok(credential)
    }
}

fn managed_identity(
    user_assigned: Option<ManagedIdentityId>,
    options: ClientOptions,
) -> Result<Arc<dyn TokenCredential>, CredentialError> {
    let user_assigned_id = user_assigned.map(|id| match id {
        ManagedIdentityId::ClientId(v) => UserAssignedId::ClientId(v),
        ManagedIdentityId::ObjectId(v) => UserAssignedId::ObjectId(v),
        ManagedIdentityId::ResourceId(v) => UserAssignedId::ResourceId(v),
    });
    let credential = ManagedIdentityCredential::new(Some(ManagedIdentityCredentialOptions {
        user_assigned_id,
        client_options: options,
    }))
    .map_err(|source| CredentialError::Build {
        kind: "ManagedIdentity",
        source,
    })?;
    Ok(credential)
}

/// A credential could not be built.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    /// `ClientSecret` without a (non-empty) secret.
    #[error("the client secret is missing or empty")]
    MissingClientSecret,
    /// Workload identity without one of its settings.
    #[error(
        "workload identity is not configured: {0} is not set (is the azure-workload-identity webhook enabled for this pod?)"
    )]
    MissingWorkloadIdentitySetting(&'static str),
    /// azure_identity refused the settings (bad tenant id, unreadable token file, …).
    #[error("cannot build the {kind} credential")]
    Build {
        /// Credential kind.
        kind: &'static str,
        /// azure_identity's error (names the setting, never a secret).
        #[source]
        source: azure_core::Error,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::azure::cloud::{AzureOptions, Cloud, EndpointOverrides};

    fn config() -> AzureConfig {
        AzureConfig::from_parts(
            AzureOptions {
                cloud: Cloud::Custom,
                overrides: EndpointOverrides {
                    arm_endpoint: Some("https://127.0.0.1:9".into()),
                    arm_audience: None,
                    authority_host: Some("https://127.0.0.1:9".into()),
                },
                ..Default::default()
            },
            None,
        )
        .unwrap()
    }

    const TENANT: &str = "11111111-1111-1111-1111-111111111111";

    #[test]
    fn client_secret_requires_a_secret() {
        let config = config();
        let factory = CredentialFactory::with_env(&config, WorkloadIdentityEnv::default());
        let spec = CredentialSpec::ClientSecret {
            tenant_id: TENANT.into(),
            client_id: "22222222-2222-2222-2222-222222222222".into(),
        };
        assert!(spec.needs_client_secret());
        let err = factory.build(&spec, &config.endpoints, None).unwrap_err();
        assert!(matches!(err, CredentialError::MissingClientSecret));
        let err = factory
            .build(&spec, &config.endpoints, Some(SecretString::from("")))
            .unwrap_err();
        assert!(matches!(err, CredentialError::MissingClientSecret));
        let credential = factory
            .build(&spec, &config.endpoints, Some(SecretString::from("s3cret")))
            .unwrap();
        assert!(!format!("{credential:?}").contains("s3cret"));
    }

    #[test]
    fn workload_identity_needs_the_webhook_settings() {
        let config = config();
        let factory = CredentialFactory::with_env(&config, WorkloadIdentityEnv::default());
        let spec = CredentialSpec::WorkloadIdentity {
            tenant_id: Some(TENANT.into()),
            client_id: None,
        };
        let err = factory.build(&spec, &config.endpoints, None).unwrap_err();
        assert!(matches!(
            err,
            CredentialError::MissingWorkloadIdentitySetting(ENV_CLIENT_ID)
        ));

        let dir = std::env::temp_dir().join(format!("azureml-attach-wi-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let token = dir.join("token");
        std::fs::write(&token, "header.payload.signature").unwrap();
        let env = WorkloadIdentityEnv {
            client_id: Some("33333333-3333-3333-3333-333333333333".into()),
            tenant_id: Some(TENANT.into()),
            token_file: Some(token.clone()),
        };
        let factory = CredentialFactory::with_env(&config, env);
        factory.build(&spec, &config.endpoints, None).unwrap();
        // The operator default prefers workload identity when it is configured.
        factory
            .build(&CredentialSpec::OperatorDefault, &config.endpoints, None)
            .unwrap();
        std::fs::remove_file(&token).unwrap();
        let err = factory.build(&spec, &config.endpoints, None).unwrap_err();
        assert!(matches!(
            err,
            CredentialError::Build {
                kind: "WorkloadIdentity",
                ..
            }
        ));
    }

    #[test]
    fn specs_are_hashable_cache_keys() {
        use std::collections::HashSet;
        let mut set = HashSet::new();
        set.insert(CredentialSpec::OperatorDefault);
        set.insert(CredentialSpec::ManagedIdentity {
            user_assigned: Some(ManagedIdentityId::ClientId("c".into())),
        });
        set.insert(CredentialSpec::ManagedIdentity {
            user_assigned: None,
        });
        set.insert(CredentialSpec::OperatorDefault);
        assert_eq!(set.len(), 3);
    }
}
