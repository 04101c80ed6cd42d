//! The generic reconciler: gathers what planning needs, asks `plan`, and carries out the one
//! decision (Azure call, status write, event). Used by every target kind.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::ByteString;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{Event as FinalizerEvent, finalizer};
use kube::{Api, ResourceExt};
use secrecy::ExposeSecret;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::api::{
    DeletionPolicy, FIELD_MANAGER, FINALIZER, MLWorkspace, OperationKind, PendingOperation,
    ProvisioningError, TargetStatus,
};
use crate::azure::models::{
    Compute, ComputeProperties, ComputeResource, ComputeType, ErrorResponse, OperationState,
    VirtualMachineProperties,
};
use crate::azure::{ArmClient, ArmError, ArmErrorKind, DetachOutcome, Lro, WorkspaceRef};
use crate::controller::cache::same_name;
use crate::controller::claims::winner;
use crate::controller::conditions::{Reason, ready_condition, set_condition};
use crate::controller::context::{ConnectError, Context, workspace_ref};
use crate::controller::error::Error;
use crate::controller::events::EventReason;
use crate::controller::failure::{self, Failure};
use crate::controller::plan::{
    AttachCause, AzureView, ClaimState, ComputeSummary, Decision, Observed, SecretState,
    WorkspaceState, plan,
};
use crate::controller::secrets::{Credential, WriteOutcome, not_opted_in_message};
use crate::controller::target::{AttachTarget, BuildError, Underlying};

/// Default wait before polling an operation when Azure sends no Retry-After (FINDINGS §3).
const DEFAULT_POLL: Duration = Duration::from_secs(3);
/// Wait after a transient Azure error.
const TRANSIENT_RETRY: Duration = Duration::from_secs(15);

/// Entry point for `Controller::run`: finalizer handling around [`reconcile_inner`].
#[tracing::instrument(skip_all, fields(kind = K::KIND, namespace = obj.namespace().unwrap_or_default(), name = obj.name_any()))]
pub async fn reconcile<K: AttachTarget>(obj: Arc<K>, ctx: Arc<Context>) -> Result<Action, Error> {
    // A target is judged only against stores that have listed once (a restart must not see a
    // workspace, Secret or older claim as missing just because its watch has not caught up).
    ctx.synced.wait().await;
    let started = Instant::now();
    let ns = obj.namespace().ok_or(Error::MissingNamespace)?;
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &ns);
    let workspace = obj.common().workspace_ref.name.clone();
    let released = AtomicBool::new(false);
    let result = finalizer(&api, FINALIZER, obj, |event| async {
        match event {
            FinalizerEvent::Apply(o) => reconcile_inner(o.as_ref(), &ctx, false)
                .await
                .map(|s| s.action),
            FinalizerEvent::Cleanup(o) => {
                let step = reconcile_inner(o.as_ref(), &ctx, true).await?;
                // Ok from a cleanup removes the finalizer, so "not done yet" travels as an error.
                if step.done {
                    released.store(true, Ordering::Relaxed);
                    Ok(step.action)
                } else {
                    Err(Error::InProgress(step.requeue))
                }
            }
        }
    })
    .await
    .or_else(|e| match e {
        // A second cleanup pass from a stale cache entry: the first one already removed the
        // finalizer and the object is gone, which is exactly the outcome we wanted.
        kube::runtime::finalizer::Error::RemoveFinalizer(kube::Error::Api(status))
            if status.is_not_found() =>
        {
            Ok(Action::await_change())
        }
        other => Err(Error::Finalizer(Box::new(other))),
    });
    if result.is_ok() && released.load(Ordering::Relaxed) {
        // The finalizer is gone: a workspace being deleted may be waiting for exactly this.
        ctx.target_released(&ns, &workspace);
    }
    let ok = result.is_ok() || matches!(&result, Err(e) if e.is_in_progress());
    ctx.metrics
        .reconcile_finished(K::KIND, ok, started.elapsed());
    result
}

/// `error_policy` for every target controller: the delay comes from the error kind.
pub fn error_policy<K: AttachTarget>(obj: Arc<K>, error: &Error, ctx: Arc<Context>) -> Action {
    if let Some(d) = error.in_progress() {
        return Action::requeue(d);
    }
    tracing::warn!(kind = K::KIND, name = obj.name_any(), error = %crate::controller::error::chain(error), "reconcile failed");
    ctx.metrics.reconcile_error(K::KIND, error.metric_label());
    Action::requeue(error.retry_delay())
}

/// Whether the connection Secret the spec asks for is in place.
enum ConnectionSecret {
    /// Written (or none asked for).
    Done,
    /// A Secret of that name belongs to someone else (the condition message).
    Conflict(String),
}

/// What one pass decided about requeueing.
struct Step {
    done: bool,
    requeue: Duration,
    action: Action,
}

