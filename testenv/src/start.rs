//! Starting etcd, kube-apiserver and kube-controller-manager, and waiting until they serve.

use std::{
    fs,
    net::{Ipv4Addr, TcpListener},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::{
    Api, Client,
    config::{KubeConfigOptions, Kubeconfig},
};

use crate::{
    Error,
    binaries::{self, Versions},
    kubeconfig::{self, Credentials},
    pki::{self, Pki},
    process::{self, Process, StopOrder},
};

/// `--service-account-issuer`: what AKS-style workload identity federation expects as issuer.
pub const SERVICE_ACCOUNT_ISSUER: &str = "https://kubernetes.default.svc";

/// Kubeconfig files in the control plane's directory, for the node's components.
pub(crate) const KUBELET_KUBECONFIG: &str = "kubelet.kubeconfig";
pub(crate) const SCHEDULER_KUBECONFIG: &str = "kube-scheduler.kubeconfig";
pub(crate) const KCM_KUBECONFIG: &str = "kube-controller-manager.kubeconfig";

/// The controllers the tests rely on. Everything else (Deployments, Jobs, …) would need a kubelet
/// to be meaningful and only costs CPU.
const CONTROLLERS: &str = "garbage-collector-controller,namespace-controller,serviceaccount-controller,\
serviceaccount-token-controller,root-ca-certificate-publisher-controller,clusterrole-aggregation-controller";

/// The API server's audit policy: one JSON line per request made with a ServiceAccount token
/// (how tests run the operator), at level Metadata (who, verb, resource, namespace, response
/// code, authorization decision; never a body, so no Secret data). The controller manager's own
/// controllers (kube-system ServiceAccounts) are left out: they would be most of the file and no
/// test asks about them. Admin (client-certificate) requests are not logged.
const AUDIT_POLICY: &str = "\
apiVersion: audit.k8s.io/v1
kind: Policy
# A completed request is one entry; a watch also logs when it starts (ResponseStarted).
omitStages: [RequestReceived]
rules:
  - level: None
    userGroups: [\"system:serviceaccounts:kube-system\"]
  - level: Metadata
    userGroups: [\"system:serviceaccounts\"]
  - level: None
";

/// Start-up settings.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    /// Give up if the control plane is not ready after this long.
    pub timeout: Duration,
    /// Keep the temporary directory (logs, PKI, etcd data) at exit.
    pub keep_dir: bool,
}

impl Options {
    /// Defaults, overridable with `AZUREML_ATTACH_TESTENV_START_TIMEOUT` (seconds) and
    /// `AZUREML_ATTACH_TESTENV_KEEP=1`.
    pub fn from_env() -> Options {
        let timeout = std::env::var("AZUREML_ATTACH_TESTENV_START_TIMEOUT")
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .map_or(Duration::from_secs(120), Duration::from_secs);
        let keep_dir =
            std::env::var("AZUREML_ATTACH_TESTENV_KEEP").is_ok_and(|v| !v.is_empty() && v != "0");
        Options { timeout, keep_dir }
    }
}

/// A running control plane. Dropping it stops the processes and removes the directory.
pub(crate) struct ControlPlane {
    pub id: u64,
    pub dir: PathBuf,
    pub bin_dir: PathBuf,
    pub versions: Versions,
    pub server_url: String,
    pub kubeconfig_path: PathBuf,
    /// The API server's audit log (JSON lines, see [`AUDIT_POLICY`]).
    pub audit_log: PathBuf,
    pub ca_pem: String,
    pub service_account_public_pem: String,
    pub admin_config: kube::Config,
    pub startup: Duration,
    /// When (since the start began) the API server was ready and namespace `default` existed.
    pub apiserver_ready: Duration,
    // The children's handles; they are stopped by pid through the cleanup registry.
    processes: std::sync::Mutex<Vec<Process>>,
    /// How to start the API server again after [`ControlPlane::stop_apiserver`].
    apiserver_command: (PathBuf, Vec<String>),
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        process::cleanup(self.id);
    }
}

/// Starts a control plane and blocks until it is ready. Works from any thread, also inside a
/// tokio runtime: the waiting happens on a scoped thread with its own runtime.
pub(crate) fn start(options: &Options) -> Result<ControlPlane, Error> {
    let began = Instant::now();
    let versions = Versions::pinned();
    let bin_dir = binaries::locate(&versions)?;
    // Free ports are picked by binding and releasing them, so another process can take one in
    // between; such a clash shows in the log and is retried with new ports.
    let mut attempt = 1;
    loop {
        match start_once(&bin_dir, &versions, options, began) {
            Err(err) if attempt < 3 && is_port_clash(&err) => attempt += 1,
            result => return result,
        }
    }
}

fn is_port_clash(err: &Error) -> bool {
    matches!(err, Error::Startup { tail, .. } if tail.contains("address already in use"))
}

fn start_once(
    bin_dir: &Path,
    versions: &Versions,
    options: &Options,
    began: Instant,
) -> Result<ControlPlane, Error> {
    let (id, dir) = process::create_dir(options.keep_dir)?;
    let result = launch(id, &dir, bin_dir, versions, options, began);
    if result.is_err() {
        // Stops whatever was started; the error already holds the log tails.
        process::cleanup(id);
    }
    result
}

fn launch(
    id: u64,
    dir: &Path,
    bin_dir: &Path,
    versions: &Versions,
    options: &Options,
    began: Instant,
) -> Result<ControlPlane, Error> {
    let pki = pki::generate()?;
    let files = write_files(dir, &pki)?;
    let [etcd_port, peer_port, apiserver_port] = free_ports()?;
    let server_url = format!("https://127.0.0.1:{apiserver_port}");
    let kubeconfig_path = dir.join("admin.kubeconfig");
    let admin = Credentials::ClientCertificate {
        cert_pem: &pki.admin.cert_pem,
        key_pem: &pki.admin.key_pem,
    };
    write(
        &kubeconfig_path,
        &kubeconfig::render(&server_url, &pki.ca.cert_pem, "admin", "default", &admin),
    )?;
    // The opt-in node's components ([`crate::Node`]) use these; writing them costs nothing.
    for (file, user, namespace, cert) in [
        (
            KUBELET_KUBECONFIG,
            format!("system:node:{}", crate::node::NODE_NAME),
            "default",
            &pki.kubelet,
        ),
        (
            SCHEDULER_KUBECONFIG,
            "system:kube-scheduler".to_string(),
            "kube-system",
            &pki.scheduler,
        ),
    ] {
        let credentials = Credentials::ClientCertificate {
            cert_pem: &cert.cert_pem,
            key_pem: &cert.key_pem,
        };
        write(
            &dir.join(file),
            &kubeconfig::render(
                &server_url,
                &pki.ca.cert_pem,
                &user,
                namespace,
                &credentials,
            ),
        )?;
    }
    let kcm_kubeconfig = dir.join(KCM_KUBECONFIG);
    let kcm = Credentials::ClientCertificate {
        cert_pem: &pki.controller_manager.cert_pem,
        key_pem: &pki.controller_manager.key_pem,
    };
    write(
        &kcm_kubeconfig,
        &kubeconfig::render(
            &server_url,
            &pki.ca.cert_pem,
            "system:kube-controller-manager",
            "kube-system",
            &kcm,
        ),
    )?;

    // All three start at once: the API server and the controller manager retry their
    // connections until etcd and the API server answer, which is faster than starting in turn.
    let etcd_url = format!("http://127.0.0.1:{etcd_port}");
    let mut processes = vec![process::spawn(
        id,
        "etcd",
        StopOrder::Late,
        &bin_dir.join("etcd"),
        &etcd_args(dir, &etcd_url, &format!("http://127.0.0.1:{peer_port}")),
        dir.join("etcd.log"),
    )?];
    let apiserver_command = (
        bin_dir.join("kube-apiserver"),
        apiserver_args(dir, &files, &etcd_url, apiserver_port),
    );
    processes.push(process::spawn(
        id,
        "kube-apiserver",
        StopOrder::Early,
        &apiserver_command.0,
        &apiserver_command.1,
        dir.join("kube-apiserver.log"),
    )?);
    processes.push(process::spawn(
        id,
        "kube-controller-manager",
        StopOrder::Early,
        &bin_dir.join("kube-controller-manager"),
        &controller_manager_args(&files, &kcm_kubeconfig),
        dir.join("kube-controller-manager.log"),
    )?);

    let deadline = began + options.timeout;
    let (admin_config, apiserver_ready) = std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(Error::io("building the start-up tokio runtime"))?;
                runtime.block_on(wait_ready(
                    &kubeconfig_path,
                    &mut processes,
                    began,
                    deadline,
                ))
            })
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })?;

    Ok(ControlPlane {
        id,
        dir: dir.to_path_buf(),
        bin_dir: bin_dir.to_path_buf(),
        versions: versions.clone(),
        server_url,
        kubeconfig_path,
        audit_log: files.audit_log,
        ca_pem: pki.ca.cert_pem,
        service_account_public_pem: pki.service_account_public_pem,
        admin_config,
        startup: began.elapsed(),
        apiserver_ready,
        processes: std::sync::Mutex::new(processes),
        apiserver_command,
    })
}

