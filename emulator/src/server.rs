//! The HTTPS listener and the handle that owns it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::app::App;
use crate::client::{ClientError, ControlClient};
use crate::config::EmulatorConfig;
use crate::response::DropConnection;
use crate::tls;
use crate::validate::Specs;

/// Errors starting the emulator.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    /// The listen address could not be bound.
    #[error("binding {addr}")]
    Bind {
        /// Address.
        addr: SocketAddr,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// TLS material could not be generated.
    #[error("generating TLS material")]
    Tls(#[from] tls::TlsError),
    /// The embedded OpenAPI document failed to parse.
    #[error("loading the OpenAPI documents")]
    Spec(#[from] crate::validate::SpecError),
    /// The dedicated runtime or thread could not be started.
    #[error("starting the emulator runtime")]
    Runtime(#[source] std::io::Error),
    /// The CA file could not be written.
    #[error("writing the CA certificate to {path}")]
    CaFile {
        /// Path.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

/// A running emulator. Dropping it stops the listener and closes connections.
pub struct EmulatorHandle {
    base_url: String,
    addr: SocketAddr,
    ca_pem: String,
    ca_file: PathBuf,
    _ca_dir: Option<tempfile::TempDir>,
    shutdown: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
    config: EmulatorConfig,
}

impl std::fmt::Debug for EmulatorHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmulatorHandle")
            .field("base_url", &self.base_url)
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

impl EmulatorHandle {
    /// `https://127.0.0.1:PORT` (no trailing slash): the ARM endpoint and the authority host.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The bound socket address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The CA certificate (PEM) that signed the server certificate.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// A file holding [`EmulatorHandle::ca_pem`] (removed on drop unless `ca_file` was configured).
    pub fn ca_file(&self) -> &Path {
        &self.ca_file
    }

    /// The configuration the emulator started with.
    pub fn config(&self) -> &EmulatorConfig {
        &self.config
    }

    /// The Entra tenant.
    pub fn tenant_id(&self) -> &str {
        &self.config.tenant_id
    }

    /// Token endpoint URL of the tenant.
    pub fn token_url(&self) -> String {
        format!(
            "{}/{}/oauth2/v2.0/token",
            self.base_url, self.config.tenant_id
        )
    }

    /// A typed client for `/_emulator/*`.
    pub fn control(&self) -> Result<ControlClient, ClientError> {
        ControlClient::new(&self.base_url, &self.ca_pem)
    }

    /// A reqwest client that trusts this emulator's CA (and nothing else).
    pub fn http_client(&self) -> Result<reqwest::Client, ClientError> {
        crate::client::https_client(&self.ca_pem)
    }

    /// Stop accepting, close connections and wait for the listener task.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for EmulatorHandle {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// The URL clients use for a bound address (unspecified addresses map to loopback).
fn base_url_for(addr: SocketAddr) -> String {
    match addr {
        SocketAddr::V4(a) if a.ip().is_unspecified() => format!("https://127.0.0.1:{}", a.port()),
        SocketAddr::V4(a) => format!("https://{}:{}", a.ip(), a.port()),
        SocketAddr::V6(a) if a.ip().is_unspecified() => format!("https://[::1]:{}", a.port()),
        SocketAddr::V6(a) => format!("https://[{}]:{}", a.ip(), a.port()),
    }
}

/// Start an emulator on its own thread and tokio runtime (blocking call, no runtime needed).
///
/// Useful for one emulator shared by many `#[tokio::test]`s (each has its own runtime, which would
/// stop an emulator spawned on it). The thread and runtime end when the handle is dropped.
pub fn spawn_detached(config: EmulatorConfig) -> Result<EmulatorHandle, SpawnError> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("azureml-emulator".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = tx.send(Err(SpawnError::Runtime(e)));
                    return;
                }
            };
            rt.block_on(async move {
                match spawn(config).await {
                    Ok(handle) => {
                        let mut stop = handle.shutdown.subscribe();
                        if tx.send(Ok(handle)).is_ok() {
                            // Returns when the handle signals shutdown or is dropped.
                            let _ = stop.changed().await;
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                    }
                }
            });
        })
        .map_err(SpawnError::Runtime)?;
    rx.recv().map_err(|_| {
        SpawnError::Runtime(std::io::Error::other(
            "emulator thread exited before starting",
        ))
    })?
}

/// Start an emulator on the current tokio runtime.
///
/// Binds `config.listen` (default `127.0.0.1:0`), generates a CA and server certificate, writes
/// the CA to `config.ca_file` (or a temporary file) and serves until the handle is dropped.
pub async fn spawn(config: EmulatorConfig) -> Result<EmulatorHandle, SpawnError> {
    tls::install_ring_provider();
    let specs = Specs::load()?;
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| SpawnError::Bind {
            addr: config.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| SpawnError::Bind {
        addr: config.listen,
        source,
    })?;
    let material = tls::generate(&config.tls_names)?;
    let (ca_file, ca_dir) = match &config.ca_file {
        Some(p) => (p.clone(), None),
        None => {
            let dir = tempfile::Builder::new()
                .prefix("azureml-emulator-")
                .tempdir()
                .map_err(|source| SpawnError::CaFile {
                    path: std::env::temp_dir(),
                    source,
                })?;
            (dir.path().join("ca.pem"), Some(dir))
        }
    };
    std::fs::write(&ca_file, &material.ca_pem).map_err(|source| SpawnError::CaFile {
        path: ca_file.clone(),
        source,
    })?;
    let base_url = base_url_for(addr);
    let app = Arc::new(App::new(
        config.clone(),
        specs,
        base_url.clone(),
        material.ca_pem.clone(),
    ));
    let router = Router::new().fallback(crate::app::handle).with_state(app);
    let (shutdown, rx) = watch::channel(false);
    let acceptor = TlsAcceptor::from(material.server_config);
    let task = tokio::spawn(serve(listener, acceptor, router, rx));
    Ok(EmulatorHandle {
        base_url,
        addr,
        ca_pem: material.ca_pem,
        ca_file,
        _ca_dir: ca_dir,
        shutdown,
        task: Some(task),
        config,
    })
}

async fn serve(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    router: Router,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            _ = shutdown.changed() => break,
            a = listener.accept() => a,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Typically EMFILE; back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let acceptor = acceptor.clone();
        let router = router.clone();
        let mut stop = shutdown.clone();
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream))
                .await
            {
                Ok(Ok(s)) => s,
                _ => return,
            };
            let svc = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
                let router = router.clone();
                async move {
                    let resp = match router.oneshot(req.map(Body::new)).await {
                        Ok(r) => r,
                        Err(never) => match never {},
                    };
                    if resp.extensions().get::<DropConnection>().is_some() {
                        // An error from the service makes hyper close the connection (HTTP/1)
                        // or reset the stream (HTTP/2) without an answer.
                        Err(std::io::Error::new(
                            std::io::ErrorKind::ConnectionAborted,
                            "fault: drop",
                        ))
                    } else {
                        Ok(resp)
                    }
                }
            });
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            let conn = builder.serve_connection(TokioIo::new(tls), svc);
            tokio::select! {
                _ = conn => {}
                _ = stop.changed() => {}
            }
        });
    }
}
