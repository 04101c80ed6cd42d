//! `azureml-attach`: `run` the operator, print the `crds`, or the `version`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use futures::FutureExt;

use azureml_attach::api::all_crds;
use azureml_attach::azure::{
    self, AzureConfig, AzureOptions, BucketConfig, Cloud, EndpointOverrides, ThrottleConfig,
};
use azureml_attach::controller::{self, ControllerSettings};
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
    /// Print the CustomResourceDefinitions as YAML, or write one file per CRD.
    Crds {
        /// Write `<plural>.<group>.yaml` files here instead of printing.
        #[arg(long)]
        out_dir: Option<PathBuf>,
    },
    /// Print the version.
    Version,
}

#[derive(Parser, Debug)]
struct RunArgs {
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
        Command::Run(args) => {
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
            match runtime.block_on(run(*args)) {
                Ok(()) => std::process::ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e}");
                    std::process::ExitCode::FAILURE
                }
            }
        }
    }
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
    let azure = AzureConfig::load(AzureOptions {
        cloud: args.cloud,
        overrides: EndpointOverrides {
            arm_endpoint: args.arm_endpoint.clone(),
            arm_audience: args.arm_audience.clone(),
            authority_host: args.authority_host.clone(),
        },
        extra_ca_file: args.extra_ca_file.clone(),
        api_version: Some(args.api_version.clone()),
        throttle: args.throttle(),
    })?;
    let client = kube::Client::try_default().await?;
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
        cloud = ?args.cloud,
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