impl ControlPlane {
    fn lock_processes(&self) -> std::sync::MutexGuard<'_, Vec<Process>> {
        self.processes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Stops kube-apiserver (SIGTERM, then SIGKILL after the grace period); etcd and the
    /// controller manager keep running, so the cluster's state survives.
    pub(crate) fn stop_apiserver(&self) {
        let mut processes = self.lock_processes();
        for p in processes.iter_mut().filter(|p| p.name == "kube-apiserver") {
            if p.exited().is_some() {
                continue;
            }
            if let Ok(pid) = i32::try_from(p.child.id()) {
                // SAFETY: kill(2) on a child this crate started and has not reaped.
                unsafe { libc::kill(pid, libc::SIGTERM) };
            }
            let start = Instant::now();
            while p.exited().is_none() && start.elapsed() < Duration::from_secs(10) {
                std::thread::sleep(Duration::from_millis(50));
            }
            if p.exited().is_none() {
                let _ = p.child.kill();
                let _ = p.child.wait();
            }
        }
        processes.retain_mut(|p| p.name != "kube-apiserver" || p.exited().is_none());
    }

    /// Starts kube-apiserver again with the same arguments and port (after
    /// [`ControlPlane::stop_apiserver`]); its log goes to `kube-apiserver.<n>.log`.
    pub(crate) fn start_apiserver(&self) -> Result<(), Error> {
        let mut processes = self.lock_processes();
        let n = processes.len();
        let process = process::spawn(
            self.id,
            "kube-apiserver",
            StopOrder::Early,
            &self.apiserver_command.0,
            &self.apiserver_command.1,
            self.dir.join(format!("kube-apiserver.{n}.log")),
        )?;
        processes.push(process);
        Ok(())
    }
}

