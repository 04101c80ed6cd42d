//! The operator, the Azure ML emulator and the samples on a testenv control plane.
//!
//! Shared by `make demo` (examples/demo.rs) and tests/packaging.rs (`#[path]` include), so the
//! test proves exactly what the demo shows: the samples in deploy/samples/ reach Ready.
//! Plain `std::process` and `kubectl`: what a person would type, and no second client to trust
//! (reqwest only for the emulator's control API).

use std::{
    fs::File,
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;
use testenv::TestEnv;

/// Namespace of the operator's ServiceAccount (deploy/base/rbac.yaml).
pub const OPERATOR_NAMESPACE: &str = "azureml-attach-system";
/// Name of the operator's ServiceAccount.
pub const OPERATOR_SERVICE_ACCOUNT: &str = "azureml-attach";
/// Namespace the samples use.
pub const SAMPLES_NAMESPACE: &str = "ml-team-a";

/// What can go wrong while bringing the stack up or checking it.
#[derive(Debug, thiserror::Error)]
pub enum StackError {
    /// A command could not be started.
    #[error("cannot start {program}")]
    Spawn {
        /// The program.
        program: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// A command ran and failed.
    #[error("{what} failed: {stderr}")]
    Command {
        /// What was being done.
        what: String,
        /// Its error output.
        stderr: String,
    },
    /// A file could not be read or written.
    #[error("{what}")]
    Io {
        /// What was being done.
        what: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// Something did not happen in time.
    #[error("timed out after {after:?} waiting for {what}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// How long.
        after: Duration,
    },
    /// Output that could not be understood.
    #[error("unexpected output from {what}: {detail}")]
    Parse {
        /// Whose output.
        what: String,
        /// What was wrong.
        detail: String,
    },
}

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> StackError {
    let what = what.into();
    move |source| StackError::Io { what, source }
}

/// Where the two binaries are.
#[derive(Clone, Debug)]
pub struct Binaries {
    /// `azureml-attach`.
    pub operator: PathBuf,
    /// `azureml-emulator`.
    pub emulator: PathBuf,
}

/// Runs `cmd` to completion; its stdout on success.
pub fn run(what: &str, cmd: &mut Command) -> Result<String, StackError> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|source| StackError::Spawn { program, source })?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(StackError::Command {
            what: what.to_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        })
    }
}

/// `kubectl` as the cluster admin, with a request timeout.
pub fn kubectl(env: &TestEnv) -> Command {
    let mut cmd = env.kubectl();
    cmd.arg("--request-timeout=60s");
    cmd
}

/// A child process that is stopped (SIGTERM, then SIGKILL) when dropped, and killed by the
/// kernel if this process dies first.
pub struct Managed {
    name: &'static str,
    child: Child,
    /// Its combined output.
    pub log: PathBuf,
}

impl Managed {
    fn spawn(name: &'static str, cmd: &mut Command, log: PathBuf) -> Result<Self, StackError> {
        let program = cmd.get_program().to_string_lossy().into_owned();
        let parent = std::process::id();
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                // Its own process group: Ctrl-C reaches the demo, which stops children in order.
                if libc::setpgid(0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if libc::getppid() as u32 != parent {
                    return Err(std::io::Error::other("parent exited during spawn"));
                }
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .map_err(|source| StackError::Spawn { program, source })?;
        Ok(Self { name, child, log })
    }

    /// `Some(description)` once the process has exited.
    pub fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(format!("{} exited with {status}", self.name)),
            Ok(None) => None,
            Err(err) => Some(format!("{} cannot be waited for: {err}", self.name)),
        }
    }

    /// Stops the process: SIGTERM, up to 10 s for a graceful exit, then SIGKILL.
    pub fn stop(&mut self) {
        if self.exited().is_some() {
            return;
        }
        if let Ok(pid) = i32::try_from(self.child.id()) {
            // SAFETY: signalling a child we started and have not reaped.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.exited().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The last `lines` lines of its log.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for Managed {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The running emulator.
pub struct Emulator {
    /// The process.
    pub process: Managed,
    /// `https://127.0.0.1:PORT`.
    pub url: String,
    /// Its CA certificate (PEM), for `--extra-ca-file`.
    pub ca_file: PathBuf,
}

/// Starts `azureml-emulator` with its default world (the one deploy/samples/ describes).
pub fn start_emulator(bins: &Binaries, dir: &Path) -> Result<Emulator, StackError> {
    let ca_file = dir.join("emulator-ca.pem");
    let log = dir.join("emulator.log");
    let stderr = File::create(&log).map_err(io_err(format!("creating {}", log.display())))?;
    let mut process = Managed::spawn(
        "azureml-emulator",
        Command::new(&bins.emulator)
            .args(["--listen", "127.0.0.1:0", "--ca-file"])
            .arg(&ca_file)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr),
        log.clone(),
    )?;
    let stdout = process
        .child
        .stdout
        .take()
        .ok_or_else(|| StackError::Parse {
            what: "azureml-emulator".into(),
            detail: "no stdout".into(),
        })?;
    let mut lines = BufReader::new(stdout);
    let mut first = String::new();
    lines
        .read_line(&mut first)
        .map_err(io_err("reading the emulator's first line"))?;
    let url = first
        .trim()
        .strip_prefix("listening on ")
        .map(|u| u.trim_end_matches('/').to_owned())
        .ok_or_else(|| StackError::Parse {
            what: "azureml-emulator".into(),
            detail: format!("first line {first:?}, log:\n{}", process.log_tail(20)),
        })?;
    // Keep draining stdout into the log so the emulator never blocks on a full pipe.
    let mut sink = std::fs::OpenOptions::new()
        .append(true)
        .open(&log)
        .map_err(io_err(format!("opening {}", log.display())))?;
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        let mut reader = lines;
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 || sink.write_all(&buf[..n]).is_err() {
                break;
            }
        }
    });
    Ok(Emulator {
        process,
        url,
        ca_file,
    })
}

