//! Waiting for a condition with a timeout.

use std::time::{Duration, Instant};

use crate::Error;

/// How often [`wait_for`] checks.
const INTERVAL: Duration = Duration::from_millis(100);

/// Calls `check` every 100 ms until it returns `Some`, and returns that value; fails with
/// [`Error::Timeout`] naming `what` after `timeout`. Needs a tokio runtime with timers.
///
/// ```no_run
/// # async fn f(secrets: kube::Api<k8s_openapi::api::core::v1::Secret>) -> Result<(), testenv::Error> {
/// use std::time::Duration;
/// testenv::wait_for("secret s to be deleted", Duration::from_secs(30), async || {
///     matches!(secrets.get_opt("s").await, Ok(None)).then_some(())
/// })
/// .await?;
/// # Ok(()) }
/// ```
pub async fn wait_for<T>(
    what: &str,
    timeout: Duration,
    mut check: impl AsyncFnMut() -> Option<T>,
) -> Result<T, Error> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return Ok(value);
        }
        if Instant::now() >= deadline {
            return Err(Error::Timeout {
                what: what.to_string(),
                after: timeout,
            });
        }
        tokio::time::sleep(INTERVAL).await;
    }
}
