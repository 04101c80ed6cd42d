//! An opt-in node for the control plane: containerd (with its own root and state directories),
//! a real kubelet, kube-scheduler and the workload controllers (Deployments, ReplicaSets, node
//! lifecycle), so Pods run. Only test binaries that call [`Node::global`] or [`Node::start`] pay
//! for it.
//!
//! Networking stays on this machine: pods get addresses from [`POD_SUBNET`] on the bridge
//! [`BRIDGE`], which has no route outwards (the pods' only routes are the pod subnet and the
//! Service range, and there is no masquerading). The host end of the bridge is [`GATEWAY`]: a
//! server bound there (e.g. the Azure emulator) is reachable from pods and from the test. The
//! `kubernetes` Service's ClusterIP (10.0.0.1:443) is an address of the bridge too, where a small
//! TCP forwarder (what kube-proxy would do) passes connections to the API server on loopback, so
//! in-cluster clients work unchanged. There is no kube-proxy and no cluster DNS.
//!
//! One node per machine at a time (a lock file serializes them): the bridge and its addresses
//! are fixed.

use std::{
    fs::{self, File},
    io,
    net::{Ipv4Addr, SocketAddr, TcpListener},
    os::unix::io::AsRawFd,
    path::{Path, PathBuf},
    process::Command,
    sync::OnceLock,
    time::{Duration, Instant},
};

use k8s_openapi::api::core::v1::Node as NodeObject;
use kube::Api;

mod config;
mod forward;
mod teardown;

use forward::forward;
use teardown::{collect_cgroup_pids, teardown};

use crate::{
    Error, TestEnv,
    process::{self, Process, StopOrder},
    start::{KCM_KUBECONFIG, KUBELET_KUBECONFIG, SCHEDULER_KUBECONFIG},
};

/// The node's name (also in the kubelet's client certificate).
pub const NODE_NAME: &str = "testenv-node";
/// The Linux bridge the pods are attached to.
pub const BRIDGE: &str = "azattach0";
/// The pods' addresses.
pub const POD_SUBNET: &str = "10.213.0.0/24";
/// The host's address on [`BRIDGE`]: reachable from pods and from the test process.
pub const GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 213, 0, 1);
/// The sandbox image, built by `make testenv` (`testenv/go/pause`) and imported at start.
pub const PAUSE_IMAGE: &str = "localhost/azureml-attach/pause:testenv";
/// The pause image archive in the binary directory.
pub const PAUSE_ARCHIVE: &str = "pause.oci.tar";

/// The `kubernetes` Service's ClusterIP (first address of `--service-cluster-ip-range`).
const SERVICE_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const SERVICE_RANGE: &str = "10.0.0.0/24";
const LOCK_FILE: &str = "azureml-attach-testenv-node.lock";
/// Controllers of the node's own controller manager: what turns a Deployment into running
/// Pods, and the node lifecycle (taints from conditions).
const WORKLOAD_CONTROLLERS: &str = "deployment-controller,replicaset-controller,\
node-lifecycle-controller,disruption-controller,pod-garbage-collector-controller,\
taint-eviction-controller";

/// A running node. Stopped (processes, containers, mounts, cgroups, bridge) when dropped, or at
/// exit for [`Node::global`].
pub struct Node {
    id: u64,
    dir: PathBuf,
    socket: PathBuf,
    cgroup_root: String,
    startup: Duration,
    _processes: Vec<Process>,
    _lock: File,
}

impl Drop for Node {
    fn drop(&mut self) {
        process::cleanup(self.id);
    }
}

