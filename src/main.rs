//! `azureml-attach`: `run` the operator, `import` a workspace's attachments as manifests,
//! print the `crds`, or the `version`.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use futures::FutureExt;

use azureml_attach::api::all_crds;
use azureml_attach::azure::{
    self, AzureConfig, AzureOptions, BucketConfig, Cloud, EndpointOverrides, ThrottleConfig,
    WorkspaceRef,
};
use azureml_attach::controller::{self, ControllerSettings};
use azureml_attach::import::{self, CredentialChoice, CredentialKind, SshLogin};
use azureml_attach::ops::{self, AdminServer, LogFormat, Metrics, Readiness};

#[derive(Parser)]
#[command(
    name = "azureml-attach",
    version,
    about = "Attach existing Azure compute to Azure ML workspaces, from Kubernetes"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the operator (in cluster, or out of cluster with a kubeconfig).
    Run(Box<RunArgs>),
    /// Print manifests (MLWorkspace, targets, Secret stubs) for the computes already attached
    /// to a workspace; applied, the operator adopts them without a PUT.
    Import(Box<ImportArgs>),
    /// Print the CustomResourceDefinitions as YAML, or write one file per CRD.
    Crds {
        /// Write `<plural>.<group>.yaml` files here instead of printing.
        #[arg(long)]
        out_dir: Option<PathBuf>,
    },
    /// Print the version.
    Version,
}

/// Where Azure is: the flags `run` and `import` share.
#[derive(clap::Args, Debug, Clone)]
struct CloudArgs {
    /// Azure cloud.
    #[arg(long, env = "AZURE_CLOUD", value_enum, default_value = "AzurePublic")]
    cloud: Cloud,
    /// ARM endpoint (required with --cloud Custom).
    #[arg(long, env = "AZURE_RESOURCE_MANAGER_ENDPOINT")]
    arm_endpoint: Option<String>,
    /// ARM token audience (defaults from the cloud or the ARM endpoint).
    #[arg(long, env = "AZURE_RESOURCE_MANAGER_AUDIENCE")]
    arm_audience: Option<String>,
    /// Entra ID authority host (required with --cloud Custom).
    #[arg(long, env = "AZURE_AUTHORITY_HOST")]
    authority_host: Option<String>,
    /// Extra PEM CA bundle trusted for ARM and Entra ID (private clouds, the emulator).
    #[arg(long, env = "AZURE_EXTRA_CA_FILE")]
    extra_ca_file: Option<PathBuf>,
    /// Azure ML computes api-version.
    #[arg(long, env = "AZUREML_API_VERSION", default_value = azure::cloud::DEFAULT_API_VERSION)]
    api_version: String,
}

impl CloudArgs {
    fn options(&self, throttle: ThrottleConfig) -> AzureOptions {
        AzureOptions {
            cloud: self.cloud,
            overrides: EndpointOverrides {
                arm_endpoint: self.arm_endpoint.clone(),
                arm_audience: self.arm_audience.clone(),
                authority_host: self.authority_host.clone(),
            },
            extra_ca_file: self.extra_ca_file.clone(),
            api_version: Some(self.api_version.clone()),
            throttle,
        }
    }
}

#[derive(Parser, Debug)]
struct ImportArgs {
    /// Subscription id of the workspace.
    #[arg(long)]
    subscription: String,
    /// Resource group of the workspace.
    #[arg(long)]
    resource_group: String,
    /// Name of the Azure ML workspace.
    #[arg(long)]
    workspace: String,
    /// Namespace of the printed objects.
    #[arg(long, default_value = "default")]
    namespace: String,
    /// Name of the printed MLWorkspace (default: the workspace's name).
    #[arg(long)]
    workspace_object_name: Option<String>,
    /// Identity for the import and the printed MLWorkspace. ClientSecret reads the secret from
    /// the environment variable AZURE_CLIENT_SECRET (there is no flag for it); AzureCli uses the
    /// Azure CLI's account for the import and prints `credential.type: Default`.
    #[arg(long, value_enum, default_value = "Default")]
    credential: CredentialKind,
    /// Entra tenant id (WorkloadIdentity, ClientSecret; optional for AzureCli).
    #[arg(long)]
    tenant_id: Option<String>,
    /// Application (client) id (WorkloadIdentity, ClientSecret; a user-assigned ManagedIdentity).
    #[arg(long)]
    client_id: Option<String>,
    /// Which SSH login the VM and HDInsight Secret stubs hold (Azure does not say).
    #[arg(long, value_enum, default_value = "password")]
    ssh_login: SshLogin,
    #[command(flatten)]
    azure: CloudArgs,
}

