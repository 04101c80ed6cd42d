//! `make demo`: the operator on a real control plane against the Azure ML emulator.
//!
//! Started by hack/demo.sh (which builds everything first). Starts kube-apiserver + etcd +
//! kube-controller-manager (testenv), the emulator with its default world, and the operator as
//! its ServiceAccount; applies deploy/samples/; waits until every target is Ready; prints
//! `kubectl get azureml -A`; deletes one target and shows it detached while the VM still exists;
//! then waits for Ctrl-C (`DEMO_ONCE=1`: exits). Stops everything it started.
//!
//! Environment: `AZUREML_ATTACH_BIN`, `AZUREML_EMULATOR_BIN` (the binaries), `DEMO_ONCE`,
//! `DEMO_TIMEOUT` (seconds to wait for Ready, default 180), `AZUREML_ATTACH_TESTENV_BIN`.

#[path = "demo/stack.rs"]
mod stack;

use std::{
    io::IsTerminal,
    path::{Path, PathBuf},
    process::ExitCode,
    time::{Duration, Instant},
};

use stack::{
    Binaries, Emulator, Operator, SAMPLES_NAMESPACE, StackError, TargetState, kubectl, run,
};
use testenv::TestEnv;

/// The target the demo deletes, and what it points at in the emulator's world.
const DELETED_KIND: &str = "remotevmtarget";
const DELETED_NAME: &str = "gpu-dsvm";
const DELETED_VM: &str = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/ml-rg/providers/Microsoft.Compute/virtualMachines/dsvm-1";
const WORKSPACE: &str = "prod-workspace";

fn main() -> ExitCode {
    let started = Instant::now();
    let result = Options::from_env().and_then(|options| demo(&options, started));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("\ndemo failed: {err}");
            let mut source = std::error::Error::source(&err);
            while let Some(cause) = source {
                eprintln!("  caused by: {cause}");
                source = cause.source();
            }
            ExitCode::FAILURE
        }
    }
}

struct Options {
    repo: PathBuf,
    bins: Binaries,
    once: bool,
    ready_timeout: Duration,
}

impl Options {
    fn from_env() -> Result<Self, StackError> {
        let mut args = std::env::args().skip(1);
        let mut repo = None;
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--repo" => repo = args.next().map(PathBuf::from),
                other => {
                    return Err(StackError::Parse {
                        what: "the command line".into(),
                        detail: format!("unknown argument {other:?} (usage: demo --repo DIR)"),
                    });
                }
            }
        }
        let repo = repo.unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
        // Next to this example's binary (target/debug/examples/demo) unless given.
        let sibling = |name: &str| {
            std::env::current_exe()
                .ok()
                .and_then(|exe| exe.parent()?.parent().map(|dir| dir.join(name)))
                .unwrap_or_else(|| PathBuf::from(name))
        };
        let bin = |var: &str, name: &str| {
            std::env::var_os(var)
                .map(PathBuf::from)
                .unwrap_or_else(|| sibling(name))
        };
        let ready_timeout = std::env::var("DEMO_TIMEOUT")
            .ok()
            .and_then(|s| s.parse().ok())
            .map_or(Duration::from_secs(180), Duration::from_secs);
        Ok(Self {
            repo,
            bins: Binaries {
                operator: bin("AZUREML_ATTACH_BIN", "azureml-attach"),
                emulator: bin("AZUREML_EMULATOR_BIN", "azureml-emulator"),
            },
            once: std::env::var("DEMO_ONCE").is_ok_and(|v| !v.is_empty() && v != "0"),
            ready_timeout,
        })
    }
}

fn step(started: Instant, text: &str) {
    let secs = started.elapsed().as_secs();
    if std::io::stdout().is_terminal() {
        println!("\n\x1b[1m==> [{secs:>3}s] {text}\x1b[0m");
    } else {
        println!("\n==> [{secs:>3}s] {text}");
    }
}

/// Prints each command output line indented.
fn show(text: &str) {
    for line in text.lines() {
        println!("    {line}");
    }
}

