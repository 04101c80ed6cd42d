//! Azure access: clouds and configuration, Entra ID credentials, the ARM client for Azure ML
//! computes, typed bodies, errors and the client-side throttle.
//!
//! See `docs/design/azure-access.md` for how the pieces fit together.

pub mod arm;
pub mod cloud;
pub mod credential;
pub mod error;
pub mod headers;
pub mod models;
pub mod prerequisites;
pub mod resources;
pub mod throttle;

#[cfg(test)]
mod proptests;

pub use arm::{ArmClient, DetachOutcome, Lro, WorkspaceRef};
pub use cloud::{AzureConfig, AzureOptions, Cloud, CloudEndpoints, ConfigError, EndpointOverrides};
pub use credential::{CredentialError, CredentialFactory, CredentialSpec, ManagedIdentityId};
pub use error::{ArmError, ArmErrorKind, AzureFault};
pub use headers::{BudgetScope, RemainingReport};
pub use prerequisites::Unmet;
pub use throttle::{BucketConfig, OpClass, Throttle, ThrottleConfig, Ticket};

/// Installs rustls' `ring` provider as the process default.
///
/// The operator links exactly one provider (ring; kube's default): reqwest is built with
/// `rustls-no-provider`, so without this call it would panic when building a client.
/// Idempotent: a second call (or one after another component installed ring) is a no-op.
pub fn install_crypto_provider() {
    // `Err` means a provider is already installed, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}
