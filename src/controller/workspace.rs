//! The `MLWorkspace` reconciler: can the operator reach this Azure ML workspace, and where is it?
//!
//! It GETs the workspace when the object or its client-secret Secret changes, and otherwise
//! rarely (once an hour): targets' LISTs already prove the workspace is reachable.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::api::{ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{Event as FinalizerEvent, finalizer};
use kube::{Api, Resource, ResourceExt};
use serde_json::json;

use crate::api::{FIELD_MANAGER, MLWorkspace, MLWorkspaceStatus, WORKSPACE_FINALIZER};
use crate::controller::conditions::{Reason, set_ready};
use crate::controller::connect::workspace_ref;
use crate::controller::context::Context;
use crate::controller::error::{Error, chain};
use crate::controller::events::EventReason;
use crate::controller::failure::{self, Failure};
use crate::controller::kinds::{KindVisitor, for_each_kind};
use crate::controller::secrets::Credential;
use crate::controller::target::AttachTarget;

const KIND: &str = "MLWorkspace";
/// Re-check interval of a reachable workspace.
const HEALTHY_RECHECK: Duration = Duration::from_secs(3600);

/// Re-check interval of a workspace being deleted while targets still reference it (a
/// target releasing its finalizer also wakes it at once).
const IN_USE_RECHECK: Duration = Duration::from_secs(20);
/// How many referencing targets the `InUse` message names.
const IN_USE_NAMED: usize = 3;

/// Reconciles one MLWorkspace. Its finalizer keeps it while any target references it
/// (rule 9): those targets need it to detach.
#[tracing::instrument(skip_all, fields(kind = KIND, namespace = ws.namespace().unwrap_or_default(), name = ws.name_any()))]
pub async fn reconcile(ws: Arc<MLWorkspace>, ctx: Arc<Context>) -> Result<Action, Error> {
    ctx.synced.wait().await;
    let started = Instant::now();
    let ns = ws.namespace().ok_or(Error::MissingNamespace)?;
    let api: Api<MLWorkspace> = Api::namespaced(ctx.client.clone(), &ns);
    let result = finalizer(&api, WORKSPACE_FINALIZER, ws, |event| async {
        match event {
            FinalizerEvent::Apply(ws) => reconcile_inner(&ws, &ctx).await,
            FinalizerEvent::Cleanup(ws) => cleanup(&ws, &ctx).await,
        }
    })
    .await
    .or_else(|e| match e {
        // A second cleanup pass from a stale cache entry: already released and gone.
        kube::runtime::finalizer::Error::RemoveFinalizer(kube::Error::Api(status))
            if status.is_not_found() =>
        {
            Ok(Action::await_change())
        }
        other => Err(Error::Finalizer(Box::new(other))),
    });
    let ok = result.is_ok() || matches!(&result, Err(e) if e.is_in_progress());
    ctx.metrics.reconcile_finished(KIND, ok, started.elapsed());
    result
}

/// Deletion: wait while any target in the namespace references this workspace, then release.
async fn cleanup(ws: &MLWorkspace, ctx: &Context) -> Result<Action, Error> {
    let ns = ws.namespace().ok_or(Error::MissingNamespace)?;
    let name = ws.name_any();
    // A live LIST, not the reflector stores: right after a target's finalizer is removed the
    // stores can still show it, and at start-up they can still be empty.
    let mut lists = Users {
        ctx,
        ns: &ns,
        workspace: &name,
        lists: Vec::new(),
    };
    for_each_kind(&mut lists);
    let mut users = Vec::new();
    for found in futures::future::join_all(lists.lists).await {
        users.extend(found?);
    }
    if users.is_empty() {
        ctx.event(
            ws,
            EventReason::Released,
            "no target references this MLWorkspace any more".to_owned(),
        )
        .await;
        return Ok(Action::await_change());
    }
    let message = in_use_message(&users);
    let old = ws.status.clone().unwrap_or_default();
    let mut status = old.clone();
    let previous = old.conditions.iter().find(|c| c.type_ == "Ready").cloned();
    set_ready(
        &mut status.conditions,
        Reason::InUse,
        message.clone(),
        ws.meta().generation,
        crate::controller::conditions::now(),
    );
    if previous
        .as_ref()
        .is_none_or(|p| p.reason != Reason::InUse.as_str())
    {
        ctx.event(ws, EventReason::Condition(Reason::InUse), message)
            .await;
    }
    if status != old {
        write_status(ws, ctx, &ns, &status).await?;
    }
    // Ok from a cleanup removes the finalizer, so "still in use" travels as an error.
    Err(Error::InProgress(IN_USE_RECHECK))
}

/// Appends `Kind name` of every `K` in `ns` whose `spec.workspaceRef.name` is `workspace`.
async fn users_of<K: AttachTarget>(
    ctx: &Context,
    ns: &str,
    workspace: &str,
) -> Result<Vec<String>, Error> {
    let api: Api<K> = Api::namespaced(ctx.client.clone(), ns);
    let list = api
        .list(&ListParams::default())
        .await
        .map_err(Error::Kube)?;
    Ok(list
        .items
        .iter()
        .filter(|t| t.common().workspace_ref.name == workspace)
        .map(|t| format!("{} {}", K::KIND, t.name_any()))
        .collect())
}

/// One LIST per target kind (the registry's), of the targets naming `workspace`.
struct Users<'a> {
    ctx: &'a Context,
    ns: &'a str,
    workspace: &'a str,
    lists: Vec<futures::future::BoxFuture<'a, Result<Vec<String>, Error>>>,
}