fn demo(options: &Options, started: Instant) -> Result<(), StackError> {
    let logs = options.repo.join(".demo");
    let _ = std::fs::remove_dir_all(&logs);
    std::fs::create_dir_all(&logs).map_err(|source| StackError::Io {
        what: format!("creating {}", logs.display()),
        source,
    })?;

    step(
        started,
        "starting kube-apiserver, etcd and kube-controller-manager on loopback",
    );
    let env = TestEnv::start().map_err(|err| StackError::Command {
        what: "starting the control plane".into(),
        stderr: err.to_string(),
    })?;
    println!(
        "    API server {} (Kubernetes {})",
        env.server_url(),
        env.versions().kubernetes
    );

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|source| StackError::Io {
            what: "starting the async runtime".into(),
            source,
        })?;
    let result = runtime.block_on(walkthrough(&env, options, &logs, started));
    step(
        started,
        "stopping the operator, the emulator and the control plane",
    );
    drop(runtime);
    env.stop();
    println!("    stopped; logs of this run are in {}", logs.display());
    result
}

async fn walkthrough(
    env: &TestEnv,
    options: &Options,
    logs: &Path,
    started: Instant,
) -> Result<(), StackError> {
    step(
        started,
        "starting the Azure ML emulator (its default world matches deploy/samples/)",
    );
    let mut emulator = stack::start_emulator(&options.bins, logs)?;
    println!("    {} (CA {})", emulator.url, emulator.ca_file.display());

    step(
        started,
        "applying the CRDs (crds/) and the operator's RBAC (deploy/base/rbac.yaml)",
    );
    stack::apply_crds_and_rbac(env, &options.repo)?;

    step(
        started,
        "starting the operator as ServiceAccount azureml-attach-system/azureml-attach, --cloud Custom → the emulator",
    );
    let mut operator = stack::start_operator(env, &options.bins, &emulator, logs).await?;
    println!(
        "    admin server http://{} (/healthz, /readyz, /metrics); log {}",
        operator.admin_addr,
        operator.process.log.display()
    );

    step(started, "kubectl apply -f deploy/samples/");
    show(&stack::apply_samples(env, &options.repo)?);

    let expected = stack::expected_targets(&options.repo)?;
    step(
        started,
        &format!("waiting until every target ({expected}) is Ready"),
    );
    let wait_started = Instant::now();
    let states = stack::wait_all_ready(
        env,
        SAMPLES_NAMESPACE,
        expected,
        options.ready_timeout,
        &mut operator,
        print_progress,
    )
    .await?;
    println!(
        "    every target is Ready ({} objects) after {:.1}s",
        states.len(),
        wait_started.elapsed().as_secs_f64()
    );

    step(started, "kubectl get azureml -A");
    show(&run(
        "kubectl get azureml -A",
        kubectl(env).args(["get", "azureml", "-A"]),
    )?);

    step(
        started,
        &format!(
            "the connection Secret {DELETED_NAME}-connection (key names only; values stay secret)"
        ),
    );
    show(&run(
        "reading the connection Secret",
        kubectl(env).args([
            "get",
            "secret",
            &format!("{DELETED_NAME}-connection"),
            "-n",
            SAMPLES_NAMESPACE,
            "-o",
            "go-template={{range $k, $v := .data}}{{$k}}{{\"\\n\"}}{{end}}",
        ]),
    )?);

    detach_one(env, &emulator, started).await?;

    step(started, "kubectl get azureml -A");
    show(&run(
        "kubectl get azureml -A",
        kubectl(env).args(["get", "azureml", "-A"]),
    )?);

    if options.once {
        println!("\n    DEMO_ONCE is set: done.");
        return Ok(());
    }
    wait_for_ctrl_c(env, &mut emulator, &mut operator).await
}

fn print_progress(states: &[TargetState]) {
    let line: Vec<String> = states
        .iter()
        .map(|s| {
            let ready = if s.ready.is_empty() { "-" } else { &s.ready };
            let reason = if s.reason.is_empty() {
                "pending"
            } else {
                &s.reason
            };
            format!("{} {ready}/{reason}", s.name)
        })
        .collect();
    println!("    {}", line.join(", "));
}

