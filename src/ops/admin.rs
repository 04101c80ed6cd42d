//! The admin HTTP server on `--admin-addr`: `/healthz` (the process is alive), `/readyz`
//! (caches synced; set by the controller), `/metrics` (OpenMetrics text).
//!
//! Plain HTTP on purpose: kubelet probes and Prometheus scrape it inside the cluster, and it
//! exposes nothing secret.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;

use super::metrics::Metrics;

/// OpenMetrics content type.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Readiness and liveness, shared by the controller and the server; cheap to clone.
///
/// Ready = every store has listed once *and* the API server answers. An unreachable API server
/// makes the process not ready but keeps it live: it waits the outage out (watches back off and
/// resume) instead of exiting into a restart back-off. Only an outage longer than the
/// configured limit fails `/healthz`, so the kubelet restarts a process that may be wedged.
#[derive(Clone, Debug)]
pub struct Readiness(Arc<Flags>);

#[derive(Debug)]
struct Flags {
    synced: AtomicBool,
    api_down_since: Mutex<Option<Instant>>,
    outage_limit: Duration,
}

impl Default for Readiness {
    fn default() -> Self {
        Self::with_outage_limit(Duration::from_secs(300))
    }
}

impl Readiness {
    /// Not ready; live through API-server outages of up to 5 minutes.
    pub fn new() -> Self {
        Self::default()
    }

    /// Not ready; `/healthz` fails once the API server was unreachable for longer than `limit`.
    pub fn with_outage_limit(limit: Duration) -> Self {
        Self(Arc::new(Flags {
            synced: AtomicBool::new(false),
            api_down_since: Mutex::new(None),
            outage_limit: limit,
        }))
    }

    /// Sets the flag (true once the controller's caches have synced).
    pub fn set_ready(&self, ready: bool) {
        self.0.synced.store(ready, Ordering::Release);
    }

    /// Records whether the last call to the API server got an answer. The first failure of an
    /// outage is logged; so is the recovery.
    pub fn api_reachable(&self, reachable: bool) {
        let mut since = self
            .0
            .api_down_since
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match (reachable, *since) {
            (true, Some(t)) => {
                tracing::info!(outage = ?t.elapsed(), "the API server answers again");
                *since = None;
            }
            (false, None) => {
                tracing::warn!("the API server is unreachable: not ready, retrying with back-off");
                *since = Some(Instant::now());
            }
            _ => {}
        }
    }

    fn api_down_for(&self) -> Option<Duration> {
        self.0
            .api_down_since
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .map(|t| t.elapsed())
    }

    /// Ready: synced and the API server answers.
    pub fn is_ready(&self) -> bool {
        self.0.synced.load(Ordering::Acquire) && self.api_down_for().is_none()
    }

    /// Live unless the API server has been unreachable for longer than the limit.
    pub fn is_live(&self) -> bool {
        self.api_down_for().is_none_or(|d| d <= self.0.outage_limit)
    }
}

#[derive(Clone)]
struct AdminState {
    metrics: Arc<Metrics>,
    readiness: Readiness,
}

/// The admin router (exposed for tests).
pub fn router(metrics: Arc<Metrics>, readiness: Readiness) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/livez", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_handler))
        .with_state(AdminState { metrics, readiness })
}

async fn healthz(State(state): State<AdminState>) -> Response {
    if state.readiness.is_live() {
        (StatusCode::OK, "ok\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "the API server has been unreachable for longer than --apiserver-outage-limit\n",
        )
            .into_response()
    }
}

async fn readyz(State(state): State<AdminState>) -> Response {
    if state.readiness.is_ready() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n").into_response()
    }
}

async fn metrics_handler(State(state): State<AdminState>) -> Response {
    match state.metrics.encode() {
        Ok(body) => ([(header::CONTENT_TYPE, OPENMETRICS)], body).into_response(),
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "cannot encode metrics\n").into_response(),
    }
}

/// A bound admin server, not yet serving (so the caller can log the real address first).
pub struct AdminServer {
    listener: TcpListener,
    router: Router,
}

impl AdminServer {
    /// Binds `addr` (port 0 picks a free port).
    pub async fn bind(
        addr: SocketAddr,
        metrics: Arc<Metrics>,
        readiness: Readiness,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        Ok(Self {
            listener,
            router: router(metrics, readiness),
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` completes.
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        axum::serve(self.listener, self.router)
            .with_graceful_shutdown(shutdown)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outage_longer_than_the_limit_fails_liveness() {
        let r = Readiness::with_outage_limit(Duration::ZERO);
        assert!(r.is_live());
        r.api_reachable(false);
        std::thread::sleep(Duration::from_millis(5));
        assert!(!r.is_live() && !r.is_ready());
        r.api_reachable(true);
        assert!(r.is_live());
    }
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn get(addr: SocketAddr, path: &str) -> String {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut out = String::new();
        stream.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn health_readiness_and_metrics() {
        let metrics = Arc::new(Metrics::new());
        metrics.arm_throttled("read");
        let readiness = Readiness::new();
        let server = AdminServer::bind("127.0.0.1:0".parse().unwrap(), metrics, readiness.clone())
            .await
            .unwrap();
        let addr = server.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(server.serve(async move {
            let _ = stopped.await;
        }));

        assert!(get(addr, "/healthz").await.starts_with("HTTP/1.1 200"));
        assert!(get(addr, "/readyz").await.starts_with("HTTP/1.1 503"));
        readiness.set_ready(true);
        assert!(get(addr, "/readyz").await.starts_with("HTTP/1.1 200"));
        // An API-server outage: not ready, still live (below the limit).
        readiness.api_reachable(false);
        assert!(get(addr, "/readyz").await.starts_with("HTTP/1.1 503"));
        assert!(get(addr, "/healthz").await.starts_with("HTTP/1.1 200"));
        readiness.api_reachable(true);
        assert!(get(addr, "/readyz").await.starts_with("HTTP/1.1 200"));
        let metrics = get(addr, "/metrics").await;
        assert!(
            metrics.contains("application/openmetrics-text"),
            "{metrics}"
        );
        assert!(
            metrics.contains("azureml_attach_arm_throttled_total{class=\"read\"} 1"),
            "{metrics}"
        );

        stop.send(()).unwrap();
        task.await.unwrap().unwrap();
    }
}