impl Step {
    fn after(d: Duration) -> Self {
        Step {
            done: false,
            requeue: d,
            action: Action::requeue(d),
        }
    }
    fn done() -> Self {
        Step {
            done: true,
            requeue: Duration::ZERO,
            action: Action::await_change(),
        }
    }
}

/// Working state of one reconcile pass.
struct Pass<'a, K: AttachTarget> {
    obj: &'a K,
    ctx: &'a Context,
    ns: String,
    compute_name: String,
    old: TargetStatus,
    status: TargetStatus,
    deleting: bool,
}

async fn reconcile_inner<K: AttachTarget>(
    obj: &K,
    ctx: &Context,
    deleting: bool,
) -> Result<Step, Error> {
    let ns = obj.namespace().ok_or(Error::MissingNamespace)?;
    let uid = obj.uid().ok_or(Error::MissingNamespace)?;
    let old = ctx.fresh_status(&uid, obj.target_status());
    let mut status = old.clone();
    let compute_name = obj.compute_name();
    status.compute_name = Some(compute_name.clone());
    let mut pass = Pass {
        obj,
        ctx,
        ns,
        compute_name,
        old,
        status,
        deleting,
    };
    let step = pass.run().await?;
    pass.write_status().await?;
    ctx.remember_status(
        &uid,
        (!(step.done && deleting)).then(|| pass.status.clone()),
    );
    Ok(step)
}