/// Deletes one target, waits for its finalizer (the detach), and shows from the emulator's
/// records that the compute left the workspace while the VM itself still exists.
async fn detach_one(
    env: &TestEnv,
    emulator: &Emulator,
    started: Instant,
) -> Result<(), StackError> {
    step(
        started,
        &format!(
            "kubectl delete {DELETED_KIND} {DELETED_NAME} -n {SAMPLES_NAMESPACE}  (detach, never delete)"
        ),
    );
    show(&run(
        "deleting a target",
        kubectl(env).args([
            "delete",
            DELETED_KIND,
            DELETED_NAME,
            "-n",
            SAMPLES_NAMESPACE,
            "--wait=true",
            "--timeout=120s",
        ]),
    )?);

    let state = stack::emulator_state(emulator).await?;
    let computes: Vec<String> = state["computes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| {
            c["workspace"]
                .as_str()
                .is_some_and(|w| w.eq_ignore_ascii_case(WORKSPACE))
        })
        .filter_map(|c| c["name"].as_str().map(str::to_owned))
        .collect();
    let still_attached = computes.iter().any(|c| c == DELETED_NAME);
    let vm_exists = json_mentions(&state["resources"], DELETED_VM);
    let vm_deleted = json_mentions(&state["deletedResources"], DELETED_VM);
    println!(
        "    emulator: computes in workspace {WORKSPACE}: {}",
        computes.join(", ")
    );
    println!(
        "    emulator: VM dsvm-1 {} (resource registry); underlying resources deleted: {}",
        if vm_exists {
            "still exists"
        } else {
            "is MISSING"
        },
        state["deletedResources"].as_array().map_or(0, Vec::len)
    );
    if let Some(line) = detach_request(emulator).await? {
        println!("    emulator request log: {line}");
    }
    if still_attached || !vm_exists || vm_deleted {
        return Err(StackError::Parse {
            what: "the emulator's state after the delete".into(),
            detail: format!(
                "expected {DELETED_NAME} detached and the VM intact; attached={still_attached} vm_exists={vm_exists} vm_deleted={vm_deleted}"
            ),
        });
    }
    println!(
        "    {DELETED_NAME} detached: gone from the workspace, and the VM itself was not touched"
    );
    Ok(())
}

/// True when `value` (any JSON) contains `needle` in some string, ignoring ASCII case
/// (ARM ids are case-insensitive).
fn json_mentions(value: &serde_json::Value, needle: &str) -> bool {
    match value {
        serde_json::Value::String(s) => s.eq_ignore_ascii_case(needle),
        serde_json::Value::Array(items) => items.iter().any(|v| json_mentions(v, needle)),
        serde_json::Value::Object(map) => map.values().any(|v| json_mentions(v, needle)),
        _ => false,
    }
}

/// The emulator's log line for the DELETE of the detached compute, if it has one.
async fn detach_request(emulator: &Emulator) -> Result<Option<String>, StackError> {
    let log = stack::emulator_requests(emulator).await?;
    Ok(log["entries"]
        .as_array()
        .into_iter()
        .flatten()
        .rev()
        .filter(|e| e["method"] == "DELETE")
        .find(|e| {
            e["path"]
                .as_str()
                .is_some_and(|p| p.ends_with(&format!("/computes/{DELETED_NAME}")))
        })
        .map(|e| {
            format!(
                "DELETE {}?{} → {}",
                e["path"].as_str().unwrap_or_default(),
                e["query"].as_str().unwrap_or_default(),
                e["status"]
            )
        }))
}

async fn wait_for_ctrl_c(
    env: &TestEnv,
    emulator: &mut Emulator,
    operator: &mut Operator,
) -> Result<(), StackError> {
    let kubectl_bin = env.bin_dir().join("kubectl");
    println!(
        "\n    The demo keeps running. In another terminal:\n\
         \n      export KUBECONFIG={}\n      alias kubectl={}\n      kubectl get azureml -A\n      kubectl delete databrickstarget dbw -n {SAMPLES_NAMESPACE}\n\
         \n    Emulator {} (CA {}); operator metrics http://{}/metrics\n    Press Ctrl-C to stop everything.",
        env.kubeconfig_path().display(),
        kubectl_bin.display(),
        emulator.url,
        emulator.ca_file.display(),
        operator.admin_addr,
    );
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(()),
            () = tokio::time::sleep(Duration::from_secs(1)) => {
                if let Some(exit) = operator.process.exited() {
                    return Err(StackError::Command {
                        what: "the operator".into(),
                        stderr: format!("{exit}; log:\n{}", operator.process.log_tail(30)),
                    });
                }
                if let Some(exit) = emulator.process.exited() {
                    return Err(StackError::Command {
                        what: "the emulator".into(),
                        stderr: format!("{exit}; log:\n{}", emulator.process.log_tail(30)),
                    });
                }
            }
        }
    }
}
