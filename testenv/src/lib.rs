//! A real Kubernetes control plane for tests: etcd, kube-apiserver and kube-controller-manager,
//! built from the Go module proxy (`make testenv`) and started on free loopback ports with a PKI
//! generated per start.
//!
//! ```no_run
//! # async fn demo() {
//! use k8s_openapi::api::core::v1::ConfigMap;
//! let env = testenv::TestEnv::global(); // started once per test binary
//! let ns = env.create_namespace("my-test").await; // one namespace per test
//! let config_maps: kube::Api<ConfigMap> = kube::Api::namespaced(env.client(), &ns);
//! # }
//! ```
//!
//! What runs: the API server with RBAC authorization, ServiceAccount tokens issued by
//! `https://kubernetes.default.svc`, and the controllers for garbage collection, namespace
//! deletion, ServiceAccounts, legacy token Secrets, `kube-root-ca.crt` and ClusterRole
//! aggregation. There is no kubelet and no scheduler: Pods are stored but never run, unless the
//! test binary opts in to a node ([`Node::global`]: containerd, kubelet, kube-scheduler).
//!
//! Every process is stopped (by pid) and the temporary directory removed when the test binary
//! exits, also after a failed test; see "Lifetime" on [`TestEnv`].
//!
//! Environment: `AZUREML_ATTACH_TESTENV_BIN` (binary directory; default: the build script's cache
//! directory for the versions pinned in `testenv/go/*/go.mod`), `AZUREML_ATTACH_TESTENV_START_TIMEOUT`
//! (seconds, default 120), `AZUREML_ATTACH_TESTENV_KEEP=1` (keep the temporary directory with
//! the process logs), `AZUREML_ATTACH_PROMTOOL` (the `promtool` binary; default: the build
//! script's `testenv-prometheus-<version>/promtool` next to the binary directory, see [`promtool`]).

mod apply;
mod binaries;
mod error;
mod kubeconfig;
mod node;
mod pki;
mod process;
mod start;
mod wait;