#[derive(Parser, Debug)]
struct RunArgs {
    #[command(flatten)]
    azure: CloudArgs,
    /// How often every target is re-checked against one LIST per workspace (e.g. 30s, 5m, 1h).
    #[arg(long, env = "AZUREML_RESYNC_PERIOD", default_value = "5m", value_parser = parse_duration)]
    resync_period: Duration,
    /// Comma-separated namespaces to watch (default: all).
    #[arg(long, env = "WATCH_NAMESPACES", value_delimiter = ',')]
    watch_namespaces: Vec<String>,
    /// Comma-separated namespaces whose MLWorkspaces may use the operator's own identity
    /// (`credential.type: Default`); default: every namespace.
    #[arg(long, env = "DEFAULT_CREDENTIAL_NAMESPACES", value_delimiter = ',')]
    default_credential_namespaces: Vec<String>,
    /// Address of the admin server (/healthz, /readyz, /metrics).
    #[arg(long, env = "ADMIN_ADDR", default_value = "0.0.0.0:8080")]
    admin_addr: SocketAddr,
    /// Log format (level via RUST_LOG).
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value = "text")]
    log_format: LogFormat,
    /// Elect a leader on a Lease before reconciling (for more than one replica).
    #[arg(long, env = "LEADER_ELECT", default_value_t = false)]
    leader_elect: bool,
    /// Namespace of the leader Lease (default: the pod's namespace, else azureml-attach-system).
    #[arg(long, env = "POD_NAMESPACE", default_value = "azureml-attach-system")]
    lease_namespace: String,
    /// Parallel reconciles per kind.
    #[arg(long, env = "CONCURRENCY", default_value_t = 4)]
    concurrency: u16,
    /// How long the API server may be unreachable before /healthz fails (the process itself
    /// keeps waiting and resumes when it answers; /readyz fails during any outage).
    #[arg(long, env = "APISERVER_OUTAGE_LIMIT", default_value = "5m", value_parser = parse_duration)]
    apiserver_outage_limit: Duration,
    /// Client-side ARM budget for GETs per subscription, BURST/PER_SECOND (ARM allows 250/25).
    #[arg(long, env = "ARM_THROTTLE_READS", default_value_t = ThrottleConfig::default().reads)]
    arm_throttle_reads: BucketConfig,
    /// Client-side ARM budget for PUTs and POSTs per subscription (ARM allows 200/10).
    #[arg(long, env = "ARM_THROTTLE_WRITES", default_value_t = ThrottleConfig::default().writes)]
    arm_throttle_writes: BucketConfig,
    /// Client-side ARM budget for DELETEs per subscription (ARM allows 200/10).
    #[arg(long, env = "ARM_THROTTLE_DELETES", default_value_t = ThrottleConfig::default().deletes)]
    arm_throttle_deletes: BucketConfig,
    /// Longest an ARM call waits for the client-side budget before the target is requeued.
    #[arg(long, env = "ARM_THROTTLE_MAX_WAIT", default_value = "5s", value_parser = parse_duration)]
    arm_throttle_max_wait: Duration,
}

impl RunArgs {
    /// The client-side ARM budget; the start-up burst and margin keep their defaults.
    fn throttle(&self) -> ThrottleConfig {
        ThrottleConfig {
            reads: self.arm_throttle_reads,
            writes: self.arm_throttle_writes,
            deletes: self.arm_throttle_deletes,
            max_wait: self.arm_throttle_max_wait,
            ..ThrottleConfig::default()
        }
    }
}

