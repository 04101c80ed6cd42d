//! Shared e2e plumbing: the real API server (testenv), one emulator per test, and the operator
//! as a process under the ServiceAccount and RBAC from deploy/base/rbac.yaml, pointed at the
//! emulator only through its user-facing flags.

use std::fmt::Debug;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use azureml_attach::controller::target::AttachTarget;
use azureml_emulator::{ControlClient, EmulatorConfig, EmulatorHandle};
use kube::api::{DeleteParams, DynamicObject};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use testenv::TestEnv;
use tokio::sync::OnceCell;

pub const SUB: &str = "00000000-0000-0000-0000-000000000000";
pub const VM1: &str = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/ml-rg/providers/Microsoft.Compute/virtualMachines/dsvm-1";
pub const VM2: &str = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/ml-rg/providers/Microsoft.Compute/virtualMachines/dsvm-2";
pub const HDI: &str = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/ml-rg/providers/Microsoft.HDInsight/clusters/spark-1";
pub const BATCH: &str = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/ml-rg/providers/Microsoft.Batch/batchAccounts/batch1";
pub const DBW: &str = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/ml-rg/providers/Microsoft.Databricks/workspaces/dbw-1";
pub const ADLA: &str = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/ml-rg/providers/Microsoft.DataLakeAnalytics/accounts/adla1";
pub const AKS: &str = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/ml-rg/providers/Microsoft.ContainerService/managedClusters/aks-1";
pub const ARC: &str = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/ml-rg/providers/Microsoft.Kubernetes/connectedClusters/arc-1";
pub const SYNAPSE_POOL: &str = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/ml-rg/providers/Microsoft.Synapse/workspaces/syn-1/bigDataPools/pool1";
pub const UAI: &str = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/ml-rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/ml-jobs";
pub const VM_PASSWORD: &str = "Emulator-VM-Passw0rd";
pub const HDI_PASSWORD: &str = "Emulator-HDI-Passw0rd";
pub const DBX_TOKEN: &str = "dapi-emulator-0123456789abcdef";
pub const CLIENT_SECRET: &str = "emulator-client-secret";
pub const OPERATOR_NS: &str = "azureml-attach-system";
pub const OPERATOR_SA: &str = "azureml-attach";

static INSTALLED: OnceCell<()> = OnceCell::const_new();

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// CRDs from crds/ and RBAC from deploy/base/rbac.yaml, once per test binary.
pub async fn install(env: &'static TestEnv) {
    INSTALLED.get_or_init(|| install_now(env)).await;
}

/// CRDs and RBAC into `env` (a private control plane; the global one uses [`install`]).
pub async fn install_now(env: &TestEnv) {
    {
        {
            env.apply_yaml(
                None,
                &format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {OPERATOR_NS}\n"),
            )
            .await
            .expect("operator namespace");
            let mut crds: Vec<_> = std::fs::read_dir(repo().join("crds"))
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            crds.sort();
            for crd in crds {
                env.apply_file(None, &crd)
                    .await
                    .unwrap_or_else(|e| panic!("{}: {e}", crd.display()));
            }
            env.apply_file(None, repo().join("deploy/base/rbac.yaml"))
                .await
                .expect("rbac");
        }
    }
}

/// One test's world: a namespace with an MLWorkspace (client secret) and its own emulator.
pub struct World {
    pub env: &'static TestEnv,
    pub emu: EmulatorHandle,
    pub control: ControlClient,
    pub ns: String,
    pub client: Client,
}

impl World {
    pub async fn new(prefix: &str) -> World {
        Self::with_config(prefix, EmulatorConfig::default()).await
    }

    pub async fn with_config(prefix: &str, config: EmulatorConfig) -> World {
        let env = TestEnv::global();
        install(env).await;
        Self::on(env, prefix, config).await
    }

    /// A world on a private control plane (for tests that stop its API server).
    pub async fn on_private(env: &'static TestEnv, prefix: &str) -> World {
        Self::on_private_with(env, prefix, EmulatorConfig::default()).await
    }

    /// [`World::on_private`] with its own emulator configuration (the chaos scenario).
    pub async fn on_private_with(
        env: &'static TestEnv,
        prefix: &str,
        config: EmulatorConfig,
    ) -> World {
        install_now(env).await;
        Self::on(env, prefix, config).await
    }