/// Paths of the PKI and audit files the processes read and write.
struct Files {
    audit_policy: PathBuf,
    audit_log: PathBuf,
    ca: PathBuf,
    serving_cert: PathBuf,
    serving_key: PathBuf,
    sa_key: PathBuf,
    sa_pub: PathBuf,
}

fn write_files(dir: &Path, pki: &Pki) -> Result<Files, Error> {
    let pki_dir = dir.join("pki");
    fs::create_dir(&pki_dir).map_err(Error::io(format!("creating {}", pki_dir.display())))?;
    let files = Files {
        audit_policy: dir.join("audit-policy.yaml"),
        audit_log: dir.join("audit.log"),
        ca: pki_dir.join("ca.crt"),
        serving_cert: pki_dir.join("apiserver.crt"),
        serving_key: pki_dir.join("apiserver.key"),
        sa_key: pki_dir.join("sa.key"),
        sa_pub: pki_dir.join("sa.pub"),
    };
    write(&files.ca, &pki.ca.cert_pem)?;
    write(&pki_dir.join("ca.key"), &pki.ca.key_pem)?;
    write(&files.serving_cert, &pki.apiserver.cert_pem)?;
    write(&files.serving_key, &pki.apiserver.key_pem)?;
    write(&files.sa_key, &pki.service_account_key_pem)?;
    write(&files.sa_pub, &pki.service_account_public_pem)?;
    write(&files.audit_policy, AUDIT_POLICY)?;
    Ok(files)
}