/// Reads `GET /_emulator/state` (computes, resources, deletedResources).
pub async fn emulator_state(emulator: &Emulator) -> Result<Value, StackError> {
    emulator_get(emulator, "/_emulator/state").await
}

/// Reads `GET /_emulator/requests` (the request log).
pub async fn emulator_requests(emulator: &Emulator) -> Result<Value, StackError> {
    emulator_get(emulator, "/_emulator/requests").await
}

/// A GET on the emulator's control API, trusting only the emulator's CA.
async fn emulator_get(emulator: &Emulator, path: &str) -> Result<Value, StackError> {
    let url = format!("{}{path}", emulator.url);
    let failed = |detail: String| StackError::Parse {
        what: url.clone(),
        detail,
    };
    let pem = std::fs::read(&emulator.ca_file)
        .map_err(io_err(format!("reading {}", emulator.ca_file.display())))?;
    // One rustls provider in the project: ring (already installed by testenv; harmless twice).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let ca = reqwest::Certificate::from_pem(&pem).map_err(|e| failed(e.to_string()))?;
    let client = reqwest::Client::builder()
        .tls_certs_only([ca])
        .no_proxy()
        .timeout(Duration::from_secs(20))
        .build()
        .map_err(|e| failed(e.to_string()))?;
    let response = client
        .get(&url)
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(|e| failed(e.to_string()))?;
    response.json().await.map_err(|e| failed(e.to_string()))
}

/// Applies the CRDs (crds/) and the operator's RBAC (deploy/base/rbac.yaml, with its namespace).
pub fn apply_crds_and_rbac(env: &TestEnv, repo: &Path) -> Result<(), StackError> {
    run(
        "applying crds/",
        kubectl(env)
            .args(["apply", "--server-side", "--force-conflicts", "-f"])
            .arg(repo.join("crds")),
    )?;
    run(
        "waiting for the CRDs",
        kubectl(env)
            .args(["wait", "--for=condition=Established", "--timeout=60s", "-f"])
            .arg(repo.join("crds")),
    )?;
    run(
        "applying deploy/base/namespace.yaml",
        kubectl(env)
            .args(["apply", "--server-side", "--force-conflicts", "-f"])
            .arg(repo.join("deploy/base/namespace.yaml")),
    )?;
    run(
        "applying deploy/base/rbac.yaml",
        kubectl(env)
            .args(["apply", "--server-side", "--force-conflicts", "-f"])
            .arg(repo.join("deploy/base/rbac.yaml")),
    )?;
    Ok(())
}

/// A free loopback port (bound and released; good enough on a machine we share with ourselves).
fn free_port() -> Result<u16, StackError> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(io_err("finding a free port"))?;
    let port = listener
        .local_addr()
        .map_err(io_err("finding a free port"))?
        .port();
    Ok(port)
}

/// `GET path` on a plain-HTTP address; the status code.
fn http_status(addr: SocketAddr, path: &str) -> Option<u16> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut status_line = String::new();
    BufReader::new(stream).read_line(&mut status_line).ok()?;
    status_line.split_whitespace().nth(1)?.parse().ok()
}

/// The running operator.
pub struct Operator {
    /// The process.
    pub process: Managed,
    /// Its admin server (`/healthz`, `/readyz`, `/metrics`).
    pub admin_addr: SocketAddr,
}