    async fn on(env: &'static TestEnv, prefix: &str, config: EmulatorConfig) -> World {
        let emu = azureml_emulator::spawn(config).await.expect("emulator");
        let control = emu.control().expect("control client");
        let ns = env.create_namespace(prefix).await;
        let world = World {
            env,
            emu,
            control,
            ns,
            client: env.client(),
        };
        world.apply(&workspace_yaml("prod-workspace")).await;
        world
    }

    /// Server-side applies YAML (as the admin) into the test namespace.
    pub async fn apply(&self, yaml: &str) -> Vec<DynamicObject> {
        self.apply_in(&self.ns, yaml).await
    }

    pub async fn apply_in(&self, ns: &str, yaml: &str) -> Vec<DynamicObject> {
        self.env
            .apply_yaml(Some(ns), yaml)
            .await
            .unwrap_or_else(|e| panic!("apply failed: {e}\n{yaml}"))
    }

    pub fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    pub async fn delete<K>(&self, name: &str)
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + DeserializeOwned
            + Debug,
    {
        self.api::<K>()
            .delete(name, &DeleteParams::default())
            .await
            .expect("delete");
    }

    /// ARM requests (not token requests) the emulator logged since the last clear.
    pub async fn arm_requests(&self) -> Vec<azureml_emulator::state::LogEntry> {
        let log = self.control.requests(None).await.expect("requests");
        log.entries
            .into_iter()
            .filter(|e| {
                !e.path.contains("/oauth2/")
                    && !e.path.starts_with("/_emulator")
                    && !e.path.starts_with("/metadata")
            })
            .collect()
    }

    /// Starts the operator for this namespace.
    pub async fn operator(&self) -> Operator {
        Operator::start(self, &[&self.ns], &[], "3s").await
    }
}

/// The MLWorkspace (client secret from a Secret) and its Secret.
pub fn workspace_yaml(name: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Secret
metadata:
  name: {name}-sp
  labels:
    attach.azureml.io/credential: "true"
stringData:
  clientSecret: {CLIENT_SECRET}
---
apiVersion: attach.azureml.io/v1alpha1
kind: MLWorkspace
metadata:
  name: {name}
spec:
  subscriptionId: {SUB}
  resourceGroup: ml-rg
  workspaceName: prod-workspace
  credential:
    type: ClientSecret
    clientSecret:
      tenantId: 11111111-1111-1111-1111-111111111111
      clientId: 22222222-2222-2222-2222-222222222222
      secretRef:
        name: {name}-sp
        key: clientSecret
"#
    )
}

pub fn vm_yaml(name: &str, resource_id: &str, port: u16) -> String {
    format!(
        r#"apiVersion: v1
kind: Secret
metadata:
  name: {name}-ssh
  labels:
    attach.azureml.io/credential: "true"
stringData:
  username: azureuser
  password: {VM_PASSWORD}
---
apiVersion: attach.azureml.io/v1alpha1
kind: RemoteVmTarget
metadata:
  name: {name}
spec:
  workspaceRef:
    name: prod-workspace
  resourceId: {resource_id}
  sshPort: {port}
  credentials:
    secretRef:
      name: {name}-ssh
    passwordKey: password
"#
    )
}

/// The operator process. Killed on drop.
pub struct Operator {
    child: Option<Child>,
    pub log: PathBuf,
}

impl Operator {
    pub async fn start(
        world: &World,
        namespaces: &[&str],
        extra_env: &[(&str, &str)],
        resync: &str,
    ) -> Operator {
        let kubeconfig = world
            .env
            .service_account_kubeconfig(OPERATOR_NS, OPERATOR_SA)
            .await;
        Self::start_with(world, &kubeconfig, namespaces, extra_env, resync)
    }