impl<K: AttachTarget> Pass<'_, K> {
    async fn run(&mut self) -> Result<Step, Error> {
        let common = self.obj.common();
        let ws_obj = self.ctx.workspace(&self.ns, &common.workspace_ref.name);
        let workspace = workspace_state(ws_obj.as_deref(), self.deleting);
        let claim = self.claim_state();
        let (secret, secret_rv) = self.secret_state().await?;
        let desired_hash = config_hash::<K>(self.obj, secret_rv.as_deref());
        let status_snapshot = self.status.clone();
        let mut observed = Observed {
            deleting: self.deleting,
            deletion_policy: common.deletion_policy,
            status: &status_snapshot,
            workspace,
            claim,
            secret,
            desired_hash: &desired_hash,
            azure: None,
        };
        loop {
            let decision = plan(&observed);
            tracing::debug!(?decision, "planned");
            // Every decision past this point needs a workspace that reached Azure.
            let ws = match (&decision, &ws_obj) {
                (Decision::Report { reason, message }, _) => {
                    return Ok(self.report(*reason, message.clone()).await);
                }
                (Decision::Release { why }, _) => {
                    let why = *why;
                    return Ok(self.release(why).await);
                }
                (_, Some(ws)) => ws.clone(),
                (_, None) => {
                    return Ok(self
                        .report(
                            Reason::WorkspaceNotFound,
                            "the MLWorkspace disappeared".into(),
                        )
                        .await);
                }
            };
            let connection = if self.deleting {
                self.ctx.arm_for_detach(&ws).await
            } else {
                self.ctx.arm_for(&ws).await
            };
            let arm = match connection {
                Ok(a) => a,
                Err(e) => return Ok(self.connect_failed(e).await),
            };
            let wsr = workspace_ref(&ws);
            let result = match decision {
                Decision::NeedAzureView => match self.ctx.cache.get(&arm, &wsr).await {
                    Ok(list) => {
                        observed.azure = Some(azure_view(self.obj, &self.compute_name, &list));
                        continue;
                    }
                    Err(e) => Err(e),
                },
                Decision::Poll(op) => {
                    self.poll(&arm, &wsr, &ws, op, &desired_hash, secret_rv.as_deref())
                        .await
                }
                Decision::Attach { cause } => {
                    self.attach(&arm, &wsr, &ws, cause, &desired_hash, secret_rv.as_deref())
                        .await
                }
                Decision::Detach { reattach } => {
                    self.detach(
                        &arm,
                        &wsr,
                        &ws,
                        reattach,
                        &desired_hash,
                        secret_rv.as_deref(),
                    )
                    .await
                }
                Decision::Adopt(c) => {
                    self.status.attached_config_hash = Some(desired_hash.clone());
                    self.status.secret_resource_version = secret_rv.clone();
                    self.ctx
                        .event(
                            self.obj,
                            EventReason::Adopted,
                            format!("adopted existing compute {:?}", self.compute_name),
                        )
                        .await;
                    self.in_sync(&arm, &wsr, c).await
                }
                Decision::InSync(c) => self.in_sync(&arm, &wsr, c).await,
                Decision::Report { .. } | Decision::Release { .. } => unreachable_step(),
            };
            return match result {
                Ok(step) => Ok(step),
                Err(e) => Ok(self.arm_failed(&wsr, e).await),
            };
        }
    }

    fn claim_state(&self) -> ClaimState {
        let Some(mine) = self.ctx.claim_of(self.obj) else {
            return ClaimState::Winner;
        };
        let all = self.ctx.claims_on(&mine.resource);
        let w = winner(&mine, &all);
        if w.uid == mine.uid {
            ClaimState::Winner
        } else {
            ClaimState::LosesTo(w.owner.clone())
        }
    }

    async fn secret_state(&self) -> Result<(SecretState, Option<String>), Error> {
        let Some(name) = self.obj.secret_name() else {
            return Ok((SecretState::NotNeeded, None));
        };
        // Metadata only (rule 10): the resourceVersion says whether it changed.
        Ok(
            match self
                .ctx
                .secrets
                .credential(&self.ns, name)
                .await
                .map_err(Error::Secret)?
            {
                Credential::OptedIn(rv) => (SecretState::Present, rv),
                Credential::NotOptedIn => (SecretState::NotOptedIn(name.to_owned()), None),
                Credential::Missing => (SecretState::Missing(name.to_owned()), None),
            },
        )
    }

    fn set_ready(&mut self, reason: Reason, message: impl Into<String>) {
        let previous = self.old.ready().cloned();
        let cond = ready_condition(
            previous.as_ref(),
            reason,
            message,
            self.obj.meta().generation,
            now(),
        );
        set_condition(&mut self.status.conditions, cond);
    }

    async fn report(&mut self, reason: Reason, message: String) -> Step {
        let changed = self.old.ready().is_none_or(|c| c.reason != reason.as_str());
        self.set_ready(reason, message.clone());
        if changed && !reason.is_ready() {
            self.ctx
                .event(self.obj, EventReason::Condition(reason), message)
                .await;
        }
        let resync = self.ctx.resync;
        Step::after(match reason {
            // Waiting on a person or on another object: watches bring us back on change.
            r if r.is_permanent() => resync.max(Duration::from_secs(300)),
            _ => resync,
        })
    }

    async fn release(&mut self, why: &'static str) -> Step {
        let orphan = self.obj.common().deletion_policy == DeletionPolicy::Orphan;
        let reason = if orphan {
            EventReason::Orphaned
        } else {
            EventReason::Released
        };
        self.ctx.event(self.obj, reason, why.to_owned()).await;
        Step::done()
    }

    async fn connect_failed(&mut self, e: ConnectError) -> Step {
        let failure = failure::connect_for_target(&e, self.ctx.resync);
        let msg = match failure.reason {
            Reason::WorkspaceNotReady => {
                format!("the MLWorkspace's credential is unusable: {e}")
            }
            _ => crate::controller::error::chain(&e),
        };
        self.report(failure.reason, msg).await
    }

    /// Maps an ARM error to a condition and a delay (rule 11, one table in `failure.rs`).
    async fn arm_failed(&mut self, wsr: &WorkspaceRef, e: ArmError) -> Step {
        let msg = crate::controller::error::chain(&e);
        let Failure { reason, delay } = failure::arm(&e, self.ctx.resync);
        if reason == Reason::WorkspaceNotFound {
            self.ctx.cache.invalidate(wsr).await;
        }
        let changed = self.old.ready().is_none_or(|c| c.reason != reason.as_str());
        self.set_ready(reason, msg.clone());
        if changed {
            self.ctx
                .event(self.obj, EventReason::Condition(reason), msg)
                .await;
        }
        Step::after(delay)
    }

    async fn poll(
        &mut self,
        arm: &ArmClient,
        wsr: &WorkspaceRef,
        ws: &MLWorkspace,
        op: PendingOperation,
        desired_hash: &str,
        secret_rv: Option<&str>,
    ) -> Result<Step, ArmError> {
        if let Some(at) = &op.next_poll_at {
            let wait = at.0.duration_since(now().0);
            if wait.is_positive() {
                // Woken early by an unrelated event (e.g. our own status write): no ARM call.
                return Ok(Step::after(
                    Duration::try_from(wait).unwrap_or(DEFAULT_POLL),
                ));
            }
        }
        let status = match arm.poll_operation(&op.url).await {
            Ok(s) => s,
            Err(ArmError::NotFound { .. }) => {
                // The operation record expired: forget it and plan again from the LIST.
                self.status.operation = None;
                self.ctx.cache.invalidate(wsr).await;
                return Ok(Step::after(Duration::from_secs(1)));
            }
            Err(e) => return Err(e),
        };
        let in_progress_reason = match (op.kind, op.reattach) {
            (_, true) => Reason::Reattaching,
            (OperationKind::Attach, false) => Reason::Attaching,
            (OperationKind::Detach, false) => Reason::Detaching,
        };
        match status.status {
            OperationState::Succeeded => {}
            OperationState::Failed | OperationState::Canceled => {
                self.status.operation = None;
                let err = status.error.clone();
                let errors: Vec<ProvisioningError> = err
                    .iter()
                    .map(|e| ProvisioningError {
                        code: e.code.clone().unwrap_or_default(),
                        message: e.message.clone().unwrap_or_default(),
                    })
                    .collect();
                let detail = errors
                    .iter()
                    .map(|e| format!("{}: {}", e.code, e.message))
                    .collect::<Vec<_>>()
                    .join("; ");
                return Ok(match op.kind {
                    OperationKind::Attach => {
                        self.status.attached_config_hash = op.config_hash.clone();
                        self.status.rejected_config_hash = op.config_hash.clone();
                        self.status.provisioning_state = Some(status.status.as_str().to_owned());
                        self.status.provisioning_errors = errors;
                        self.report(
                            Reason::ProvisioningFailed,
                            format!("Azure could not attach the compute: {detail}"),
                        )
                        .await
                    }
                    OperationKind::Detach => {
                        let step = self
                            .report(Reason::AzureError, format!("the detach failed: {detail}"))
                            .await;
                        Step::after(step.requeue.min(Duration::from_secs(60)))
                    }
                });
            }
            _ => {
                self.set_ready(
                    in_progress_reason,
                    format!("waiting for Azure ({:?} in progress)", op.kind),
                );
                let delay = poll_delay(status.retry_after);
                if let Some(pending) = self.status.operation.as_mut() {
                    pending.next_poll_at = Some(after(delay));
                }
                return Ok(Step::after(delay));
            }
        }
        // Succeeded.
        self.status.operation = None;
        match op.kind {
            OperationKind::Attach => {
                let hash = op
                    .config_hash
                    .clone()
                    .unwrap_or_else(|| desired_hash.to_owned());
                self.attached(wsr, hash, "Succeeded").await;
                Ok(self.after_attached(arm, wsr).await)
            }
            OperationKind::Detach => {
                self.ctx.cache.remove(wsr, &self.compute_name).await;
                self.status.provisioning_state = None;
                if op.reattach && !self.deleting {
                    return self
                        .attach(arm, wsr, ws, AttachCause::Reattach, desired_hash, secret_rv)
                        .await;
                }
                self.detached().await;
                Ok(Step::done())
            }
        }
    }

    async fn detached(&mut self) {
        // Forget the attachment in status too: a reconcile that still sees the finalizer
        // (stale cache) then releases instead of detaching again.
        self.status.compute_id = None;
        self.status.attached_config_hash = None;
        self.status.connection_secret_hash = None;
        self.status.connection_secret_name = None;
        self.ctx
            .event(
                self.obj,
                EventReason::Detached,
                format!(
                    "detached compute {:?} (underlyingResourceAction=Detach)",
                    self.compute_name
                ),
            )
            .await;
    }

    /// Records a finished attach and writes it through to the LIST cache.
    async fn attached(&mut self, wsr: &WorkspaceRef, hash: String, state: &str) {
        self.status.attached_config_hash = Some(hash);
        self.status.rejected_config_hash = None;
        self.status.provisioning_state = Some(state.to_owned());
        self.status.provisioning_errors.clear();
        self.status.compute_id = Some(wsr.compute_id(&self.compute_name));
        let compute = synthetic_compute::<K>(self.obj, &self.compute_name, state);
        self.ctx
            .cache
            .upsert(wsr, &self.compute_name, compute)
            .await;
    }

    async fn after_attached(&mut self, arm: &ArmClient, wsr: &WorkspaceRef) -> Step {
        // Ready=True only once the connection Secret the spec asks for is written (rule 12).
        match self.sync_connection_secret(arm, wsr).await {
            Ok(ConnectionSecret::Done) => {}
            Ok(ConnectionSecret::Conflict(message)) => {
                return self.report(Reason::ConnectionSecretConflict, message).await;
            }
            Err(e) => {
                let message = format!(
                    "the compute is attached, but the connection Secret could not be written: {}",
                    crate::controller::error::chain(&e)
                );
                let step = self.report(Reason::ConnectionSecretFailed, message).await;
                return Step::after(step.requeue.min(TRANSIENT_RETRY));
            }
        }
        let was_ready = self.old.ready().is_some_and(|c| c.status == "True");
        self.set_ready(
            Reason::Attached,
            format!("compute {:?} is attached and Succeeded", self.compute_name),
        );
        if !was_ready {
            self.ctx
                .event(
                    self.obj,
                    EventReason::Attached,
                    format!("compute {:?} attached", self.compute_name),
                )
                .await;
        }
        Step::after(self.ctx.resync)
    }

    async fn attach(
        &mut self,
        arm: &ArmClient,
        wsr: &WorkspaceRef,
        ws: &MLWorkspace,
        cause: AttachCause,
        desired_hash: &str,
        secret_rv: Option<&str>,
    ) -> Result<Step, ArmError> {
        // Rule 10: Secret data is read here, right before the PUT, and dropped after it.
        let secret = match self.obj.secret_name() {
            Some(name) => match self.ctx.secrets.read_credential(&self.ns, name).await {
                Ok(Ok(d)) => Some(d),
                Ok(Err(Credential::NotOptedIn)) => {
                    return Ok(self
                        .report(Reason::SecretNotLabeled, not_opted_in_message(name))
                        .await);
                }
                Ok(Err(_)) => {
                    return Ok(self
                        .report(
                            Reason::SecretNotFound,
                            format!("Secret {name:?} does not exist"),
                        )
                        .await);
                }
                Err(e) => {
                    return Ok(self
                        .report(Reason::AzureError, crate::controller::error::chain(&e))
                        .await);
                }
            },
            None => None,
        };
        let properties = match self.obj.build_properties(secret.as_ref()) {
            Ok(p) => p,
            Err(
                e @ (BuildError::SecretKeyMissing { .. } | BuildError::SecretKeyNotText { .. }),
            ) => {
                return Ok(self.report(Reason::SecretKeyMissing, e.to_string()).await);
            }
            Err(e @ BuildError::InvalidSpec(_)) => {
                return Ok(self.report(Reason::InvalidSpec, e.to_string()).await);
            }
        };
        drop(secret);
        let mut compute = Compute::new(K::compute_type(), self.obj.underlying().resource_id());
        compute.properties = properties;
        let body = ComputeResource {
            location: ws.status.as_ref().and_then(|s| s.location.clone()),
            properties: Some(compute),
            ..Default::default()
        };
        let result = arm.put_compute(wsr, &self.compute_name, &body).await;
        drop(body);
        let lro = match result {
            Ok(l) => l,
            Err(e) if e.kind() == ArmErrorKind::BadRequest => {
                // Permanent for this configuration: remember it so it is not PUT again (rule 11).
                self.status.rejected_config_hash = Some(desired_hash.to_owned());
                let refused_type = K::compute_type() == ComputeType::Batch
                    || e.code()
                        .is_some_and(|c| c.to_ascii_lowercase().contains("computetype"));
                let reason = if refused_type {
                    Reason::ComputeTypeRefused
                } else {
                    Reason::InvalidSpec
                };
                let msg = format!(
                    "Azure refused the attach: {}",
                    crate::controller::error::chain(&e)
                );
                return Ok(self.report(reason, msg).await);
            }
            Err(e) => return Err(e),
        };
        self.status.secret_resource_version = secret_rv.map(str::to_owned);
        let (event, verb) = match cause {
            AttachCause::Initial => (EventReason::Attaching, "attaching"),
            AttachCause::Reattach => (EventReason::Reattaching, "re-attaching after a change"),
            AttachCause::Drift => (
                EventReason::DriftRepaired,
                "re-attaching: the attachment vanished from the workspace",
            ),
        };
        self.ctx
            .event(
                self.obj,
                event,
                format!("{verb}: PUT compute {:?}", self.compute_name),
            )
            .await;
        match lro {
            Lro::Done(resource) => {
                let summary = summarize::<K>(self.obj, &resource);
                self.attached(
                    wsr,
                    desired_hash.to_owned(),
                    summary.provisioning_state.as_deref().unwrap_or("Succeeded"),
                )
                .await;
                self.in_sync(arm, wsr, summary).await
            }
            Lro::InProgress {
                operation_url: Some(url),
                retry_after,
                ..
            } => {
                self.status.operation = Some(PendingOperation {
                    kind: OperationKind::Attach,
                    url,
                    reattach: cause == AttachCause::Reattach,
                    config_hash: Some(desired_hash.to_owned()),
                    started_at: Some(now()),
                    next_poll_at: Some(after(poll_delay(retry_after))),
                });
                self.status.provisioning_state = Some("Creating".to_owned());
                self.status.compute_id = Some(wsr.compute_id(&self.compute_name));
                let reason = if cause == AttachCause::Reattach {
                    Reason::Reattaching
                } else {
                    Reason::Attaching
                };
                self.set_ready(reason, "Azure accepted the attach; provisioning".to_owned());
                Ok(Step::after(poll_delay(retry_after)))
            }
            Lro::InProgress {
                operation_url: None,
                retry_after,
                ..
            } => {
                // No operation URL: follow provisioningState with GETs (in_sync refreshes).
                self.attached(wsr, desired_hash.to_owned(), "Creating")
                    .await;
                self.set_ready(
                    Reason::Attaching,
                    "Azure accepted the attach; provisioning".to_owned(),
                );
                Ok(Step::after(poll_delay(retry_after)))
            }
        }
    }

    async fn detach(
        &mut self,
        arm: &ArmClient,
        wsr: &WorkspaceRef,
        ws: &MLWorkspace,
        reattach: bool,
        desired_hash: &str,
        secret_rv: Option<&str>,
    ) -> Result<Step, ArmError> {
        let outcome = arm.detach_compute(wsr, &self.compute_name).await?;
        if reattach {
            self.ctx
                .event(
                    self.obj,
                    EventReason::Reattaching,
                    "a setting Azure cannot update in place changed: detaching, then attaching again".to_owned(),
                )
                .await;
        }
        match outcome {
            DetachOutcome::Done
            | DetachOutcome::Absent
            | DetachOutcome::InProgress {
                operation_url: None,
                ..
            } => {
                self.ctx.cache.remove(wsr, &self.compute_name).await;
                self.status.operation = None;
                self.status.provisioning_state = None;
                if reattach {
                    return self
                        .attach(arm, wsr, ws, AttachCause::Reattach, desired_hash, secret_rv)
                        .await;
                }
                self.detached().await;
                Ok(Step::done())
            }
            DetachOutcome::InProgress {
                operation_url: Some(url),
                retry_after,
            } => {
                self.status.operation = Some(PendingOperation {
                    kind: OperationKind::Detach,
                    url,
                    reattach,
                    config_hash: None,
                    started_at: Some(now()),
                    next_poll_at: Some(after(poll_delay(retry_after))),
                });
                self.status.provisioning_state = Some("Deleting".to_owned());
                let reason = if reattach {
                    Reason::Reattaching
                } else {
                    Reason::Detaching
                };
                self.set_ready(
                    reason,
                    "Azure accepted the detach (underlyingResourceAction=Detach)".to_owned(),
                );
                Ok(Step::after(poll_delay(retry_after)))
            }
        }
    }

    async fn in_sync(
        &mut self,
        arm: &ArmClient,
        wsr: &WorkspaceRef,
        mut c: ComputeSummary,
    ) -> Result<Step, ArmError> {
        if !c.is_terminal() {
            // The cached view is stale for a compute still provisioning: one GET of it alone.
            match arm.get_compute(wsr, &self.compute_name).await? {
                Some(fresh) => {
                    c = summarize::<K>(self.obj, &fresh);
                    let state = c.provisioning_state.clone().unwrap_or_default();
                    let synthetic = synthetic_compute::<K>(self.obj, &self.compute_name, &state);
                    self.ctx
                        .cache
                        .upsert(wsr, &self.compute_name, synthetic)
                        .await;
                }
                None => {
                    self.ctx.cache.remove(wsr, &self.compute_name).await;
                    return Ok(Step::after(Duration::from_secs(1)));
                }
            }
        }
        self.status.provisioning_state = c.provisioning_state.clone();
        self.status.provisioning_errors = c.errors.clone();
        self.status.compute_id =
            c.id.clone()
                .or_else(|| Some(wsr.compute_id(&self.compute_name)));
        if c.is_failed() {
            let detail = c
                .errors
                .iter()
                .map(|e| format!("{}: {}", e.code, e.message))
                .collect::<Vec<_>>()
                .join("; ");
            return Ok(self
                .report(
                    Reason::ProvisioningFailed,
                    format!(
                        "Azure reports provisioningState {}: {detail}; change the spec or rotate the Secret to retry",
                        c.provisioning_state.as_deref().unwrap_or("Failed")
                    ),
                )
                .await);
        }
        if !c.is_terminal() {
            self.set_ready(
                Reason::Attaching,
                format!(
                    "Azure reports provisioningState {}",
                    c.provisioning_state.as_deref().unwrap_or("")
                ),
            );
            return Ok(Step::after(DEFAULT_POLL));
        }
        Ok(self.after_attached(arm, wsr).await)
    }

    /// Writes the connection Secret once per attached configuration (listKeys + ids), only
    /// where it may (rule 12), and removes the one an earlier name pointed at if this target
    /// still controls it.
    async fn sync_connection_secret(
        &mut self,
        arm: &ArmClient,
        wsr: &WorkspaceRef,
    ) -> Result<ConnectionSecret, Error> {
        let wanted = self
            .obj
            .common()
            .write_connection_secret_to_ref
            .as_ref()
            .map(|r| r.name.clone());
        let uid = self.obj.uid().unwrap_or_default();
        if let Some(old) = self.status.connection_secret_name.clone()
            && wanted.as_deref() != Some(old.as_str())
        {
            // Renamed or removed: the old Secret goes, but only if it is still ours.
            if self
                .ctx
                .secrets
                .delete_if_controlled(&self.ns, &old, &uid)
                .await
                .map_err(Error::Secret)?
            {
                tracing::info!(secret = %old, "removed the previous connection Secret");
            }
            self.status.connection_secret_name = None;
            self.status.connection_secret_hash = None;
        }
        let Some(name) = wanted else {
            return Ok(ConnectionSecret::Done);
        };
        if self.status.connection_secret_hash.is_some()
            && self.status.connection_secret_hash == self.status.attached_config_hash
            && self.status.connection_secret_name.as_deref() == Some(name.as_str())
            && self
                .ctx
                .secrets
                .connection_in_place(&self.ns, &name, &uid)
                .await
                .map_err(Error::Secret)?
        {
            return Ok(ConnectionSecret::Done);
        }
        let keys = arm
            .list_keys(wsr, &self.compute_name)
            .await
            .map_err(Error::Arm)?;
        let mut data: BTreeMap<String, ByteString> = self
            .obj
            .connection_data(&keys)
            .into_iter()
            .map(|(k, v)| (k, ByteString(v.expose_secret().as_bytes().to_vec())))
            .collect();
        drop(keys);
        let ids = [
            ("computeName", Some(self.compute_name.clone())),
            ("computeId", self.status.compute_id.clone()),
            ("computeType", Some(K::compute_type().as_str().to_owned())),
            ("workspaceId", Some(wsr.arm_id())),
            ("resourceId", self.obj.underlying().resource_id()),
        ];
        for (k, v) in ids {
            if let Some(v) = v {
                data.insert(k.to_owned(), ByteString(v.into_bytes()));
            }
        }
        let owner = self
            .obj
            .controller_owner_ref(&())
            .ok_or(Error::MissingNamespace)?;
        match self
            .ctx
            .secrets
            .write_connection(&self.ns, &name, owner, data)
            .await
            .map_err(Error::Secret)?
        {
            WriteOutcome::Written => {
                self.status.connection_secret_hash = self.status.attached_config_hash.clone();
                self.status.connection_secret_name = Some(name);
                Ok(ConnectionSecret::Done)
            }
            WriteOutcome::Conflict(why) => Ok(ConnectionSecret::Conflict(format!(
                "the compute is attached, but spec.writeConnectionSecretToRef names Secret \
                 {name:?}, which already exists and is not this target's ({why}); nothing was \
                 written to it: choose another name, or delete that Secret if it is not needed"
            ))),
        }
    }

    /// Server-side applies the status when it changed (never replaces the object).
    async fn write_status(&mut self) -> Result<(), Error> {
        self.status.observed_generation = self.obj.meta().generation;
        if self.status == self.old && self.obj.target_status() == Some(&self.status) {
            return Ok(());
        }
        let api: Api<K> = Api::namespaced(self.ctx.client.clone(), &self.ns);
        let patch = json!({
            "apiVersion": K::api_version(&()),
            "kind": K::kind(&()),
            "status": self.status,
        });
        tracing::debug!("writing status");
        match api
            .patch_status(
                &self.obj.name_any(),
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(patch),
            )
            .await
        {
            Ok(_) => Ok(()),
            // The object is gone (finalizer released): nothing to write.
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => Err(Error::Kube(e)),
        }
    }
}