impl KindVisitor for Users<'_> {
    fn visit<K: AttachTarget + kube::CustomResourceExt + Unpin>(&mut self) {
        let (ctx, ns, workspace) = (self.ctx, self.ns, self.workspace);
        self.lists.push(Box::pin(
            async move { users_of::<K>(ctx, ns, workspace).await },
        ));
    }
}

/// The `InUse` message: the count and the first few referencing targets, sorted so that the
/// same set of targets always gives the same message (no status churn).
pub fn in_use_message(users: &[String]) -> String {
    let mut sorted: Vec<&str> = users.iter().map(String::as_str).collect();
    sorted.sort_unstable();
    let named = sorted
        .iter()
        .take(IN_USE_NAMED)
        .copied()
        .collect::<Vec<_>>()
        .join(", ");
    let more = sorted.len().saturating_sub(IN_USE_NAMED);
    let (noun, verb) = if sorted.len() == 1 {
        ("target", "references")
    } else {
        ("targets", "reference")
    };
    let tail = if more > 0 {
        format!(" and {more} more")
    } else {
        String::new()
    };
    format!(
        "being deleted; waiting for {} {noun} that still {verb} it to detach: {named}{tail}",
        sorted.len()
    )
}

async fn reconcile_inner(ws: &MLWorkspace, ctx: &Context) -> Result<Action, Error> {
    let ns = ws.namespace().ok_or(Error::MissingNamespace)?;
    let old = ws.status.clone().unwrap_or_default();
    let mut status = old.clone();
    let secret_rv = match &ws.spec.credential.client_secret {
        Some(c) => match ctx
            .secrets
            .credential(&ns, &c.secret_ref.name)
            .await
            .map_err(Error::Secret)?
        {
            Credential::OptedIn(rv) => rv,
            Credential::NotOptedIn | Credential::Missing => None,
        },
        None => None,
    };
    // Skip the Azure GET when nothing changed since the last successful check.
    let ready = old
        .conditions
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    if ready
        && old.observed_generation == ws.meta().generation
        && old.secret_resource_version == secret_rv
    {
        return Ok(Action::requeue(HEALTHY_RECHECK));
    }
    let (reason, message, delay) = match ctx.arm.arm_for(ws).await {
        Err(e) => {
            let f = failure::connect(&e, ctx.resync);
            (f.reason, chain(&e), f.delay)
        }
        Ok(arm) => match arm.get_workspace(&workspace_ref(ws)).await {
            Ok(found) => {
                status.arm_id = found
                    .id
                    .clone()
                    .or_else(|| Some(workspace_ref(ws).arm_id()));
                status.location = found.location.clone();
                (
                    Reason::Reached,
                    format!(
                        "reached workspace {} in {}",
                        ws.spec.workspace_name,
                        found.location.unwrap_or_default()
                    ),
                    HEALTHY_RECHECK,
                )
            }
            Err(e) => {
                let Failure { reason, delay } = failure::arm(&e, ctx.resync);
                (reason, chain(&e), delay)
            }
        },
    };
    status.secret_resource_version = secret_rv;
    status.observed_generation = ws.meta().generation;
    let previous = old.conditions.iter().find(|c| c.type_ == "Ready").cloned();
    set_ready(
        &mut status.conditions,
        reason,
        message.clone(),
        ws.meta().generation,
        crate::controller::conditions::now(),
    );
    if previous
        .as_ref()
        .is_none_or(|p| p.reason != reason.as_str())
    {
        ctx.event(ws, EventReason::Condition(reason), message).await;
    }
    if status != old {
        write_status(ws, ctx, &ns, &status).await?;
    }
    Ok(Action::requeue(delay))
}

async fn write_status(
    ws: &MLWorkspace,
    ctx: &Context,
    ns: &str,
    status: &MLWorkspaceStatus,
) -> Result<(), Error> {
    let api: Api<MLWorkspace> = Api::namespaced(ctx.client.clone(), ns);
    let patch = json!({
        "apiVersion": MLWorkspace::api_version(&()),
        "kind": MLWorkspace::kind(&()),
        "status": status,
    });
    api.patch_status(
        &ws.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(patch),
    )
    .await
    .map_err(Error::Kube)?;
    Ok(())
}

/// `error_policy` of the workspace controller.
pub fn error_policy(ws: Arc<MLWorkspace>, error: &Error, ctx: Arc<Context>) -> Action {
    if let Some(d) = error.in_progress() {
        return Action::requeue(d);
    }
    tracing::warn!(name = ws.name_any(), error = %chain(error), "workspace reconcile failed");
    ctx.metrics.reconcile_error(KIND, error.metric_label());
    Action::requeue(error.retry_delay())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule9_in_use_message_names_a_few_targets_and_the_count() {
        let one = in_use_message(&["RemoteVmTarget vm-a".to_owned()]);
        assert_eq!(
            one,
            "being deleted; waiting for 1 target that still references it to detach: RemoteVmTarget vm-a"
        );
        let users: Vec<String> = ["d", "b", "e", "a", "c"]
            .iter()
            .map(|n| format!("BatchTarget {n}"))
            .collect();
        let msg = in_use_message(&users);
        assert!(msg.contains("waiting for 5 targets"), "{msg}");
        assert!(
            msg.ends_with("BatchTarget a, BatchTarget b, BatchTarget c and 2 more"),
            "{msg}"
        );
        let mut reversed = users.clone();
        reversed.reverse();
        assert_eq!(in_use_message(&reversed), msg, "order-independent");
    }
}
