//! Shutdown signals: SIGTERM (Kubernetes stopping the pod) and SIGINT (Ctrl-C).

/// Which signal arrived.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    /// SIGTERM.
    Terminate,
    /// SIGINT.
    Interrupt,
}

/// Completes when SIGTERM or SIGINT arrives.
///
/// If a handler cannot be installed (no signal support), that signal is never reported
/// rather than shutting down at once.
pub async fn signal() -> Signal {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).ok();
        let term = async {
            match term.as_mut() {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = term => Signal::Terminate,
            _ = ctrl_c() => Signal::Interrupt,
        }
    }
    #[cfg(not(unix))]
    {
        ctrl_c().await;
        Signal::Interrupt
    }
}

async fn ctrl_c() {
    if tokio::signal::ctrl_c().await.is_err() {
        std::future::pending::<()>().await;
    }
}
