//! Plumbing of the RBAC audit test: kubectl and helm as the admin, the samples rewritten into
//! a namespace, and the operator as a process under a ServiceAccount's token (the same way
//! tests/e2e/harness.rs runs it, so RBAC decides what it may do).

use std::{
    io::Write,
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    time::{Duration, Instant},
};

use azureml_emulator::EmulatorHandle;
use serde::Deserialize as _;
use serde_json::Value as Json;
use serde_yaml::Value;
use testenv::TestEnv;

/// The repository root (this package is the root package).
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs `cmd` (stdin from `input`); its stdout, or a panic with `what` and its stderr.
pub fn run(what: &str, cmd: &mut Command, input: Option<&str>) -> String {
    cmd.stdin(if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("{what}: cannot start {cmd:?}: {e}"));
    if let Some(text) = input {
        let mut pipe = child.stdin.take().unwrap();
        pipe.write_all(text.as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what} failed:\n{}{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

pub fn kubectl(env: &TestEnv) -> Command {
    let mut cmd = env.kubectl();
    cmd.arg("--request-timeout=60s");
    cmd
}

/// `kubectl apply --server-side` of a manifest (the admin's field manager).
pub fn apply(env: &TestEnv, what: &str, manifests: &str) {
    run(
        what,
        kubectl(env).args(["apply", "--server-side", "--force-conflicts", "-f", "-"]),
        Some(manifests),
    );
}

/// The documents of a multi-document YAML stream (empty documents dropped).
pub fn documents(yaml: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(yaml)
        .map(|d| Value::deserialize(d).unwrap())
        .filter(|v| !v.is_null())
        .collect()
}

pub fn kind(doc: &Value) -> &str {
    doc["kind"].as_str().unwrap_or_default()
}

pub fn to_yaml(docs: &[Value]) -> String {
    docs.iter()
        .map(|d| format!("---\n{}", serde_yaml::to_string(d).unwrap()))
        .collect()
}

/// `helm template azureml-attach` of the chart into `namespace` with `--set` pairs.
pub fn helm_template(env: &TestEnv, namespace: &str, sets: &[&str]) -> Vec<Value> {
    let mut cmd = env.helm();
    cmd.args(["template", "azureml-attach"])
        .arg(repo().join("charts/azureml-attach"))
        .args(["--namespace", namespace]);
    for set in sets {
        cmd.args(["--set", set]);
    }
    documents(&run("helm template", &mut cmd, None))
}

/// CRDs from crds/ (waited for until served).
pub fn install_crds(env: &TestEnv) {
    let crds = repo().join("crds");
    run(
        "applying crds/",
        kubectl(env)
            .args(["apply", "--server-side", "--force-conflicts", "-f"])
            .arg(&crds),
        None,
    );
    run(
        "waiting for the CRDs",
        kubectl(env)
            .args(["wait", "--for=condition=Established", "--timeout=60s", "-f"])
            .arg(&crds),
        None,
    );
}

/// The documents of deploy/samples/*.yaml in file order; with `namespace`, every object moved
/// there and the Namespace documents left out.
pub fn samples(namespace: Option<&str>) -> Vec<Value> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo().join("deploy/samples"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    let mut docs = Vec::new();
    for file in files {
        for mut doc in documents(&std::fs::read_to_string(&file).unwrap()) {
            if let Some(ns) = namespace {
                if kind(&doc) == "Namespace" {
                    continue;
                }
                doc["metadata"]["namespace"] = ns.into();
            }
            docs.push(doc);
        }
    }
    docs
}

/// Every object of the `azureml` category in `namespace`, as JSON.
pub fn azureml_objects(env: &TestEnv, namespace: &str) -> Vec<Json> {
    let text = run(
        "kubectl get azureml",
        kubectl(env).args(["get", "azureml", "-n", namespace, "-o", "json"]),
        None,
    );
    let list: Json = serde_json::from_str(&text).unwrap();
    list["items"].as_array().cloned().unwrap_or_default()
}

/// `Kind/name` of an object and its Ready condition as `"status" "reason"` (empty if none).
pub fn ready_of(obj: &Json) -> (String, String) {
    let ready = obj["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"));
    (
        format!(
            "{}/{}",
            obj["kind"].as_str().unwrap_or_default(),
            obj["metadata"]["name"].as_str().unwrap_or_default()
        ),
        ready
            .map(|c| format!("{} {}", c["status"], c["reason"]))
            .unwrap_or_default(),
    )
}

/// Waits until `expected` objects of the `azureml` category in `namespace` are all Ready=True.
pub async fn wait_all_ready(
    env: &TestEnv,
    namespace: &str,
    expected: usize,
    timeout: Duration,
    operator: &mut Operator,
) {
    let started = Instant::now();
    loop {
        let objects = azureml_objects(env, namespace);
        let ready = objects
            .iter()
            .filter(|o| {
                o["status"]["conditions"].as_array().is_some_and(|cs| {
                    cs.iter()
                        .any(|c| c["type"] == "Ready" && c["status"] == "True")
                })
            })
            .count();
        if objects.len() == expected && ready == expected {
            return;
        }
        let states: Vec<(String, String)> = objects.iter().map(ready_of).collect();
        if let Some(exit) = operator.exited() {
            panic!(
                "the operator exited ({exit}); states {states:?}\n{}",
                operator.log_tail()
            );
        }
        assert!(
            started.elapsed() < timeout,
            "not every object in {namespace} was Ready after {timeout:?}: {states:?}\n{}",
            operator.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Deletes the samples' objects in `namespace` the way a user takes them down: the targets
/// first (each detaches; kubectl waits for the finalizers), then the MLWorkspace, then the
/// credential Secrets (a target's detach still needs the workspace's credential).
pub fn delete_samples(env: &TestEnv, namespace: &str, operator: &Operator) {
    let all_targets = azureml_attach::controller::kinds::target_plurals().join(",");
    for (what, args) in [
        ("deleting the targets", vec![all_targets.as_str(), "--all"]),
        ("deleting the MLWorkspace", vec!["mlworkspaces", "--all"]),
        (
            "deleting the credential Secrets",
            vec!["secrets", "-l", "attach.azureml.io/credential=true"],
        ),
    ] {
        let out = kubectl(env)
            .arg("delete")
            .args(&args)
            .args(["-n", namespace, "--timeout=90s"])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{what} in {namespace}: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            operator.log_tail()
        );
    }
}

/// The operator process, killed with the test binary (PR_SET_PDEATHSIG) and on drop.
pub struct Operator {
    child: Option<Child>,
    log: PathBuf,
}

impl Operator {
    /// `azureml-attach run` as ServiceAccount `namespace/name`, pointed at the emulator only
    /// through its user-facing flags, with `extra` flags (`--watch-namespaces`, …).
    pub async fn start(
        env: &TestEnv,
        emulator: &EmulatorHandle,
        (namespace, name): (&str, &str),
        extra: &[String],
        log: &Path,
    ) -> Operator {
        let kubeconfig = env.service_account_kubeconfig(namespace, name).await;
        let out = std::fs::File::create(log).unwrap();
        let err = out.try_clone().unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_azureml-attach"));
        cmd.arg("run")
            .args(["--cloud", "Custom"])
            .args(["--arm-endpoint", emulator.base_url()])
            .args(["--authority-host", emulator.base_url()])
            .arg("--extra-ca-file")
            .arg(emulator.ca_file())
            .args(["--admin-addr", "127.0.0.1:0", "--log-format", "text"])
            // A target that saw its MLWorkspace still Pending retries at the next resync; with
            // the default 5m one lost wake-up would outlast the test.
            .args(["--resync-period", "5s"])
            .args(extra)
            // Nothing from this environment (AZURE_*, KUBECONFIG) may leak in.
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("KUBECONFIG", &kubeconfig)
            .env("POD_NAME", format!("rbac-audit-{}", std::process::id()))
            .env("RUST_LOG", "info,azureml_attach=debug")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        let parent = std::process::id();
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if libc::getppid() as u32 != parent {
                    return Err(std::io::Error::other("parent exited during spawn"));
                }
                Ok(())
            });
        }
        Operator {
            child: Some(cmd.spawn().expect("starting the operator")),
            log: log.to_path_buf(),
        }
    }

    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.as_mut()?.try_wait().ok().flatten()
    }

    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        format!(
            "--- operator log ({}) ---\n{}",
            self.log.display(),
            lines[lines.len().saturating_sub(60)..].join("\n")
        )
    }

    /// SIGTERM, as Kubernetes stops a pod (the operator releases its Lease), and the exit.
    pub fn stop(&mut self) -> ExitStatus {
        let child = self.child.as_mut().expect("running");
        let pid = i32::try_from(child.id()).unwrap();
        // SAFETY: kill(2) on our own, not yet reaped, child.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(20) {
            if let Some(status) = child.try_wait().unwrap() {
                self.child = None;
                return status;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "the operator did not stop within 20 s of SIGTERM\n{}",
            self.log_tail()
        );
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
