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
use crate::controller::conditions::{Reason, set_ready};
use crate::controller::context::{ConnectError, Context, workspace_ref};
use crate::controller::error::Error;
use crate::controller::events::EventReason;
use crate::controller::failure::{self, Failure};
use crate::controller::plan::{
    AttachCause, AzureView, ClaimState, ComputeSummary, Decision, Observed, SecretState,
    WorkspaceState, plan,
};
use crate::controller::secrets::{Credential, WriteOutcome, not_opted_in_message};
use crate::controller::target::{AttachTarget, BuildError, Underlying, attach_body};

mod attach;
mod connection;
mod observe;
mod operations;

pub use observe::{azure_view, config_hash, summarize};
use observe::{synthetic_compute, workspace_state};

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
                    Err(e) => return Ok(self.list_failed(&wsr, e).await),
                },
                Decision::Poll(op) => self.poll(&arm, &wsr, op, &desired_hash).await,
                Decision::Attach { cause } => {
                    self.attach(&arm, &wsr, &ws, cause, &desired_hash, secret_rv.as_deref())
                        .await
                }
                Decision::Detach { reattach } => self.detach(&arm, &wsr, reattach).await,
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
        // Start from the previous pass's conditions so lastTransitionTime is kept.
        let mut conditions = self.old.conditions.clone();
        set_ready(
            &mut conditions,
            reason,
            message,
            self.obj.meta().generation,
            now(),
        );
        self.status.conditions = conditions;
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

    /// The workspace LIST failed. For a Ready target a transient failure (429, 5xx, transport)
    /// says nothing new about its attachment: it stays Ready and looks again after the delay,
    /// instead of flapping Ready (and paging someone) on every failed resync read. Anything
    /// else, or a target not Ready, is reported as usual.
    async fn list_failed(&mut self, wsr: &WorkspaceRef, e: ArmError) -> Step {
        let failure = failure::arm(&e, self.ctx.resync);
        let ready = self.old.ready().is_some_and(|c| c.status == "True");
        if ready && matches!(failure.reason, Reason::Throttled | Reason::AzureError) {
            tracing::info!(error = %crate::controller::error::chain(&e), retry_in = ?failure.delay, "the workspace LIST failed; staying Ready");
            return Step::after(failure.delay);
        }
        self.arm_failed(wsr, e).await
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