impl Node {
    /// The node of this test binary on [`TestEnv::global`], started on first use (blocking).
    ///
    /// # Panics
    /// If it cannot start, with the reason and the end of the failing process's log.
    pub fn global() -> &'static Node {
        static GLOBAL: OnceLock<Result<Node, String>> = OnceLock::new();
        match GLOBAL.get_or_init(|| Node::start(TestEnv::global()).map_err(|e| e.to_string())) {
            Ok(node) => node,
            Err(message) => panic!("testenv: cannot start the node: {message}"),
        }
    }

    /// Starts a node for `env` and waits until it is Ready (blocking).
    pub fn start(env: &TestEnv) -> Result<Node, Error> {
        let began = Instant::now();
        let bin = env.bin_dir().to_path_buf();
        check_prerequisites(&bin)?;
        let lock = take_lock()?;
        let (id, dir) = process::create_dir(crate::start::Options::from_env().keep_dir)?;
        let cgroup_root = format!(
            "/{}",
            dir.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| format!("azureml-attach-testenv-node-{id}"))
        );
        {
            let dir = dir.clone();
            let cgroup_root = cgroup_root.clone();
            process::add_cleanup(id, Box::new(move || teardown(&dir, &cgroup_root)));
        }
        match launch(env, id, &dir, &bin, &cgroup_root, began) {
            Ok((socket, processes)) => {
                let node = Node {
                    id,
                    dir,
                    socket,
                    cgroup_root,
                    startup: began.elapsed(),
                    _processes: processes,
                    _lock: lock,
                };
                let _ = std::io::Write::write_fmt(
                    &mut std::io::stderr(),
                    format_args!(
                        "testenv: node {NODE_NAME} Ready in {:.2?} (dir {})\n",
                        node.startup,
                        node.dir.display()
                    ),
                );
                Ok(node)
            }
            Err(err) => {
                process::cleanup(id);
                Err(err)
            }
        }
    }

    /// How long the start took, from checking the prerequisites to the Node being Ready.
    pub fn startup_duration(&self) -> Duration {
        self.startup
    }

    /// The node's temporary directory (logs of containerd, kubelet and scheduler; `pod-logs/`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The host's address on the pod bridge (see the module docs).
    pub fn gateway(&self) -> Ipv4Addr {
        GATEWAY
    }

    /// `ctr` talking to this node's containerd, in the kubelet's namespace `k8s.io`.
    pub fn ctr(&self) -> Command {
        let mut command = Command::new("ctr");
        command
            .arg("--address")
            .arg(&self.socket)
            .args(["--namespace", "k8s.io"]);
        command
    }

    /// Imports an OCI image archive (e.g. from `make image`) into the node's containerd, so
    /// pods with `imagePullPolicy: Never` find it under the name it is annotated with.
    pub fn import_image(&self, archive: &Path) -> Result<(), Error> {
        import(&self.socket, archive)
    }

    /// The memory cgroup (v1) of the pod with `uid`: `(usage, working set)` in bytes, the
    /// working set being usage minus inactive file pages (what the kubelet reports).
    pub fn pod_memory(&self, uid: &str) -> Option<(u64, u64)> {
        let base = Path::new("/sys/fs/cgroup/memory")
            .join(self.cgroup_root.trim_start_matches('/'))
            .join("kubepods");
        let wanted = format!("pod{uid}");
        let dir = find_dir(&base, &wanted, 3)?;
        let usage: u64 = fs::read_to_string(dir.join("memory.usage_in_bytes"))
            .ok()?
            .trim()
            .parse()
            .ok()?;
        let stat = fs::read_to_string(dir.join("memory.stat")).ok()?;
        let inactive = stat
            .lines()
            .find_map(|l| l.strip_prefix("total_inactive_file "))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0);
        Some((usage, usage.saturating_sub(inactive)))
    }

    /// The processes in the pod with `uid` (its memory cgroup, v1), sandbox included.
    pub fn pod_processes(&self, uid: &str) -> Vec<i32> {
        let base = Path::new("/sys/fs/cgroup/memory")
            .join(self.cgroup_root.trim_start_matches('/'))
            .join("kubepods");
        let mut pids = Vec::new();
        if let Some(dir) = find_dir(&base, &format!("pod{uid}"), 3) {
            collect_cgroup_pids(&dir, &mut pids);
        }
        pids
    }

    /// The kubelet's `--root-dir` (pods' volumes are under `pods/<uid>/volumes/`).
    pub fn kubelet_dir(&self) -> PathBuf {
        self.dir.join("kubelet")
    }

    /// Everything the kubelet logged for the containers of pod `namespace/name`.
    pub fn pod_logs(&self, namespace: &str, name: &str) -> String {
        let prefix = format!("{namespace}_{name}_");
        let mut out = String::new();
        let Ok(pods) = fs::read_dir(self.dir.join("pod-logs")) else {
            return out;
        };
        for pod in pods.flatten() {
            if !pod.file_name().to_string_lossy().starts_with(&prefix) {
                continue;
            }
            for container in fs::read_dir(pod.path()).into_iter().flatten().flatten() {
                let mut files: Vec<_> = fs::read_dir(container.path())
                    .into_iter()
                    .flatten()
                    .flatten()
                    .map(|f| f.path())
                    .collect();
                files.sort();
                for file in files {
                    out.push_str(&fs::read_to_string(file).unwrap_or_default());
                }
            }
        }
        out
    }
}

fn find_dir(base: &Path, name: &str, depth: u32) -> Option<PathBuf> {
    for entry in fs::read_dir(base).ok()?.flatten() {
        let path = entry.path();
        if !path.is_dir() {
            continue;
        }
        if entry.file_name().to_string_lossy() == name {
            return Some(path);
        }
        if depth > 0
            && let Some(found) = find_dir(&path, name, depth - 1)
        {
            return Some(found);
        }
    }
    None
}