/// Starts the operator as its ServiceAccount (token from the TokenRequest API, so the RBAC of
/// deploy/base/rbac.yaml is what it can do), pointed at the emulator, and waits for `/readyz`.
pub async fn start_operator(
    env: &TestEnv,
    bins: &Binaries,
    emulator: &Emulator,
    dir: &Path,
) -> Result<Operator, StackError> {
    let kubeconfig = env
        .service_account_kubeconfig(OPERATOR_NAMESPACE, OPERATOR_SERVICE_ACCOUNT)
        .await;
    let admin_addr: SocketAddr = ([127, 0, 0, 1], free_port()?).into();
    let log = dir.join("operator.log");
    let out = File::create(&log).map_err(io_err(format!("creating {}", log.display())))?;
    let err = out
        .try_clone()
        .map_err(io_err(format!("opening {}", log.display())))?;
    let mut process = Managed::spawn(
        "azureml-attach",
        Command::new(&bins.operator)
            .arg("run")
            .args(["--cloud", "Custom", "--arm-endpoint", &emulator.url])
            .args(["--authority-host", &emulator.url, "--extra-ca-file"])
            .arg(&emulator.ca_file)
            .args(["--admin-addr", &admin_addr.to_string()])
            .args(["--resync-period", "30s", "--log-format", "text"])
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("KUBECONFIG", &kubeconfig)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err),
        log,
    )?;
    let started = Instant::now();
    let timeout = Duration::from_secs(60);
    loop {
        if let Some(exit) = process.exited() {
            return Err(StackError::Command {
                what: "starting the operator".into(),
                stderr: format!("{exit}; log:\n{}", process.log_tail(30)),
            });
        }
        if http_status(admin_addr, "/readyz") == Some(200) {
            return Ok(Operator {
                process,
                admin_addr,
            });
        }
        if started.elapsed() > timeout {
            return Err(StackError::Timeout {
                what: format!("the operator's /readyz; log:\n{}", process.log_tail(30)),
                after: timeout,
            });
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The sample files (deploy/samples/*.yaml) in name order.
pub fn sample_files(repo: &Path) -> Result<Vec<PathBuf>, StackError> {
    let dir = repo.join("deploy/samples");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map_err(io_err(format!("listing {}", dir.display())))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    Ok(files)
}

/// `kubectl apply -f deploy/samples/` (client-side order: the Namespace file first).
pub fn apply_samples(env: &TestEnv, repo: &Path) -> Result<String, StackError> {
    run(
        "applying deploy/samples/",
        kubectl(env)
            .args(["apply", "--server-side", "-f"])
            .arg(repo.join("deploy/samples")),
    )
}

/// One object of the `azureml` category and its Ready condition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetState {
    /// Kind.
    pub kind: String,
    /// Name.
    pub name: String,
    /// `True`, `False`, `Unknown`, or empty when there is no Ready condition yet.
    pub ready: String,
    /// The Ready condition's reason.
    pub reason: String,
    /// Its message.
    pub message: String,
}

/// Every object of the `azureml` category in `namespace`.
pub fn target_states(env: &TestEnv, namespace: &str) -> Result<Vec<TargetState>, StackError> {
    let text = run(
        "kubectl get azureml",
        kubectl(env).args(["get", "azureml", "-n", namespace, "-o", "json"]),
    )?;
    let list: Value = serde_json::from_str(&text).map_err(|err| StackError::Parse {
        what: "kubectl get azureml -o json".into(),
        detail: err.to_string(),
    })?;
    let items = list["items"].as_array().cloned().unwrap_or_default();
    Ok(items
        .iter()
        .map(|item| {
            let ready = item["status"]["conditions"]
                .as_array()
                .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"));
            let field = |key: &str| {
                ready
                    .and_then(|c| c[key].as_str())
                    .unwrap_or_default()
                    .to_owned()
            };
            TargetState {
                kind: item["kind"].as_str().unwrap_or_default().to_owned(),
                name: item["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                ready: field("status"),
                reason: field("reason"),
                message: field("message"),
            }
        })
        .collect())
}

/// Waits until there are at least `expected` objects of the `azureml` category in `namespace`
/// and all of them are Ready=True. `progress` is called whenever the picture changes.
pub async fn wait_all_ready(
    env: &TestEnv,
    namespace: &str,
    expected: usize,
    timeout: Duration,
    operator: &mut Operator,
    mut progress: impl FnMut(&[TargetState]),
) -> Result<Vec<TargetState>, StackError> {
    let started = Instant::now();
    let mut last: Vec<TargetState> = Vec::new();
    loop {
        let states = target_states(env, namespace)?;
        if states != last {
            progress(&states);
            last = states.clone();
        }
        if states.len() >= expected && states.iter().all(|s| s.ready == "True") {
            return Ok(states);
        }
        if let Some(exit) = operator.process.exited() {
            return Err(StackError::Command {
                what: "the operator".into(),
                stderr: format!("{exit}; log:\n{}", operator.process.log_tail(30)),
            });
        }
        if started.elapsed() > timeout {
            let pending: Vec<String> = states
                .iter()
                .filter(|s| s.ready != "True")
                .map(|s| {
                    format!(
                        "{}/{} {} {}: {}",
                        s.kind, s.name, s.ready, s.reason, s.message
                    )
                })
                .collect();
            return Err(StackError::Timeout {
                what: format!(
                    "every target to be Ready (not ready: {pending:?}); operator log:\n{}",
                    operator.process.log_tail(30)
                ),
                after: timeout,
            });
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The number of objects of the `azureml` category that the sample files declare.
pub fn expected_targets(repo: &Path) -> Result<usize, StackError> {
    let mut count = 0;
    for file in sample_files(repo)? {
        let text = std::fs::read_to_string(&file)
            .map_err(io_err(format!("reading {}", file.display())))?;
        count += text
            .lines()
            .filter(|l| l.starts_with("kind: ") && l.trim_end().ends_with("Target"))
            .count();
    }
    Ok(count)
}