fn write(path: &Path, contents: &str) -> Result<(), Error> {
    fs::write(path, contents).map_err(Error::io(format!("writing {}", path.display())))
}

/// Three distinct free loopback ports.
fn free_ports() -> Result<[u16; 3], Error> {
    let bind = || {
        TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .map_err(Error::io("finding a free loopback port"))
    };
    // All held at once so they differ; released on return for the processes to bind.
    let listeners = [bind()?, bind()?, bind()?];
    let port = |l: &TcpListener| {
        l.local_addr()
            .map(|a| a.port())
            .map_err(Error::io("reading a bound port"))
    };
    Ok([
        port(&listeners[0])?,
        port(&listeners[1])?,
        port(&listeners[2])?,
    ])
}

fn etcd_args(dir: &Path, client_url: &str, peer_url: &str) -> Vec<String> {
    let d = dir.display();
    vec![
        "--name=testenv".into(),
        format!("--data-dir={d}/etcd"),
        format!("--listen-client-urls={client_url}"),
        format!("--advertise-client-urls={client_url}"),
        format!("--listen-peer-urls={peer_url}"),
        // Must match the peer URL, or etcd refuses the single-member cluster.
        format!("--initial-advertise-peer-urls={peer_url}"),
        format!("--initial-cluster=testenv={peer_url}"),
        // Test data needs no durability, and fsync dominates etcd's latency on slow disks.
        "--unsafe-no-fsync=true".into(),
        "--log-level=warn".into(),
    ]
}

fn apiserver_args(dir: &Path, files: &Files, etcd_url: &str, port: u16) -> Vec<String> {
    let d = dir.display();
    vec![
        format!("--etcd-servers={etcd_url}"),
        "--bind-address=127.0.0.1".into(),
        "--advertise-address=127.0.0.1".into(),
        format!("--secure-port={port}"),
        format!("--cert-dir={d}/apiserver"),
        format!("--tls-cert-file={}", files.serving_cert.display()),
        format!("--tls-private-key-file={}", files.serving_key.display()),
        format!("--client-ca-file={}", files.ca.display()),
        // Node: the kubelet of the opt-in node ([`crate::Node`]) may read what its pods need.
        "--authorization-mode=Node,RBAC".into(),
        format!("--service-account-issuer={SERVICE_ACCOUNT_ISSUER}"),
        format!("--api-audiences={SERVICE_ACCOUNT_ISSUER}"),
        format!("--service-account-key-file={}", files.sa_pub.display()),
        format!(
            "--service-account-signing-key-file={}",
            files.sa_key.display()
        ),
        "--service-cluster-ip-range=10.0.0.0/24".into(),
        // No kubelet or network: the `kubernetes` Service keeps no endpoints.
        "--endpoint-reconciler-type=none".into(),
        "--allow-privileged=true".into(),
        "--profiling=false".into(),
        format!("--audit-policy-file={}", files.audit_policy.display()),
        format!("--audit-log-path={}", files.audit_log.display()),
        "--audit-log-format=json".into(),
        // Blocking (the log backend's default, stated): each entry is written as its request
        // finishes, not batched, so a test finds its requests in the file moments later.
        "--audit-log-mode=blocking".into(),
    ]
}