use std::{
    io::Write,
    path::{Path, PathBuf},
    process::Command,
    sync::{
        OnceLock,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use k8s_openapi::api::{
    authentication::v1::{TokenRequest, TokenRequestSpec},
    core::v1::{Namespace, ServiceAccount},
};
use kube::{
    Api, Client,
    api::{DynamicObject, ObjectMeta, PostParams},
    config::{KubeConfigOptions, Kubeconfig},
};

pub use apply::FIELD_MANAGER;
pub use binaries::{BIN_ENV, PROMTOOL_ENV, Versions, prometheus_version, promtool};
pub use error::Error;
pub use node::{BRIDGE, GATEWAY, NODE_NAME, Node, PAUSE_IMAGE, POD_SUBNET};
pub use start::SERVICE_ACCOUNT_ISSUER;
pub use wait::wait_for;

use kubeconfig::Credentials;
use start::{ControlPlane, Options};

/// Label put on every namespace made by [`TestEnv::create_namespace`].
pub const NAMESPACE_LABEL: &str = "testenv.azureml-attach.io/test";

/// A running control plane and helpers to use it.
///
/// # Lifetime
/// [`TestEnv::global`] starts one per test binary and never drops it; an `atexit` hook stops its
/// processes and removes its directory when the binary exits, also after failed tests. The
/// processes are additionally started with `PR_SET_PDEATHSIG(SIGKILL)`, so they die with a
/// killed test binary; the directory of such a run is removed by the next start.
/// [`TestEnv::start`] makes a private one that is stopped when dropped.
pub struct TestEnv {
    plane: ControlPlane,
    next_name: AtomicU64,
}

impl TestEnv {
    /// The control plane of this test binary, started on first use (blocking; safe to call from
    /// any thread and from inside `#[tokio::test]`).
    ///
    /// # Panics
    /// If it cannot start, with the reason and the end of the failing process's log. Every later
    /// call panics with the same message instead of trying again.
    pub fn global() -> &'static TestEnv {
        static GLOBAL: OnceLock<Result<TestEnv, String>> = OnceLock::new();
        match GLOBAL.get_or_init(|| TestEnv::start().map_err(|err| err.to_string())) {
            Ok(env) => env,
            Err(message) => panic!("testenv: cannot start the Kubernetes control plane: {message}"),
        }
    }

    /// Starts a private control plane (blocking), stopped when the value is dropped.
    /// Tests should share [`TestEnv::global`]; this is for benchmarks and special cases.
    pub fn start() -> Result<TestEnv, Error> {
        // One rustls provider in the whole project: ring. Fails harmlessly if already installed.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let plane = start::start(&Options::from_env())?;
        tracing::info!(
            server = %plane.server_url,
            startup = ?plane.startup,
            apiserver_ready = ?plane.apiserver_ready,
            dir = %plane.dir.display(),
            "testenv: control plane ready"
        );
        // Straight to stderr, not eprintln!: the test harness would capture and hide it.
        let _ = writeln!(
            std::io::stderr(),
            "testenv: Kubernetes {} ready at {} in {:.2?} (API server after {:.2?}; dir {})",
            plane.versions.kubernetes,
            plane.server_url,
            plane.startup,
            plane.apiserver_ready,
            plane.dir.display()
        );
        Ok(TestEnv {
            plane,
            next_name: AtomicU64::new(0),
        })
    }

    /// Stops the processes and removes the directory now (same as dropping).
    pub fn stop(self) {}

    /// Stops kube-apiserver only (etcd and the controller manager keep running), for outage
    /// tests. Use a private [`TestEnv::start`] for this, never the shared global one.
    pub fn stop_apiserver(&self) {
        self.plane.stop_apiserver();
    }

    /// Starts kube-apiserver again (same port, same etcd) and waits until it answers.
    ///
    /// # Panics
    /// If it cannot be started or does not answer within 60 s.
    pub async fn start_apiserver(&self) {
        self.plane
            .start_apiserver()
            .unwrap_or_else(|err| panic!("testenv: restarting kube-apiserver: {err}"));
        let client = self.client();
        let start = std::time::Instant::now();
        while client.apiserver_version().await.is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "testenv: kube-apiserver did not answer within 60 s after a restart"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The admin kubeconfig (client certificate in group `system:masters`).
    pub fn kubeconfig_path(&self) -> &Path {
        &self.plane.kubeconfig_path
    }

    /// A new admin client. Make one per test (or per tokio runtime): a client is bound to the
    /// runtime it was made in.
    ///
    /// # Panics
    /// Outside a tokio runtime.
    pub fn client(&self) -> Client {
        Client::try_from(self.plane.admin_config.clone()).unwrap_or_else(|err| {
            panic!("testenv: building a client (inside a tokio runtime?): {err}")
        })
    }

    /// The admin client configuration, to adjust before building a client.
    pub fn client_config(&self) -> kube::Config {
        self.plane.admin_config.clone()
    }

    /// `https://127.0.0.1:PORT`.
    pub fn server_url(&self) -> &str {
        &self.plane.server_url
    }

    /// The PEM of the CA that signed the API server's certificate.
    pub fn ca_pem(&self) -> &str {
        &self.plane.ca_pem
    }

    /// The PEM public key that verifies ServiceAccount tokens (ES256, issuer
    /// [`SERVICE_ACCOUNT_ISSUER`]), for a token consumer such as an identity-provider emulator.
    /// The API server also serves it as JWKS at `/openid/v1/jwks` (to authenticated clients).
    pub fn service_account_public_key_pem(&self) -> &str {
        &self.plane.service_account_public_pem
    }

    /// The API server's audit log: one JSON `audit.k8s.io/v1` Event per line, at level Metadata,
    /// for every request made with a ServiceAccount token outside `kube-system` (stage
    /// ResponseComplete; a watch also at ResponseStarted). Admin requests are not in it. Read it
    /// to see which calls a process running as a ServiceAccount made and whether RBAC allowed
    /// them (`responseStatus.code`, annotation `authorization.k8s.io/decision`).
    pub fn audit_log(&self) -> &Path {
        &self.plane.audit_log
    }

    /// The directory with kube-apiserver, kube-controller-manager, etcd, kubectl and helm.
    pub fn bin_dir(&self) -> &Path {
        &self.plane.bin_dir
    }

    /// This control plane's temporary directory (logs `*.log`, `pki/`, kubeconfigs).
    pub fn dir(&self) -> &Path {
        &self.plane.dir
    }

    /// The versions of the binaries.
    pub fn versions(&self) -> &Versions {
        &self.plane.versions
    }

    /// How long the start took, from locating the binaries to the controller manager running.
    pub fn startup_duration(&self) -> Duration {
        self.plane.startup
    }

    /// How long until the API server was ready and namespace `default` existed (part of
    /// [`TestEnv::startup_duration`]; the rest is waiting for the controller manager).
    pub fn apiserver_ready_after(&self) -> Duration {
        self.plane.apiserver_ready
    }

    /// `kubectl` with `KUBECONFIG` set to the admin kubeconfig and a private discovery cache.
    pub fn kubectl(&self) -> Command {
        let mut command = Command::new(self.plane.bin_dir.join("kubectl"));
        command
            .env("KUBECONFIG", self.kubeconfig_path())
            .env("KUBECACHEDIR", self.dir().join("kube-cache"));
        command
    }

    /// `helm` with `KUBECONFIG` set to the admin kubeconfig and its cache, config and data
    /// directories inside the temporary directory (nothing is written to the home directory).
    pub fn helm(&self) -> Command {
        let helm_home = self.dir().join("helm");
        let mut command = Command::new(self.plane.bin_dir.join("helm"));
        command
            .env("KUBECONFIG", self.kubeconfig_path())
            .env("HELM_CACHE_HOME", helm_home.join("cache"))
            .env("HELM_CONFIG_HOME", helm_home.join("config"))
            .env("HELM_DATA_HOME", helm_home.join("data"));
        command
    }

    /// A unique name `PREFIX-N`, valid as a namespace or object name (lowercase, ≤ 63 chars).
    pub fn unique_name(&self, prefix: &str) -> String {
        let n = self.next_name.fetch_add(1, Ordering::Relaxed) + 1;
        unique_name(prefix, n)
    }

    /// Creates a new namespace named after `prefix` for one test, and returns its name.
    ///
    /// # Panics
    /// If the API server refuses.
    pub async fn create_namespace(&self, prefix: &str) -> String {
        let name = self.unique_name(prefix);
        let namespace = Namespace {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                labels: Some([(NAMESPACE_LABEL.to_string(), "true".to_string())].into()),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        Api::<Namespace>::all(self.client())
            .create(&PostParams::default(), &namespace)
            .await
            .unwrap_or_else(|err| panic!("testenv: creating namespace {name}: {err}"));
        name
    }

    /// A token for ServiceAccount `namespace/name`, minted by the TokenRequest API, valid for
    /// `ttl` (the API server requires at least 10 minutes). `audiences` empty means the API
    /// server's own audience (`https://kubernetes.default.svc`); a token for another audience
    /// (e.g. `api://AzureADTokenExchange`) is not accepted by the API server itself.
    ///
    /// # Panics
    /// If the ServiceAccount does not exist or the request is refused.
    pub async fn service_account_token(
        &self,
        namespace: &str,
        name: &str,
        audiences: &[&str],
        ttl: Duration,
    ) -> String {
        self.try_service_account_token(namespace, name, audiences, ttl)
            .await
            .unwrap_or_else(|err| panic!("testenv: {err}"))
    }

    /// [`TestEnv::service_account_token`] returning errors instead of panicking.
    pub async fn try_service_account_token(
        &self,
        namespace: &str,
        name: &str,
        audiences: &[&str],
        ttl: Duration,
    ) -> Result<String, Error> {
        let request = TokenRequest {
            spec: Some(TokenRequestSpec {
                // Omitted (not empty) to get the API server's own audiences.
                audiences: (!audiences.is_empty())
                    .then(|| audiences.iter().map(|a| a.to_string()).collect()),
                expiration_seconds: Some(i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX)),
                ..TokenRequestSpec::default()
            }),
            ..TokenRequest::default()
        };
        let response = Api::<ServiceAccount>::namespaced(self.client(), namespace)
            .create_token_request(name, &PostParams::default(), &request)
            .await
            .map_err(Error::kube(format!(
                "requesting a token for ServiceAccount {namespace}/{name}"
            )))?;
        response
            .status
            .and_then(|status| status.token)
            .ok_or_else(|| {
                Error::UnexpectedAnswer(format!(
                    "TokenRequest for {namespace}/{name} returned no token"
                ))
            })
    }

    /// Writes a kubeconfig that authenticates as ServiceAccount `namespace/name` (token valid
    /// 24 hours, default namespace `namespace`) and returns its path. Run the operator with it
    /// to exercise the real RBAC.
    ///
    /// # Panics
    /// If the token cannot be minted or the file written.
    pub async fn service_account_kubeconfig(&self, namespace: &str, name: &str) -> PathBuf {
        let token = self
            .service_account_token(namespace, name, &[], Duration::from_secs(24 * 3600))
            .await;
        let user = format!("system:serviceaccount:{namespace}:{name}");
        let text = kubeconfig::render(
            self.server_url(),
            self.ca_pem(),
            &user,
            namespace,
            &Credentials::Token(&token),
        );
        let path = self.dir().join(format!(
            "{}.kubeconfig",
            self.unique_name(&format!("sa-{namespace}-{name}"))
        ));
        std::fs::write(&path, text)
            .unwrap_or_else(|err| panic!("testenv: writing {}: {err}", path.display()));
        path
    }

    /// A client that authenticates as ServiceAccount `namespace/name` (see
    /// [`TestEnv::service_account_kubeconfig`]).
    ///
    /// # Panics
    /// As [`TestEnv::service_account_kubeconfig`], or outside a tokio runtime.
    pub async fn service_account_client(&self, namespace: &str, name: &str) -> Client {
        let path = self.service_account_kubeconfig(namespace, name).await;
        let config = async {
            let kubeconfig = Kubeconfig::read_from(&path)?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await
        }
        .await
        .unwrap_or_else(|err| panic!("testenv: loading {}: {err}", path.display()));
        Client::try_from(config).unwrap_or_else(|err| panic!("testenv: building a client: {err}"))
    }

    /// Applies every document of a YAML manifest with server-side apply (field manager
    /// [`FIELD_MANAGER`], forced), in order. Namespaced objects without `metadata.namespace` go to
    /// `namespace`. CustomResourceDefinitions are waited for until Established. Returns the
    /// objects as stored.
    pub async fn apply_yaml(
        &self,
        namespace: Option<&str>,
        yaml: &str,
    ) -> Result<Vec<DynamicObject>, Error> {
        let client = self.client();
        let mut applied = Vec::new();
        for object in apply::parse_manifests(yaml)? {
            applied.push(apply::apply_object(&client, namespace, &object).await?);
        }
        Ok(applied)
    }

    /// [`TestEnv::apply_yaml`] with the contents of a file.
    pub async fn apply_file(
        &self,
        namespace: Option<&str>,
        path: impl AsRef<Path>,
    ) -> Result<Vec<DynamicObject>, Error> {
        let path = path.as_ref();
        let yaml = std::fs::read_to_string(path)
            .map_err(Error::io(format!("reading {}", path.display())))?;
        self.apply_yaml(namespace, &yaml).await
    }
}

/// `prefix-n`, lowercased, with characters a DNS label cannot hold replaced by `-`, and the
/// prefix shortened so the whole fits in 63 characters.
fn unique_name(prefix: &str, n: u64) -> String {
    let suffix = format!("-{n}");
    let mut base: String = prefix
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    base.truncate(63 - suffix.len());
    let base = base.trim_matches('-');
    let base = if base.is_empty() { "test" } else { base };
    format!("{base}{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_names_are_dns_labels() {
        assert_eq!(unique_name("finalizer", 3), "finalizer-3");
        assert_eq!(unique_name("My_Test::case", 1), "my-test--case-1");
        assert_eq!(unique_name("", 2), "test-2");
        let long = unique_name(&"x".repeat(100), 12345);
        assert_eq!(long.len(), 63);
        assert!(long.ends_with("-12345"));
    }
}
