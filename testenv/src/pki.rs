//! The certificates and keys of one control plane, generated fresh for every start.
//!
//! All keys are ECDSA P-256: `ring` cannot generate RSA keys, and both Go's TLS stack and the
//! service-account token signer accept EC keys (tokens are therefore signed with ES256).

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};

/// A PEM certificate and its PEM (PKCS#8) private key.
pub(crate) struct CertAndKey {
    pub cert_pem: String,
    pub key_pem: String,
}

/// Everything the control plane and its clients need.
pub(crate) struct Pki {
    /// The CA that signs every certificate below; also the client CA of the API server.
    pub ca: CertAndKey,
    /// The API server's serving certificate.
    pub apiserver: CertAndKey,
    /// The service-account token signing key (private) and its public key.
    pub service_account_key_pem: String,
    pub service_account_public_pem: String,
    /// `CN=admin, O=system:masters`: full access, bypassing RBAC, like a cluster admin.
    pub admin: CertAndKey,
    /// `CN=system:kube-controller-manager`: the identity the bootstrap RBAC policy expects.
    pub controller_manager: CertAndKey,
    /// `CN=system:kube-scheduler`, for the opt-in node ([`crate::Node`]).
    pub scheduler: CertAndKey,
    /// `CN=system:node:<NODE_NAME>, O=system:nodes`: the kubelet, authorized by the Node
    /// authorizer for its own Node object and the Pods bound to it.
    pub kubelet: CertAndKey,
}

/// Names the serving certificate is valid for: the loopback address the tests use and the
/// in-cluster names, so a kubeconfig written for either works.
const SERVING_NAMES: [&str; 7] = [
    "127.0.0.1",
    "localhost",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
    // The first address of --service-cluster-ip-range, the `kubernetes` Service's ClusterIP.
    "10.0.0.1",
];

pub(crate) fn generate() -> Result<Pki, rcgen::Error> {
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.distinguished_name = name("azureml-attach-testenv-ca", None);
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let ca = CertAndKey {
        cert_pem: ca_cert.pem(),
        key_pem: ca_key.serialize_pem(),
    };
    let issuer = Issuer::new(ca_params, ca_key);

    let mut serving = CertificateParams::new(SERVING_NAMES.map(String::from).to_vec())?;
    serving.distinguished_name = name("kube-apiserver", None);
    serving.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    serving.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let apiserver = sign(serving, &issuer)?;

    let sa_key = KeyPair::generate()?;

    Ok(Pki {
        ca,
        apiserver,
        service_account_key_pem: sa_key.serialize_pem(),
        service_account_public_pem: sa_key.public_key_pem(),
        admin: client_cert("admin", Some("system:masters"), &issuer)?,
        controller_manager: client_cert("system:kube-controller-manager", None, &issuer)?,
        scheduler: client_cert("system:kube-scheduler", None, &issuer)?,
        kubelet: client_cert(
            &format!("system:node:{}", crate::node::NODE_NAME),
            Some("system:nodes"),
            &issuer,
        )?,
    })
}

/// A client certificate: the API server maps CN to the user name and O to a group.
fn client_cert(
    user: &str,
    group: Option<&str>,
    issuer: &Issuer<'_, KeyPair>,
) -> Result<CertAndKey, rcgen::Error> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name = name(user, group);
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    sign(params, issuer)
}

fn sign(
    params: CertificateParams,
    issuer: &Issuer<'_, KeyPair>,
) -> Result<CertAndKey, rcgen::Error> {
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, issuer)?;
    Ok(CertAndKey {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

fn name(common_name: &str, organization: Option<&str>) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    if let Some(org) = organization {
        dn.push(DnType::OrganizationName, org);
    }
    dn
}
