//! Executing, the third step of a pass: carries out one [`Decision`] with at most one Azure call
//! and returns what happened as a typed [`Outcome`]. It decides nothing: every status field,
//! condition and event comes from `settle`.

use std::time::Duration;

use crate::api::{DeletionPolicy, PendingOperation, TargetStatus};
use crate::azure::{ArmError, ArmErrorKind, Lro};
use crate::controller::conditions::{Reason, now};
use crate::controller::connect::workspace_ref;
use crate::controller::error::chain;
use crate::controller::plan::{AttachCause, Decision};
use crate::controller::secrets::{Credential, not_opted_in_message};
use crate::controller::settle::{DEFAULT_POLL, Outcome, PreflightResult, PutAnswer};
use crate::controller::target::{AttachTarget, BuildError, PreflightRead, attach_body};

use super::Pass;
use super::observe::{azure_view, summarize};

impl<K: AttachTarget> Pass<'_, K> {
    pub(super) async fn execute(&mut self, decision: Decision, status: &TargetStatus) -> Outcome {
        match decision {
            Decision::Report { reason, message } => Outcome::Report { reason, message },
            Decision::Release { why } => Outcome::Release {
                why,
                orphan: self.obj.common().deletion_policy == DeletionPolicy::Orphan,
            },
            Decision::Adopt(c) => Outcome::Adopt(c),
            Decision::InSync(c) if c.is_terminal() => Outcome::InSync(c),
            azure => {
                // Every other decision needs a workspace that reached Azure.
                if let Err(outcome) = self.connect().await {
                    return outcome;
                }
                self.call(azure, status).await
            }
        }
    }

    /// Makes (once per pass) the ARM client of the target's workspace.
    async fn connect(&mut self) -> Result<(), Outcome> {
        if self.arm.is_some() {
            return Ok(());
        }
        let Some(ws) = self.workspace.clone() else {
            return Err(Outcome::Report {
                reason: Reason::WorkspaceNotFound,
                message: "the MLWorkspace disappeared".into(),
            });
        };
        let connection = if self.deleting {
            self.ctx.arm.arm_for_detach(&ws).await
        } else {
            self.ctx.arm.arm_for(&ws).await
        };
        let arm = connection.map_err(Outcome::ConnectFailed)?;
        self.arm = Some((arm, workspace_ref(&ws)));
        Ok(())
    }

    async fn call(&mut self, decision: Decision, status: &TargetStatus) -> Outcome {
        let Some((arm, wsr)) = self.arm.clone() else {
            return Outcome::Report {
                reason: Reason::WorkspaceNotFound,
                message: "the MLWorkspace disappeared".into(),
            };
        };
        let name = self.compute_name;
        match decision {
            Decision::NeedAzureView => match self.ctx.cache.get(&arm, &wsr).await {
                Ok(list) => Outcome::Listed(azure_view(self.obj, name, &list)),
                Err(e) => {
                    tracing::info!(error = %chain(&e), "the workspace LIST failed");
                    Outcome::ListFailed(e)
                }
            },
            Decision::Poll(op) => self.poll(&arm, op).await,
            Decision::Attach { cause } => self.attach(&arm, &wsr, cause).await,
            Decision::Preflight => match self.preflight(&arm).await {
                Ok(result) => Outcome::Preflight(result),
                Err(e) => Outcome::ArmFailed(e),
            },
            Decision::Detach { reattach } => match arm.detach_compute(&wsr, name).await {
                Ok(outcome) => Outcome::Detach { reattach, outcome },
                Err(e) => Outcome::ArmFailed(e),
            },
            // Still provisioning: the cached view is stale, one GET of this compute alone.
            Decision::InSync(_) => match arm.get_compute(&wsr, name).await {
                Ok(fresh) => Outcome::Refreshed(fresh.map(|c| summarize::<K>(self.obj, &c))),
                Err(e) => Outcome::ArmFailed(e),
            },
            Decision::WriteConnection(compute) => Outcome::Connection {
                result: self.write_connection(&arm, &wsr, status).await,
                compute,
            },
            // Answered without a call by `execute`.
            Decision::Report { reason, message } => Outcome::Report { reason, message },
            Decision::Release { why } => Outcome::Release {
                why,
                orphan: self.obj.common().deletion_policy == DeletionPolicy::Orphan,
            },
            Decision::Adopt(c) => Outcome::Adopt(c),
        }
    }

    async fn poll(&self, arm: &crate::azure::ArmClient, op: PendingOperation) -> Outcome {
        if let Some(at) = &op.next_poll_at {
            let wait = at.0.duration_since(now().0);
            if wait.is_positive() {
                // Woken early by an unrelated event (e.g. our own status write): no ARM call.
                return Outcome::PollNotDue(Duration::try_from(wait).unwrap_or(DEFAULT_POLL));
            }
        }
        match arm.poll_operation(&op.url).await {
            Ok(status) => Outcome::Polled {
                op,
                status: Box::new(status),
            },
            Err(ArmError::NotFound { .. }) => Outcome::OperationGone,
            Err(e) => Outcome::ArmFailed(e),
        }
    }

    async fn attach(
        &self,
        arm: &crate::azure::ArmClient,
        wsr: &crate::azure::WorkspaceRef,
        cause: AttachCause,
    ) -> Outcome {
        // Rule 10: Secret data is read here, right before the PUT, and dropped after it.
        let secret = match self.obj.secret_name() {
            Some(name) => match self.ctx.secrets.read_credential(&self.ns, name).await {
                Ok(Ok(d)) => Some(d),
                Ok(Err(Credential::NotOptedIn)) => {
                    return blocked(Reason::SecretNotLabeled, not_opted_in_message(name));
                }
                Ok(Err(_)) => {
                    return blocked(
                        Reason::SecretNotFound,
                        format!("Secret {name:?} does not exist"),
                    );
                }
                Err(e) => return blocked(Reason::AzureError, chain(&e)),
            },
            None => None,
        };
        let location = self
            .workspace
            .as_deref()
            .and_then(|ws| ws.status.as_ref())
            .and_then(|s| s.location.clone());
        let body = match attach_body(self.obj, secret.as_ref(), location) {
            Ok(b) => b,
            Err(
                e @ (BuildError::SecretKeyMissing { .. } | BuildError::SecretKeyNotText { .. }),
            ) => return blocked(Reason::SecretKeyMissing, e.to_string()),
            Err(e @ BuildError::InvalidSpec(_)) => {
                return blocked(Reason::InvalidSpec, e.to_string());
            }
        };
        drop(secret);
        let result = arm.put_compute(wsr, self.compute_name, &body).await;
        drop(body);
        match result {
            Ok(lro) => Outcome::Put {
                cause,
                answer: self.answer(lro),
            },
            Err(e) if e.kind() == ArmErrorKind::BadRequest => Outcome::PutRefused {
                type_refused: K::refuses_type(e.code()),
                message: chain(&e),
            },
            Err(e) => Outcome::ArmFailed(e),
        }
    }

    fn answer(&self, lro: Lro) -> PutAnswer {
        match lro {
            Lro::Done(resource) => PutAnswer::Done(summarize::<K>(self.obj, &resource)),
            Lro::InProgress {
                operation_url: Some(url),
                retry_after,
                ..
            } => PutAnswer::Operation { url, retry_after },
            Lro::InProgress {
                operation_url: None,
                retry_after,
                ..
            } => PutAnswer::NoOperation { retry_after },
        }
    }
}