/// `90s`, `5m`, `1h`, `250ms`, or bare seconds.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = s.split_at(
        s.find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(s.len()),
    );
    let n: f64 = num
        .parse()
        .map_err(|_| format!("invalid duration {s:?} (use e.g. 30s, 5m, 1h)"))?;
    let secs = match unit {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => {
            return Err(format!(
                "invalid duration unit in {s:?} (use ms, s, m or h)"
            ));
        }
    };
    if !(secs > 0.0 && secs.is_finite()) {
        return Err(format!("duration {s:?} must be positive"));
    }
    Ok(Duration::from_secs_f64(secs))
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Version => {
            println!("azureml-attach {}", env!("CARGO_PKG_VERSION"));
            std::process::ExitCode::SUCCESS
        }
        Command::Crds { out_dir } => match print_crds(out_dir) {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                std::process::ExitCode::FAILURE
            }
        },
        Command::Run(args) => block_on(run(*args)),
        Command::Import(args) => block_on(import(*args)),
    }
}

fn block_on(
    task: impl Future<Output = Result<(), Box<dyn std::error::Error>>>,
) -> std::process::ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(task) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            let mut source = e.source();
            while let Some(cause) = source {
                eprintln!("  caused by: {cause}");
                source = cause.source();
            }
            std::process::ExitCode::FAILURE
        }
    }
}

/// `import`: manifests on stdout, what was left out (and why) on stderr.
async fn import(args: ImportArgs) -> Result<(), Box<dyn std::error::Error>> {
    let config = AzureConfig::load(args.azure.options(ThrottleConfig::default()))?;
    let credential = CredentialChoice::from_flags(args.credential, args.tenant_id, args.client_id)?;
    let settings = import::Settings::new(
        WorkspaceRef::new(args.subscription, args.resource_group, args.workspace),
        &args.namespace,
        args.workspace_object_name.as_deref(),
        config.cloud,
        credential,
        args.ssh_login,
    )?;
    // Only from the environment: a flag would show in `ps` and shell history.
    let client_secret = std::env::var("AZURE_CLIENT_SECRET")
        .ok()
        .filter(|s| !s.is_empty())
        .filter(|_| settings.credential.spec().needs_client_secret())
        .map(secrecy::SecretString::from);
    let computes = import::list_computes(
        &config,
        &settings.credential,
        client_secret,
        &settings.workspace,
    )
    .await?;
    let output = import::manifests(&settings, &computes);
    print!("{}", output.to_yaml()?);
    for s in &output.skipped {
        eprintln!(
            "skipped compute {:?} ({}): {}",
            s.compute, s.compute_type, s.why
        );
    }
    for note in &output.notes {
        eprintln!("note: {note}");
    }
    eprintln!(
        "imported {} of {} computes of workspace {}",
        output.targets().len(),
        computes.len(),
        settings.workspace
    );
    if !output.stubs().is_empty() {
        eprintln!(
            "fill in the {}…> placeholders of Secret(s) {} before applying",
            import::PLACEHOLDER_PREFIX,
            output.stubs().join(", ")
        );
    }
    Ok(())
}

fn print_crds(out_dir: Option<PathBuf>) -> Result<(), Box<dyn std::error::Error>> {
    let crds = all_crds();
    match out_dir {
        None => {
            for crd in crds {
                print!("---\n{}", serde_yaml::to_string(&crd)?);
            }
        }
        Some(dir) => {
            std::fs::create_dir_all(&dir)?;
            for crd in crds {
                let name = crd.metadata.name.clone().unwrap_or_default();
                std::fs::write(
                    dir.join(format!("{name}.yaml")),
                    serde_yaml::to_string(&crd)?,
                )?;
            }
        }
    }
    Ok(())
}

