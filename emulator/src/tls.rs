//! TLS material: a fresh CA per emulator and a server certificate it signs.

use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::ServerConfig;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// Errors creating the TLS material.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// Certificate generation failed.
    #[error("generating certificates")]
    Rcgen(#[from] rcgen::Error),
    /// rustls refused the configuration.
    #[error("building the TLS server configuration")]
    Rustls(#[from] rustls::Error),
}

/// The generated CA and the server configuration using a certificate it signed.
pub struct TlsMaterial {
    /// CA certificate, PEM.
    pub ca_pem: String,
    /// rustls configuration for the listener (ALPN h2 and http/1.1).
    pub server_config: Arc<ServerConfig>,
}

/// Install the ring provider as the process default (no-op when one is already installed).
pub fn install_ring_provider() {
    // Another component may have installed ring already; both outcomes are fine.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Generate a CA and a server certificate for localhost, 127.0.0.1, ::1 and `extra_names`.
pub fn generate(extra_names: &[String]) -> Result<TlsMaterial, TlsError> {
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "azureml-emulator CA");
    dn.push(DnType::OrganizationName, "azureml-attach");
    ca_params.distinguished_name = dn;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let ca_pem = ca_cert.pem();
    let issuer = Issuer::new(ca_params, ca_key);

    let mut names: Vec<String> = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
    for n in extra_names {
        if !names.contains(n) {
            names.push(n.clone());
        }
    }
    let leaf_key = KeyPair::generate()?;
    let mut leaf_params = CertificateParams::new(names)?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "azureml-emulator");
    leaf_params.distinguished_name = dn;
    leaf_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf_params.use_authority_key_identifier_extension = true;
    let leaf_cert = leaf_params.signed_by(&leaf_key, &issuer)?;

    let chain = vec![
        CertificateDer::from(leaf_cert.der().to_vec()),
        CertificateDer::from(ca_cert.der().to_vec()),
    ];
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsMaterial {
        ca_pem,
        server_config: Arc::new(config),
    })
}