fn unreachable_step() -> Result<Step, ArmError> {
    // Report and Release return before the match; keep a harmless answer rather than panic.
    Ok(Step::after(Duration::from_secs(30)))
}

fn now() -> Time {
    crate::controller::conditions::now()
}

fn after(d: Duration) -> Time {
    let d = k8s_openapi::jiff::SignedDuration::try_from(d).unwrap_or_default();
    Time(now().0.checked_add(d).unwrap_or_else(|_| now().0))
}

fn poll_delay(retry_after: Option<Duration>) -> Duration {
    retry_after
        .unwrap_or(DEFAULT_POLL)
        .clamp(Duration::from_secs(1), Duration::from_secs(120))
}

/// What planning needs to know about the workspace object. `deleting` is the target's own
/// state: a workspace being deleted (`InUse`, rule 9) refuses new work but still serves the
/// detach of a target that is itself being deleted, if it ever reached Azure.
fn workspace_state(ws: Option<&MLWorkspace>, deleting: bool) -> WorkspaceState {
    let Some(ws) = ws else {
        return WorkspaceState::Missing;
    };
    let ready = ws
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"));
    let located = ws.status.as_ref().is_some_and(|s| s.location.is_some());
    let in_use = ws.metadata.deletion_timestamp.is_some()
        && ready.is_some_and(|c| c.reason == Reason::InUse.as_str());
    match ready {
        Some(c) if c.status == "True" && located => WorkspaceState::Ready,
        Some(_) if deleting && in_use && located => WorkspaceState::Ready,
        Some(c) => WorkspaceState::NotReady {
            reason: c.reason.clone(),
            message: c.message.clone(),
        },
        None => WorkspaceState::NotReady {
            reason: "Pending".to_owned(),
            message: "not reconciled yet".to_owned(),
        },
    }
}