/// The runtime, CNI plugins and node binaries `make testenv` installs or builds.
fn check_prerequisites(bin: &Path) -> Result<(), Error> {
    let mut missing = Vec::new();
    for file in ["kubelet", "kube-scheduler", PAUSE_ARCHIVE] {
        if !bin.join(file).is_file() {
            missing.push(bin.join(file).display().to_string());
        }
    }
    for tool in ["containerd", "containerd-shim-runc-v2", "runc", "ctr", "ip"] {
        if which(tool).is_none() {
            missing.push(tool.to_string());
        }
    }
    if cni_bin_dir().is_none() {
        missing.push("CNI plugins bridge, host-local (/usr/lib/cni or /opt/cni/bin)".into());
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(Error::NodeUnavailable {
            missing: missing.join(", "),
        })
    }
}

fn which(tool: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(tool))
            .find(|p| p.is_file())
    })
}

fn cni_bin_dir() -> Option<PathBuf> {
    ["/usr/lib/cni", "/opt/cni/bin"]
        .into_iter()
        .map(PathBuf::from)
        .find(|d| d.join("bridge").is_file() && d.join("host-local").is_file())
}

/// An exclusive lock on a file in the temporary directory, held as long as the node runs.
fn take_lock() -> Result<File, Error> {
    let path = std::env::temp_dir().join(LOCK_FILE);
    let file = File::create(&path).map_err(Error::io(format!("creating {}", path.display())))?;
    // SAFETY: flock(2) on a file descriptor we own.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(Error::io(format!("locking {}", path.display()))(
            io::Error::last_os_error(),
        ));
    }
    Ok(file)
}

fn write(path: &Path, contents: &str) -> Result<(), Error> {
    fs::write(path, contents).map_err(Error::io(format!("writing {}", path.display())))
}

