//! The generic reconciler, one pipeline for every target kind:
//!
//! 1. **observe** (`observe.rs`): the workspace, the claim, the Secret's metadata and the
//!    connection Secret, from the stores;
//! 2. **plan** (`plan.rs`, pure): the one next step;
//! 3. **execute** (`execute.rs`): at most one Azure call, returning a typed [`Outcome`];
//! 4. **settle** (`settle.rs`, pure): the new status, condition, events, cache edits and what
//!    follows: either plan again in this pass with what was learned, or end it;
//! 5. **apply** (here): one status write if anything changed, then the events.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{Event as FinalizerEvent, finalizer};
use kube::{Api, ResourceExt};
use serde_json::json;

use crate::api::{FIELD_MANAGER, FINALIZER, MLWorkspace, TargetStatus};
use crate::azure::{ArmClient, WorkspaceRef};
use crate::controller::connect::workspace_ref;
use crate::controller::context::Context;
use crate::controller::error::Error;
use crate::controller::events::EventReason;
use crate::controller::plan::{Observed, plan};
use crate::controller::settle::{CacheEdit, Facts, Learned, Next, Outcome, settle};
use crate::controller::target::AttachTarget;

mod connection;
mod execute;
mod observe;

use observe::{Seen, synthetic_compute};
pub use observe::{azure_view, config_hash, summarize};

/// Most steps one pass takes (each makes at most one Azure call). A pass needs at most five
/// (LIST, PUT, GET, connection Secret, report); the bound only guards against a planning bug.
const MAX_STEPS: usize = 8;

/// Entry point for `Controller::run`: finalizer handling around [`reconcile_inner`].
#[tracing::instrument(skip_all, fields(kind = K::KIND, namespace = obj.namespace().unwrap_or_default(), name = obj.name_any()))]
pub async fn reconcile<K: AttachTarget>(obj: Arc<K>, ctx: Arc<Context>) -> Result<Action, Error> {
    // A target is judged only against stores that have listed once (a restart must not see a
    // workspace, Secret or older claim as missing just because its watch has not caught up).
    ctx.synced.wait().await;
    let uid = obj.uid().unwrap_or_default();
    if ctx.memo.was_released(&uid) {
        // A stale copy of an object whose finalizer this process removed: the first cleanup
        // already finished (a second would 404 and announce a spurious `Released`).
        return Ok(Action::await_change());
    }
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
        // The finalizer is gone: stale copies are not cleaned up again, and a workspace being
        // deleted may be waiting for exactly this.
        ctx.memo.mark_released(&uid);
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

/// What one pass decided about requeueing.
struct Step {
    done: bool,
    requeue: Duration,
    action: Action,
}

impl Step {
    fn of(next: &Next, resync: Duration) -> Self {
        match next {
            Next::Done => Step {
                done: true,
                requeue: Duration::ZERO,
                action: Action::await_change(),
            },
            Next::After(d) => {
                let d = spread(*d, resync);
                Step {
                    done: false,
                    requeue: d,
                    action: Action::requeue(d),
                }
            }
            // Only after MAX_STEPS: look again at the next resync.
            Next::Replan(_) => Step {
                done: false,
                requeue: resync,
                action: Action::requeue(resync),
            },
        }
    }
}

/// A wait of a resync or longer, spread over ±10 %: otherwise every target reconciled together
/// (a restart, a mass create) wakes in the same instant every resync, and a new target applied
/// then waits behind all of them. Shorter waits (polls, retries) are kept exact.
fn spread(d: Duration, resync: Duration) -> Duration {
    use std::hash::BuildHasher;
    if d < resync || d.is_zero() {
        return d;
    }
    // A random number without a crate: each RandomState is seeded afresh.
    let r = std::collections::hash_map::RandomState::new().hash_one(d.as_nanos());
    let fraction = (r % 10_000) as f64 / 10_000.0;
    d.mul_f64(0.9 + 0.2 * fraction)
}

/// One pass over one object: what it reads and the Azure connection it makes (at most once).
struct Pass<'a, K: AttachTarget> {
    obj: &'a K,
    ctx: &'a Context,
    ns: String,
    compute_name: &'a str,
    workspace: Option<Arc<MLWorkspace>>,
    deleting: bool,
    arm: Option<(ArmClient, WorkspaceRef)>,
}