/// The fingerprint of what an attach pushes (rule 2 and 5).
pub fn config_hash<K: AttachTarget>(obj: &K, secret_rv: Option<&str>) -> String {
    let doc = json!({
        "computeType": K::compute_type().as_str(),
        "spec": obj.attach_fingerprint(),
        "secretResourceVersion": secret_rv,
    });
    let digest = Sha256::digest(doc.to_string().as_bytes());
    digest.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

/// The LIST seen from one target.
pub fn azure_view<K: AttachTarget>(obj: &K, name: &str, list: &[ComputeResource]) -> AzureView {
    if let Some(c) = list.iter().find(|c| same_name(c, name)) {
        return AzureView::Present(summarize::<K>(obj, c));
    }
    let underlying = obj.underlying();
    let same_resource_as = list
        .iter()
        .find(|c| underlying.matches(c))
        .and_then(|c| c.name.clone());
    AzureView::Absent { same_resource_as }
}

/// The parts of a compute planning needs.
pub fn summarize<K: AttachTarget>(obj: &K, c: &ComputeResource) -> ComputeSummary {
    let type_matches = c.compute_type().is_some_and(|t| *t == K::compute_type());
    ComputeSummary {
        matches: type_matches && obj.underlying().matches(c),
        provisioning_state: c.provisioning_state().map(|s| s.as_str().to_owned()),
        errors: c
            .properties
            .as_ref()
            .map(|p| {
                p.provisioning_errors
                    .iter()
                    .map(provisioning_error)
                    .collect()
            })
            .unwrap_or_default(),
        id: c.id.clone(),
    }
}

fn provisioning_error(e: &ErrorResponse) -> ProvisioningError {
    ProvisioningError {
        code: e
            .error
            .as_ref()
            .and_then(|d| d.code.clone())
            .unwrap_or_default(),
        message: e
            .error
            .as_ref()
            .and_then(|d| d.message.clone())
            .unwrap_or_default(),
    }
}

/// A secret-free stand-in for a compute the operator just wrote, for the LIST cache.
fn synthetic_compute<K: AttachTarget>(obj: &K, name: &str, state: &str) -> ComputeResource {
    let underlying = obj.underlying();
    let mut compute = Compute::new(K::compute_type(), underlying.resource_id());
    compute.provisioning_state = Some(state.into());
    if let Underlying::Address(a) = &underlying {
        compute.properties = Some(ComputeProperties::VirtualMachine(
            VirtualMachineProperties {
                address: Some(a.clone()),
                ..Default::default()
            },
        ));
    }
    ComputeResource {
        name: Some(name.to_owned()),
        properties: Some(compute),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{Condition, MLWorkspaceStatus};

    fn workspace(reason: &str, status: &str, deleting: bool) -> MLWorkspace {
        let mut ws: MLWorkspace = serde_json::from_value(json!({
            "apiVersion": "attach.azureml.io/v1alpha1",
            "kind": "MLWorkspace",
            "metadata": {"name": "w", "namespace": "n"},
            "spec": {
                "subscriptionId": "00000000-0000-0000-0000-000000000000",
                "resourceGroup": "rg",
                "workspaceName": "ws",
                "credential": {"type": "Default"}
            }
        }))
        .unwrap();
        ws.status = Some(MLWorkspaceStatus {
            conditions: vec![Condition {
                type_: "Ready".into(),
                status: status.into(),
                reason: reason.into(),
                message: "m".into(),
                last_transition_time: None,
                observed_generation: None,
            }],
            location: Some("westeurope".into()),
            ..Default::default()
        });
        if deleting {
            ws.metadata.deletion_timestamp = Some(now());
        }
        ws
    }

    #[test]
    fn rule9_a_workspace_in_use_serves_only_targets_being_deleted() {
        let ws = workspace("InUse", "False", true);
        assert_eq!(workspace_state(Some(&ws), true), WorkspaceState::Ready);
        assert!(
            matches!(workspace_state(Some(&ws), false), WorkspaceState::NotReady { reason, .. } if reason == "InUse"),
            "no new attachments to a workspace being deleted"
        );
        let ready = workspace("Reached", "True", true);
        assert_eq!(workspace_state(Some(&ready), true), WorkspaceState::Ready);
        let broken = workspace("CredentialRejected", "False", true);
        assert!(matches!(
            workspace_state(Some(&broken), true),
            WorkspaceState::NotReady { .. }
        ));
        let mut never_reached = workspace("InUse", "False", true);
        if let Some(s) = never_reached.status.as_mut() {
            s.location = None;
        }
        assert!(matches!(
            workspace_state(Some(&never_reached), true),
            WorkspaceState::NotReady { .. }
        ));
        assert_eq!(workspace_state(None, true), WorkspaceState::Missing);
    }
}
