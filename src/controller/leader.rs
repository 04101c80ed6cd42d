//! Leader election on a `coordination.k8s.io/v1` Lease: simple, optimistic-concurrency
//! acquire/renew (no dependency on crates that lag kube's major version).

use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease as LeaseObject, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};

const LEASE_SECONDS: i32 = 15;
const RETRY: Duration = Duration::from_secs(2);
const RENEW: Duration = Duration::from_secs(5);

/// A named Lease this process competes for.
pub struct Lease {
    api: Api<LeaseObject>,
    name: String,
    identity: String,
}

impl Lease {
    /// A Lease `name` in `namespace`, held as `identity`.
    pub fn new(client: Client, namespace: &str, name: &str, identity: &str) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            name: name.to_owned(),
            identity: identity.to_owned(),
        }
    }

    /// Waits until this process holds the lease. API errors (an unreachable API server) are
    /// retried: a standby waits an outage out instead of exiting.
    pub async fn acquire(&self) {
        loop {
            match self.try_acquire().await {
                Ok(true) => return,
                Ok(false) => {}
                Err(error) => tracing::warn!(%error, "cannot read the lease; retrying"),
            }
            tokio::time::sleep(RETRY).await;
        }
    }

    /// Renews the lease until `stop` completes (then releases it) or it is lost: another
    /// holder took it, or no renewal succeeded for a whole lease duration (then a standby may
    /// already lead, so this process must stop acting).
    pub async fn hold(self, stop: impl Future<Output = ()> + Send + 'static) {
        tokio::pin!(stop);
        let mut renewed = std::time::Instant::now();
        let lease = Duration::from_secs(LEASE_SECONDS.unsigned_abs().into());
        loop {
            tokio::select! {
                _ = &mut stop => {
                    self.release().await;
                    return;
                }
                _ = tokio::time::sleep(RENEW) => {
                    match self.try_acquire().await {
                        Ok(true) => renewed = std::time::Instant::now(),
                        Ok(false) => return,
                        Err(error) if renewed.elapsed() >= lease => {
                            tracing::warn!(%error, "no lease renewal for a whole lease duration: stepping down");
                            return;
                        }
                        Err(error) => {
                            tracing::warn!(%error, "cannot renew the lease");
                        }
                    }
                }
            }
        }
    }

    async fn try_acquire(&self) -> Result<bool, kube::Error> {
        let now = Timestamp::now();
        let spec = LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(LEASE_SECONDS),
            renew_time: Some(MicroTime(now)),
            ..Default::default()
        };
        match self.api.get_opt(&self.name).await? {
            None => {
                let lease = LeaseObject {
                    metadata: ObjectMeta {
                        name: Some(self.name.clone()),
                        ..Default::default()
                    },
                    spec: Some(LeaseSpec {
                        acquire_time: Some(MicroTime(now)),
                        ..spec
                    }),
                };
                match self.api.create(&PostParams::default(), &lease).await {
                    Ok(_) => Ok(true),
                    Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                    Err(e) => Err(e),
                }
            }
            Some(mut existing) => {
                let current = existing.spec.clone().unwrap_or_default();
                let mine = current.holder_identity.as_deref() == Some(self.identity.as_str());
                let expired = match (&current.renew_time, current.lease_duration_seconds) {
                    (Some(t), Some(d)) => t.0 + SignedDuration::from_secs(i64::from(d)) < now,
                    _ => true,
                };
                let free = current.holder_identity.as_deref().is_none_or(str::is_empty);
                if !(mine || expired || free) {
                    return Ok(false);
                }
                existing.spec = Some(LeaseSpec {
                    acquire_time: if mine {
                        current.acquire_time
                    } else {
                        Some(MicroTime(now))
                    },
                    lease_transitions: Some(
                        current.lease_transitions.unwrap_or(0) + i32::from(!mine),
                    ),
                    ..spec
                });
                // resourceVersion in metadata makes this an optimistic compare-and-swap.
                match self
                    .api
                    .replace(&self.name, &PostParams::default(), &existing)
                    .await
                {
                    Ok(_) => Ok(true),
                    Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                    Err(e) => Err(e),
                }
            }
        }
    }

    async fn release(&self) {
        if let Ok(Some(mut existing)) = self.api.get_opt(&self.name).await
            && let Some(spec) = existing.spec.as_mut()
            && spec.holder_identity.as_deref() == Some(self.identity.as_str())
        {
            spec.holder_identity = None;
            let _ = self
                .api
                .replace(&self.name, &PostParams::default(), &existing)
                .await;
        }
    }
}