async fn run(args: RunArgs) -> Result<(), Box<dyn std::error::Error>> {
    azure::install_crypto_provider();
    ops::logging::init(args.log_format)?;
    let azure = AzureConfig::load(args.azure.options(args.throttle()))?;
    let client = kube_client().await?;
    let metrics = Arc::new(Metrics::new());
    let readiness = Readiness::with_outage_limit(args.apiserver_outage_limit);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
        .shared()
    };
    // The admin server first: a process waiting for the API server is live and not ready.
    let admin = AdminServer::bind(args.admin_addr, metrics.clone(), readiness.clone()).await?;
    tracing::info!(addr = %admin.local_addr()?, "admin server listening");
    let admin_task = tokio::spawn(admin.serve(stopped.clone()));

    tokio::spawn(async move {
        let signal = ops::shutdown::signal().await;
        tracing::info!(?signal, "shutting down: finishing in-flight reconciles");
        let _ = stop_tx.send(true);
    });

    let version = tokio::select! {
        v = wait_for_apiserver(&client, &readiness) => v,
        _ = stopped.clone() => return Ok(()),
    };
    tracing::info!(
        cloud = ?args.azure.cloud,
        arm = %azure.endpoints.arm_endpoint,
        kubernetes = %version.git_version,
        resync = ?args.resync_period,
        namespaces = ?args.watch_namespaces,
        "starting azureml-attach {}",
        env!("CARGO_PKG_VERSION")
    );

    if args.leader_elect {
        let identity = std::env::var("POD_NAME")
            .unwrap_or_else(|_| format!("azureml-attach-{}", std::process::id()));
        // Losing the lease (e.g. the API server was away for longer than the lease) stops the
        // controllers and waits for it again, in the same process.
        loop {
            let lease = controller::leader::Lease::new(
                client.clone(),
                &args.lease_namespace,
                "azureml-attach",
                &identity,
            );
            // A replica waiting for the Lease is ready (while the API server answers): it stands
            // by to take over. Counted NotReady, it would stall every rolling update (the new pod
            // cannot lead while the old one holds the Lease, and the old one is only stopped once
            // the new one is Ready) and leave the PodDisruptionBudget no disruption to allow.
            readiness.set_ready(true);
            tracing::info!(namespace = %args.lease_namespace, identity, "waiting for leadership");
            tokio::select! {
                () = lease.acquire() => {}
                _ = stopped.clone() => break,
            }
            tracing::info!("leading");
            metrics.set_leader(true);
            let lost = lease.hold(stopped.clone());
            let stop = stopped.clone();
            let settings = settings(&args);
            readiness.set_ready(false);
            controller::run(
                client.clone(),
                azure.clone(),
                metrics.clone(),
                settings,
                readiness.clone(),
                async move {
                    tokio::select! {
                        _ = lost => tracing::warn!("lost the lease: stopping the controllers"),
                        _ = stop => {}
                    }
                },
            )
            .await;
            metrics.set_leader(false);
            if *stop_rx.borrow() {
                break;
            }
        }
    } else {
        metrics.set_leader(true);
        controller::run(
            client,
            azure,
            metrics,
            settings(&args),
            readiness,
            stopped.clone(),
        )
        .await;
    }
    let _ = admin_task.await;
    tracing::info!("stopped");
    Ok(())
}

/// The Kubernetes client from the kubeconfig or the in-cluster service account, without kube's
/// built-in retry of 429, 503 and 504: that layer retries a request up to 15 times with a delay
/// doubling to 1,000 s and says nothing, so a LIST the API server keeps refusing (priority and
/// fairness, a watch cache re-initializing, a 60 s request timeout) left the operator waiting
/// minutes with an empty log. Every caller retries by itself and says so: a watch backs off
/// (0.8 s doubling to 30 s) and logs at WARN, a reconcile requeues and counts the error.
async fn kube_client() -> Result<kube::Client, kube::Error> {
    let mut config = kube::Config::infer()
        .await
        .map_err(kube::Error::InferConfig)?;
    config.default_retry = false;
    kube::Client::try_from(config)
}