async fn reconcile_inner<K: AttachTarget>(
    obj: &K,
    ctx: &Context,
    deleting: bool,
) -> Result<Step, Error> {
    let ns = obj.namespace().ok_or(Error::MissingNamespace)?;
    let uid = obj.uid().ok_or(Error::MissingNamespace)?;
    let old = ctx.memo.fresh_status(&uid, obj.target_status());
    let compute_name = obj.compute_name();
    let workspace = ctx.workspace(&ns, &obj.common().workspace_ref.name);

    // 1. Observe.
    let mut seen = Seen::of(obj, ctx, &ns, &uid, workspace.as_deref(), &old, deleting).await?;
    let desired_hash = config_hash::<K>(obj, seen.secret_rv.as_deref());
    let secret_rv = seen.secret_rv.clone();
    let facts = Facts {
        old: &old,
        generation: obj.meta().generation,
        compute_name: &compute_name,
        compute_id: workspace
            .as_deref()
            .map(|w| workspace_ref(w).compute_id(&compute_name)),
        deleting,
        desired_hash: &desired_hash,
        preflight: obj.common().preflight,
        secret_rv: secret_rv.as_deref(),
        resync: ctx.resync,
        now: crate::controller::conditions::now(),
    };
    let mut pass = Pass {
        obj,
        ctx,
        ns,
        compute_name: &compute_name,
        workspace,
        deleting,
        arm: None,
    };
    let mut status = old.clone();
    status.compute_name = Some(compute_name.clone());
    let mut events: Vec<(EventReason, String)> = Vec::new();
    let mut next = Next::Replan(Learned::Nothing);
    for _ in 0..MAX_STEPS {
        // 2. Plan.
        let observed = Observed {
            deleting,
            deletion_policy: obj.common().deletion_policy,
            status: &status,
            workspace: seen.workspace.clone(),
            claim: seen.claim.clone(),
            secret: seen.secret.clone(),
            desired_hash: facts.desired_hash,
            azure: seen.azure.clone(),
            connection: seen.connection.clone(),
            preflight: seen.preflight,
        };
        let decision = plan(&observed);
        tracing::debug!(?decision, "planned");
        // 3. Execute (at most one Azure call).
        let outcome: Outcome = pass.execute(decision, &status).await;
        // 4. Settle.
        let settled = settle(&facts, status, outcome);
        status = settled.status;
        events.extend(settled.events);
        pass.edit_cache(&settled.cache).await;
        next = settled.next;
        match &next {
            Next::Replan(Learned::Nothing) => {}
            Next::Replan(Learned::Azure(view)) => seen.azure = Some(view.clone()),
            Next::Replan(Learned::ConnectionInPlace) => seen.connection.in_place = true,
            Next::After(_) | Next::Done => break,
        }
    }
    if let Next::Replan(_) = next {
        tracing::warn!(
            steps = MAX_STEPS,
            "a pass did not settle; looking again at resync"
        );
    }
    let step = Step::of(&next, ctx.resync);

    // 5. Apply: one status write if anything changed, then the events.
    let wrote = pass.write_status(&old, &mut status).await?;
    // Kept only until the store shows our write: a pass that wrote nothing found the store
    // already holding this status.
    ctx.memo.remember_status(
        &uid,
        (wrote && !(step.done && deleting)).then(|| status.clone()),
    );
    for (reason, note) in events {
        ctx.event(obj, reason, note).await;
    }
    Ok(step)
}

impl<K: AttachTarget> Pass<'_, K> {
    async fn edit_cache(&self, edits: &[CacheEdit]) {
        let Some((_, wsr)) = &self.arm else {
            return;
        };
        for edit in edits {
            match edit {
                CacheEdit::Upsert(state) => {
                    let compute = synthetic_compute::<K>(self.obj, self.compute_name, state);
                    self.ctx.cache.upsert(wsr, self.compute_name, compute).await;
                }
                CacheEdit::Remove => self.ctx.cache.remove(wsr, self.compute_name).await,
                CacheEdit::Invalidate => self.ctx.cache.invalidate(wsr).await,
            }
        }
    }

    /// Server-side applies the status when it changed (never replaces the object).
    /// Writes `status` unless both our last write (`old`) and the store already hold it; says
    /// whether it wrote.
    async fn write_status(
        &self,
        old: &TargetStatus,
        status: &mut TargetStatus,
    ) -> Result<bool, Error> {
        status.observed_generation = self.obj.meta().generation;
        if status == old && self.obj.target_status() == Some(status) {
            return Ok(false);
        }
        let api: Api<K> = Api::namespaced(self.ctx.client.clone(), &self.ns);
        let patch = json!({
            "apiVersion": K::api_version(&()),
            "kind": K::kind(&()),
            "status": status,
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
            Ok(_) => Ok(true),
            // The object is gone (finalizer released): nothing to write.
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(false),
            Err(e) => Err(Error::Kube(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resync_waits_are_spread_and_short_waits_kept() {
        let resync = Duration::from_secs(20);
        let waits: Vec<Duration> = (0..200).map(|_| spread(resync, resync)).collect();
        assert!(
            waits
                .iter()
                .all(|w| *w >= Duration::from_secs(18) && *w <= Duration::from_secs(22))
        );
        let distinct: std::collections::BTreeSet<_> = waits.iter().collect();
        assert!(distinct.len() > 100, "spread, not one instant");
        assert_eq!(
            spread(Duration::from_secs(3), resync),
            Duration::from_secs(3)
        );
        assert_eq!(spread(Duration::ZERO, resync), Duration::ZERO);
    }
}