    /// Like [`Operator::start`] with a kubeconfig made earlier (e.g. before the API server
    /// was stopped).
    pub fn start_with(
        world: &World,
        kubeconfig: &std::path::Path,
        namespaces: &[&str],
        extra_env: &[(&str, &str)],
        resync: &str,
    ) -> Operator {
        let log = world
            .env
            .dir()
            .join(format!("{}.operator.log", world.env.unique_name(&world.ns)));
        let out = std::fs::File::create(&log).expect("log file");
        let err = out.try_clone().expect("log file");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_azureml-attach"));
        cmd.arg("run")
            .args(["--cloud", "Custom"])
            .args(["--arm-endpoint", world.emu.base_url()])
            .args(["--authority-host", world.emu.base_url()])
            .arg("--extra-ca-file")
            .arg(world.emu.ca_file())
            .args(["--watch-namespaces", &namespaces.join(",")])
            .args(["--resync-period", resync])
            .args(["--admin-addr", "127.0.0.1:0"])
            .env("KUBECONFIG", kubeconfig)
            .env("RUST_LOG", "info,azureml_attach=debug")
            .env_remove("AZURE_CLIENT_ID")
            .env_remove("AZURE_TENANT_ID")
            .env_remove("AZURE_FEDERATED_TOKEN_FILE")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("start operator");
        Operator {
            child: Some(child),
            log,
        }
    }

    /// Whether the process is still running (not exited).
    pub fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// The admin server's address, from the JSON log line "admin server listening" (start the
    /// operator with `LOG_FORMAT=json`).
    pub async fn admin_addr(&self) -> String {
        let start = Instant::now();
        loop {
            let found = self.logs().lines().find_map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).ok()?;
                (v["message"] == "admin server listening")
                    .then(|| v["addr"].as_str().map(str::to_owned))?
            });
            if let Some(a) = found {
                return a;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "no admin address in log:\n{}",
                tail(&self.logs())
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The operator's process id (while it runs).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends SIGTERM and waits (up to `timeout`) for the exit status.
    pub fn terminate(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let child = self.child.as_mut()?;
        let pid = i32::try_from(child.id()).ok()?;
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
        let start = Instant::now();
        while start.elapsed() < timeout {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        None
    }

    /// Kills the process (SIGKILL: a crash, not a clean stop).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The Ready condition (status, reason, message) of a target.
pub async fn ready<K>(api: &Api<K>, name: &str) -> Option<(String, String, String)>
where
    K: AttachTarget,
{
    let obj = api.get_opt(name).await.ok()??;
    let c = obj.target_status()?.ready()?.clone();
    Some((c.status, c.reason, c.message))
}

/// Waits until the target's Ready reason is `reason`; panics with the last seen state and the
/// operator's log on timeout.
pub async fn wait_reason<K>(
    api: &Api<K>,
    name: &str,
    reason: &str,
    timeout: Duration,
    op: &Operator,
) -> (String, String, String)
where
    K: AttachTarget,
{
    let start = Instant::now();
    let mut last = None;
    while start.elapsed() < timeout {
        last = ready(api, name).await;
        if let Some(r) = &last
            && r.1 == reason
        {
            return r.clone();
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    panic!(
        "{name}: waited {timeout:?} for reason {reason}, last {last:?}\noperator log:\n{}",
        tail(&op.logs())
    );
}

/// Waits until the object is gone.
pub async fn wait_gone<K>(api: &Api<K>, name: &str, timeout: Duration, op: &Operator)
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    let start = Instant::now();
    while start.elapsed() < timeout {
        if api.get_opt(name).await.expect("get").is_none() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    panic!(
        "{name}: still present after {timeout:?}\noperator log:\n{}",
        tail(&op.logs())
    );
}

pub fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(80)..].join("\n")
}

/// Waits until the MLWorkspace's Ready reason is `reason`; panics with the last seen reason and
/// the operator's log on timeout.
pub async fn wait_workspace_reason(
    api: &Api<azureml_attach::api::MLWorkspace>,
    name: &str,
    reason: &str,
    timeout: Duration,
    op: &Operator,
) {
    let start = Instant::now();
    loop {
        let seen = api
            .get_opt(name)
            .await
            .ok()
            .flatten()
            .and_then(|ws| ws.status)
            .and_then(|s| s.conditions.into_iter().find(|c| c.type_ == "Ready"))
            .map(|c| c.reason);
        if seen.as_deref() == Some(reason) {
            return;
        }
        assert!(
            start.elapsed() < timeout,
            "{name}: waited {timeout:?} for workspace reason {reason}, last {seen:?}\noperator log:\n{}",
            tail(&op.logs())
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}