/// Asks the API server for its version until it answers, with back-off (1 s doubling to 30 s):
/// started during an outage, the process waits instead of exiting into a restart back-off.
async fn wait_for_apiserver(
    client: &kube::Client,
    readiness: &Readiness,
) -> k8s_openapi::apimachinery::pkg::version::Info {
    let mut delay = Duration::from_secs(1);
    loop {
        match client.apiserver_version().await {
            Ok(v) => {
                readiness.api_reachable(true);
                return v;
            }
            Err(error) => {
                readiness.api_reachable(false);
                tracing::warn!(%error, retry_in = ?delay, "cannot reach the API server");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(30));
            }
        }
    }
}

fn settings(args: &RunArgs) -> ControllerSettings {
    ControllerSettings {
        resync: args.resync_period,
        namespaces: args
            .watch_namespaces
            .iter()
            .filter(|n| !n.trim().is_empty())
            .cloned()
            .collect(),
        concurrency: args.concurrency.max(1),
        default_credential_namespaces: args
            .default_credential_namespaces
            .iter()
            .map(|n| n.trim().to_owned())
            .filter(|n| !n.is_empty())
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("2s").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("5d").is_err());
    }

    fn run_args(extra: &[&str]) -> Result<RunArgs, clap::Error> {
        let argv = ["azureml-attach", "run"].iter().chain(extra);
        match Cli::try_parse_from(argv)?.command {
            Command::Run(args) => Ok(*args),
            _ => unreachable!("the run subcommand parses as Run"),
        }
    }

    fn import_args(extra: &[&str]) -> Result<ImportArgs, clap::Error> {
        let argv = [
            "azureml-attach",
            "import",
            "--subscription",
            "00000000-0000-0000-0000-000000000000",
            "--resource-group",
            "ml-rg",
            "--workspace",
            "prod-workspace",
        ];
        match Cli::try_parse_from(argv.iter().chain(extra))?.command {
            Command::Import(args) => Ok(*args),
            _ => unreachable!("the import subcommand parses as Import"),
        }
    }

    #[test]
    fn import_flags() {
        let args = import_args(&[]).unwrap();
        assert_eq!(args.namespace, "default");
        assert_eq!(args.workspace_object_name, None);
        assert_eq!(args.credential, CredentialKind::Default);
        assert_eq!(args.ssh_login, SshLogin::Password);
        for kind in [
            "Default",
            "WorkloadIdentity",
            "ClientSecret",
            "ManagedIdentity",
            "AzureCli",
        ] {
            assert!(import_args(&["--credential", kind]).is_ok(), "{kind}");
        }
        // The same cloud flags as `run`.
        let custom = import_args(&[
            "--cloud",
            "Custom",
            "--arm-endpoint",
            "https://127.0.0.1:8443",
            "--authority-host",
            "https://127.0.0.1:8443",
            "--extra-ca-file",
            "/tmp/ca.pem",
        ])
        .unwrap();
        assert_eq!(custom.azure.cloud, Cloud::Custom);
        // The client secret comes from AZURE_CLIENT_SECRET only.
        assert!(import_args(&["--client-secret", "s3cret"]).is_err());
        assert!(import_args(&["--ssh-login", "private-key"]).is_ok());
    }

    #[test]
    fn throttle_flags() {
        assert_eq!(run_args(&[]).unwrap().throttle(), ThrottleConfig::default());
        let args = run_args(&[
            "--arm-throttle-writes",
            "100/5",
            "--arm-throttle-max-wait",
            "2s",
        ])
        .unwrap();
        let throttle = args.throttle();
        assert_eq!(throttle.writes, BucketConfig::new(100, 5.0));
        assert_eq!(throttle.reads, ThrottleConfig::default().reads);
        assert_eq!(throttle.max_wait, Duration::from_secs(2));
        for bad in ["0/1", "100", "100/0"] {
            assert!(run_args(&["--arm-throttle-deletes", bad]).is_err(), "{bad}");
        }
    }
}
