//! `azureml-emulator`: serve the emulator until SIGINT/SIGTERM.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use azureml_emulator::{EmulatorConfig, spawn};
use clap::Parser;

/// Azure ML compute ARM API + Entra ID token emulator (HTTPS).
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "EMULATOR_LISTEN", default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Where to write the generated CA certificate (PEM).
    #[arg(long, env = "EMULATOR_CA_FILE")]
    ca_file: PathBuf,
    /// World/behaviour configuration (YAML); the documented default world when absent.
    #[arg(long, env = "EMULATOR_CONFIG")]
    config: Option<PathBuf>,
    /// Extra DNS names / IPs for the server certificate (repeatable).
    #[arg(long = "tls-name")]
    tls_names: Vec<String>,
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();
    let mut config = match &args.config {
        Some(path) => match EmulatorConfig::from_file(path) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("error: {e}: {}", e.source_text());
                return ExitCode::from(2);
            }
        },
        None => EmulatorConfig::default(),
    };
    config.listen = args.listen;
    config.ca_file = Some(args.ca_file);
    config.tls_names.extend(args.tls_names);
    let handle = match spawn(config).await {
        Ok(h) => h,
        Err(e) => {
            eprintln!(
                "error: {e}: {}",
                std::error::Error::source(&e)
                    .map(ToString::to_string)
                    .unwrap_or_default()
            );
            return ExitCode::from(1);
        }
    };
    // The start-up contract: this is the first line on stdout.
    let mut out = std::io::stdout();
    let _ = writeln!(out, "listening on {}", handle.base_url());
    let _ = out.flush();
    tracing::info!(url = handle.base_url(), ca_file = %handle.ca_file().display(), "emulator started");
    wait_for_signal().await;
    handle.shutdown().await;
    ExitCode::SUCCESS
}

trait SourceText {
    fn source_text(&self) -> String;
}

impl SourceText for azureml_emulator::config::ConfigError {
    fn source_text(&self) -> String {
        std::error::Error::source(self)
            .map(ToString::to_string)
            .unwrap_or_default()
    }
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