fn controller_manager_args(files: &Files, kubeconfig: &Path) -> Vec<String> {
    vec![
        format!("--kubeconfig={}", kubeconfig.display()),
        format!("--controllers={CONTROLLERS}"),
        // Each controller acts as its own ServiceAccount with its bootstrap RBAC role, as in a
        // kubeadm cluster; the controller manager's own identity may only list and watch.
        "--use-service-account-credentials=true".into(),
        format!(
            "--service-account-private-key-file={}",
            files.sa_key.display()
        ),
        format!("--root-ca-file={}", files.ca.display()),
        "--leader-elect=false".into(),
        // No serving port: nothing scrapes it, and it saves a port and delegated auth lookups.
        "--secure-port=0".into(),
    ]
}

/// Waits for `/readyz`, namespace `default`, and ServiceAccount `default/default` (which only
/// the controller manager creates, so it proves that it runs). Returns the admin client config
/// and when the API server was ready.
async fn wait_ready(
    kubeconfig_path: &Path,
    processes: &mut [Process],
    began: Instant,
    deadline: Instant,
) -> Result<(kube::Config, Duration), Error> {
    let kubeconfig =
        Kubeconfig::read_from(kubeconfig_path).map_err(|source| Error::Kubeconfig {
            path: kubeconfig_path.to_path_buf(),
            source,
        })?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .map_err(|source| Error::Kubeconfig {
            path: kubeconfig_path.to_path_buf(),
            source,
        })?;
    let client =
        Client::try_from(config.clone()).map_err(Error::kube("building the admin client"))?;

    poll(
        processes,
        deadline,
        "kube-apiserver",
        "/readyz to answer ok",
        async || {
            let request = http::Request::get("/readyz")
                .body(Vec::new())
                .map_err(|e| e.to_string())?;
            match client.request_text(request).await {
                Ok(body) if body.trim() == "ok" => Ok(()),
                Ok(body) => Err(body),
                Err(err) => Err(err.to_string()),
            }
        },
    )
    .await?;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    poll(
        processes,
        deadline,
        "kube-apiserver",
        "namespace default",
        async || match namespaces.get_opt("default").await {
            Ok(Some(_)) => Ok(()),
            Ok(None) => Err("not found".into()),
            Err(err) => Err(err.to_string()),
        },
    )
    .await?;
    let apiserver_ready = began.elapsed();
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), "default");
    poll(
        processes,
        deadline,
        "kube-controller-manager",
        "ServiceAccount default/default (created by the controller manager)",
        async || match accounts.get_opt("default").await {
            Ok(Some(_)) => Ok(()),
            Ok(None) => Err("not found".into()),
            Err(err) => Err(err.to_string()),
        },
    )
    .await?;
    Ok((config, apiserver_ready))
}

/// Calls `check` every 50 ms until it succeeds. Fails early if any process exits, and at the
/// deadline with the log of `blame`.
async fn poll(
    processes: &mut [Process],
    deadline: Instant,
    blame: &'static str,
    what: &str,
    mut check: impl AsyncFnMut() -> Result<(), String>,
) -> Result<(), Error> {
    loop {
        for process in processes.iter_mut() {
            if let Some(reason) = process.exited() {
                return Err(process.failure(format!("{reason} while waiting for {what}")));
            }
        }
        let last = match check().await {
            Ok(()) => return Ok(()),
            Err(last) => last,
        };
        if Instant::now() >= deadline {
            let reason = format!(
                "was not ready in time (waited for {what}; last answer: {last}; raise \
                 AZUREML_ATTACH_TESTENV_START_TIMEOUT on a slow machine)"
            );
            let process = processes
                .iter()
                .find(|p| p.name == blame)
                .unwrap_or(&processes[0]);
            return Err(process.failure(reason));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