impl<K: AttachTarget> Pass<'_, K> {
    /// Rule 13: the reads of the underlying resource, through the same throttled client, and
    /// the pure checks of `azure::prerequisites`.
    async fn preflight(&self, arm: &crate::azure::ArmClient) -> Result<PreflightResult, ArmError> {
        use crate::azure::prerequisites as check;
        let Some(read) = self.obj.preflight_read() else {
            return Ok(PreflightResult::Passed);
        };
        let outcome = |r: Result<(), crate::azure::Unmet>| match r {
            Ok(()) => PreflightResult::Passed,
            Err(u) => PreflightResult::Unmet(u),
        };
        let missing = |what: &str, id: &str| PreflightResult::NotFound(format!("{what} {id}"));
        Ok(match read {
            PreflightRead::VirtualMachine(id) => match arm.get_vm_with_network(&id).await? {
                None => missing("the virtual machine", &id),
                Some(v) => outcome(check::vm_check(&v.vm, v.nic.as_ref(), v.public_ip.as_ref())),
            },
            PreflightRead::HdInsight(id) => match arm.get_hdinsight_cluster(&id).await? {
                None => missing("the HDInsight cluster", &id),
                Some(c) => outcome(check::hdinsight_check(&c)),
            },
            // The extensions LIST answers 404 for a missing cluster: one read, not two.
            PreflightRead::Kubernetes(id) => match arm.list_cluster_extensions(&id).await? {
                None => missing("the Kubernetes cluster", &id),
                Some(extensions) => outcome(check::kubernetes_check(&id, &extensions)),
            },
            PreflightRead::SynapsePool(id) => match arm.get_synapse_pool(&id).await? {
                None => missing("the Synapse Spark pool", &id),
                Some(p) => outcome(check::synapse_pool_check(&p)),
            },
        })
    }
}

fn blocked(reason: Reason, message: String) -> Outcome {
    Outcome::AttachBlocked { reason, message }
}
