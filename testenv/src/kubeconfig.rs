//! Kubeconfig files for the admin, the controller manager and ServiceAccounts.
//!
//! Certificates are embedded (`*-data`), so a kubeconfig stays valid when copied or handed to a
//! child process.

use base64::{Engine, engine::general_purpose::STANDARD};

/// How the kubeconfig's user authenticates.
pub(crate) enum Credentials<'a> {
    /// A client certificate and key, both PEM.
    ClientCertificate { cert_pem: &'a str, key_pem: &'a str },
    /// A bearer token (a ServiceAccount token).
    Token(&'a str),
}

/// A kubeconfig with one cluster, one user and one context, selected as current.
pub(crate) fn render(
    server: &str,
    ca_pem: &str,
    user: &str,
    namespace: &str,
    credentials: &Credentials<'_>,
) -> String {
    let user_fields = match credentials {
        Credentials::ClientCertificate { cert_pem, key_pem } => format!(
            "    client-certificate-data: {}\n    client-key-data: {}\n",
            STANDARD.encode(cert_pem),
            STANDARD.encode(key_pem)
        ),
        Credentials::Token(token) => format!("    token: {token}\n"),
    };
    format!(
        "apiVersion: v1\n\
         kind: Config\n\
         clusters:\n\
         - name: testenv\n  \
           cluster:\n    \
             server: {server}\n    \
             certificate-authority-data: {ca}\n\
         users:\n\
         - name: {user}\n  \
           user:\n\
         {user_fields}\
         contexts:\n\
         - name: testenv\n  \
           context:\n    \
             cluster: testenv\n    \
             user: {user}\n    \
             namespace: {namespace}\n\
         current-context: testenv\n",
        ca = STANDARD.encode(ca_pem),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_a_kubeconfig_kube_can_parse() {
        let text = render(
            "https://127.0.0.1:6443",
            "CA",
            "system:serviceaccount:ns:sa",
            "ns",
            &Credentials::Token("tok"),
        );
        let config = kube::config::Kubeconfig::from_yaml(&text).unwrap();
        assert_eq!(config.current_context.as_deref(), Some("testenv"));
        let cluster = config.clusters[0].cluster.as_ref().unwrap();
        assert_eq!(cluster.server.as_deref(), Some("https://127.0.0.1:6443"));
        assert_eq!(cluster.certificate_authority_data.as_deref(), Some("Q0E="));
        let context = config.contexts[0].context.as_ref().unwrap();
        assert_eq!(context.namespace.as_deref(), Some("ns"));
        assert_eq!(config.auth_infos[0].name, "system:serviceaccount:ns:sa");
    }

    #[test]
    fn embeds_client_certificates() {
        let text = render(
            "https://127.0.0.1:1",
            "CA",
            "admin",
            "default",
            &Credentials::ClientCertificate {
                cert_pem: "C",
                key_pem: "K",
            },
        );
        let config = kube::config::Kubeconfig::from_yaml(&text).unwrap();
        let user = config.auth_infos[0].auth_info.as_ref().unwrap();
        assert_eq!(user.client_certificate_data.as_deref(), Some("Qw=="));
    }
}