fn run(command: &mut Command, what: &str) -> Result<String, Error> {
    let output = command
        .output()
        .map_err(Error::io(format!("running {what}")))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(Error::UnexpectedAnswer(format!(
            "{what} failed ({}): {}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )))
    }
}

fn ip(args: &[&str]) -> Result<String, Error> {
    run(
        Command::new("ip").args(args),
        &format!("ip {}", args.join(" ")),
    )
}

fn import(socket: &Path, archive: &Path) -> Result<(), Error> {
    run(
        Command::new("ctr")
            .arg("--address")
            .arg(socket)
            .args(["--namespace", "k8s.io", "images", "import"])
            .arg(archive),
        &format!("ctr images import {}", archive.display()),
    )
    .map(drop)
}

fn launch(
    env: &TestEnv,
    id: u64,
    dir: &Path,
    bin: &Path,
    cgroup_root: &str,
    began: Instant,
) -> Result<(PathBuf, Vec<Process>), Error> {
    let plane = env.dir();
    // The bridge, with the gateway and the Service address; a leftover of a killed run goes.
    let _ = ip(&["link", "del", BRIDGE]);
    ip(&["link", "add", BRIDGE, "type", "bridge"])?;
    ip(&["addr", "add", &format!("{GATEWAY}/24"), "dev", BRIDGE])?;
    ip(&["addr", "add", &format!("{SERVICE_IP}/32"), "dev", BRIDGE])?;
    ip(&["link", "set", BRIDGE, "up"])?;
    let apiserver: SocketAddr = env
        .server_url()
        .trim_start_matches("https://")
        .parse()
        .map_err(|e| Error::UnexpectedAnswer(format!("API server address: {e}")))?;
    forward(id, SocketAddr::from((SERVICE_IP, 443)), apiserver)?;

    // CNI: a bridge with host-local addresses, routes only to the pod subnet and Service range.
    let cni_conf = dir.join("cni");
    fs::create_dir_all(&cni_conf).map_err(Error::io("creating the CNI config directory"))?;
    write(
        &cni_conf.join("10-testenv.conflist"),
        &config::cni_conflist(dir),
    )?;

    let d = dir.display();
    let socket = dir.join("containerd.sock");
    let cni_bin = cni_bin_dir().unwrap_or_else(|| PathBuf::from("/usr/lib/cni"));
    write(
        &dir.join("containerd.toml"),
        &config::containerd_toml(dir, &socket, &cni_bin, &cni_conf),
    )?;
    let mut processes = vec![process::spawn(
        id,
        "containerd",
        StopOrder::Late,
        Path::new("containerd"),
        &[format!("--config={d}/containerd.toml")],
        dir.join("containerd.log"),
    )?];
    let deadline = began + Duration::from_secs(120);
    while !socket.exists() {
        if let Some(reason) = processes[0].exited() {
            return Err(processes[0].failure(reason));
        }
        if Instant::now() > deadline {
            return Err(processes[0].failure("did not create its socket within 120 s"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut imported = import(&socket, &bin.join(PAUSE_ARCHIVE));
    while imported.is_err() && Instant::now() < began + Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(200));
        imported = import(&socket, &bin.join(PAUSE_ARCHIVE));
    }
    imported?;

    // The kubelet's --cgroup-root must exist in every v1 hierarchy.
    for controller in fs::read_dir("/sys/fs/cgroup")
        .map_err(Error::io("reading /sys/fs/cgroup"))?
        .flatten()
    {
        if controller.file_name() == "unified" || !controller.path().is_dir() {
            continue;
        }
        let path = controller.path().join(cgroup_root.trim_start_matches('/'));
        fs::create_dir_all(&path).map_err(Error::io(format!("creating {}", path.display())))?;
    }
    let ca = plane.join("pki/ca.crt");
    let kubelet_port = free_port()?;
    write(
        &dir.join("kubelet.yaml"),
        &config::kubelet_yaml(dir, &socket, &ca, cgroup_root, kubelet_port),
    )?;
    processes.push(process::spawn(
        id,
        "kubelet",
        StopOrder::Early,
        &bin.join("kubelet"),
        &[
            format!("--config={d}/kubelet.yaml"),
            format!("--kubeconfig={}", plane.join(KUBELET_KUBECONFIG).display()),
            format!("--root-dir={d}/kubelet"),
            format!("--cert-dir={d}/kubelet-pki"),
            format!("--hostname-override={NODE_NAME}"),
            format!("--node-ip={GATEWAY}"),
            "--v=1".into(),
        ],
        dir.join("kubelet.log"),
    )?);
    processes.push(process::spawn(
        id,
        "kube-scheduler",
        StopOrder::Early,
        &bin.join("kube-scheduler"),
        &[
            format!(
                "--kubeconfig={}",
                plane.join(SCHEDULER_KUBECONFIG).display()
            ),
            format!(
                "--authentication-kubeconfig={}",
                plane.join(SCHEDULER_KUBECONFIG).display()
            ),
            format!(
                "--authorization-kubeconfig={}",
                plane.join(SCHEDULER_KUBECONFIG).display()
            ),
            "--leader-elect=false".into(),
            "--bind-address=127.0.0.1".into(),
            format!("--secure-port={}", free_port()?),
        ],
        dir.join("kube-scheduler.log"),
    )?);
    processes.push(process::spawn(
        id,
        "kube-controller-manager-workloads",
        StopOrder::Early,
        &bin.join("kube-controller-manager"),
        &[
            format!("--kubeconfig={}", plane.join(KCM_KUBECONFIG).display()),
            format!("--controllers={WORKLOAD_CONTROLLERS}"),
            "--use-service-account-credentials=true".into(),
            "--leader-elect=false".into(),
            "--secure-port=0".into(),
            // Fast eviction is not wanted: a slow kubelet heartbeat must not taint the node.
            "--node-monitor-grace-period=60s".into(),
        ],
        dir.join("kube-controller-manager-workloads.log"),
    )?);

    wait_node_ready(env, &mut processes, began + Duration::from_secs(180))?;
    Ok((socket, processes))
}

fn free_port() -> Result<u16, Error> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .map_err(Error::io("finding a free loopback port"))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(Error::io("reading a bound port"))
}

fn wait_node_ready(
    env: &TestEnv,
    processes: &mut [Process],
    deadline: Instant,
) -> Result<(), Error> {
    let config = env.client_config();
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(Error::io("building the node start-up runtime"))?;
                runtime.block_on(async {
                    let client = kube::Client::try_from(config)
                        .map_err(Error::kube("building the admin client"))?;
                    let nodes: Api<NodeObject> = Api::all(client);
                    let mut last = String::from("not registered");
                    loop {
                        for p in processes.iter_mut() {
                            if let Some(reason) = p.exited() {
                                return Err(p.failure(format!(
                                    "{reason} while waiting for node {NODE_NAME} to be Ready"
                                )));
                            }
                        }
                        match nodes.get_opt(NODE_NAME).await {
                            Ok(Some(node)) => {
                                let ready = node
                                    .status
                                    .and_then(|s| s.conditions)
                                    .unwrap_or_default()
                                    .into_iter()
                                    .find(|c| c.type_ == "Ready");
                                match ready {
                                    Some(c) if c.status == "True" => return Ok(()),
                                    Some(c) => {
                                        last = format!(
                                            "Ready={} {}: {}",
                                            c.status,
                                            c.reason.unwrap_or_default(),
                                            c.message.unwrap_or_default()
                                        )
                                    }
                                    None => last = "no Ready condition".into(),
                                }
                            }
                            Ok(None) => {}
                            Err(err) => last = err.to_string(),
                        }
                        if Instant::now() > deadline {
                            let kubelet = processes
                                .iter()
                                .find(|p| p.name == "kubelet")
                                .unwrap_or(&processes[0]);
                            return Err(kubelet.failure(format!(
                                "node {NODE_NAME} was not Ready in time (last: {last})"
                            )));
                        }
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                })
            })
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}
