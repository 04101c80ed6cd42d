//! The `MLWorkspace` reconciler: can the operator reach this Azure ML workspace, and where is it?
//!
//! It GETs the workspace when the object or its client-secret Secret changes, and otherwise
//! rarely (once an hour): targets' LISTs already prove the workspace is reachable.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Api, Resource, ResourceExt};
use serde_json::json;

use crate::api::{FIELD_MANAGER, MLWorkspace, MLWorkspaceStatus};
use crate::azure::ArmErrorKind;
use crate::controller::conditions::{Reason, ready_condition, set_condition};
use crate::controller::context::{ConnectError, Context, workspace_ref};
use crate::controller::error::{Error, chain};

const KIND: &str = "MLWorkspace";
/// Re-check interval of a reachable workspace.
const HEALTHY_RECHECK: Duration = Duration::from_secs(3600);

/// Reconciles one MLWorkspace.
#[tracing::instrument(skip_all, fields(kind = KIND, namespace = ws.namespace().unwrap_or_default(), name = ws.name_any()))]
pub async fn reconcile(ws: Arc<MLWorkspace>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let result = reconcile_inner(&ws, &ctx).await;
    ctx.metrics
        .reconcile_finished(KIND, result.is_ok(), started.elapsed());
    result
}

async fn reconcile_inner(ws: &MLWorkspace, ctx: &Context) -> Result<Action, Error> {
    let ns = ws.namespace().ok_or(Error::MissingNamespace)?;
    let old = ws.status.clone().unwrap_or_default();
    let mut status = old.clone();
    let secret_rv = match &ws.spec.credential.client_secret {
        Some(c) => {
            let api: Api<k8s_openapi::api::core::v1::Secret> =
                Api::namespaced(ctx.client.clone(), &ns);
            api.get_metadata_opt(&c.secret_ref.name)
                .await
                .map_err(Error::Kube)?
                .and_then(|m| m.resource_version())
        }
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
    let (reason, message, delay) = match ctx.arm_for(ws).await {
        Err(e) => {
            let reason = match &e {
                ConnectError::SecretNotFound(_) => Reason::SecretNotFound,
                ConnectError::SecretKeyMissing { .. } => Reason::SecretKeyMissing,
                ConnectError::InvalidSpec(_) => Reason::InvalidSpec,
                ConnectError::Credential(_) | ConnectError::Cloud(_) => Reason::CredentialRejected,
                ConnectError::Kube(_) => Reason::AzureError,
            };
            (reason, chain(&e), ctx.resync.max(Duration::from_secs(60)))
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
                let (reason, delay) = match e.kind() {
                    ArmErrorKind::NotFound => (Reason::WorkspaceNotFound, Duration::from_secs(120)),
                    ArmErrorKind::Unauthorized
                    | ArmErrorKind::Forbidden
                    | ArmErrorKind::Credential => {
                        (Reason::CredentialRejected, Duration::from_secs(120))
                    }
                    ArmErrorKind::Throttled => (
                        Reason::Throttled,
                        e.retry_after().unwrap_or(Duration::from_secs(10)),
                    ),
                    _ => (
                        Reason::AzureError,
                        e.retry_after().unwrap_or(Duration::from_secs(15)),
                    ),
                };
                (reason, chain(&e), delay)
            }
        },
    };
    status.secret_resource_version = secret_rv;
    status.observed_generation = ws.meta().generation;
    let previous = old.conditions.iter().find(|c| c.type_ == "Ready").cloned();
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    set_condition(
        &mut status.conditions,
        ready_condition(
            previous.as_ref(),
            reason,
            message.clone(),
            ws.meta().generation,
            now,
        ),
    );
    if previous
        .as_ref()
        .is_none_or(|p| p.reason != reason.as_str())
    {
        ctx.event(ws, !reason.is_ready(), reason.as_str(), message)
            .await;
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
    tracing::warn!(name = ws.name_any(), error = %chain(error), "workspace reconcile failed");
    ctx.metrics.reconcile_error(KIND, error.metric_label());
    Action::requeue(error.retry_delay())
}
