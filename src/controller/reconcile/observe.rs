//! Observing, the first step of a pass: what a target sees of its workspace, its claim, its
//! Secrets and the LIST, from the stores (no live reads in steady state); its fingerprint.

use serde_json::json;
use sha2::{Digest, Sha256};

use crate::api::{MLWorkspace, ProvisioningError, TargetStatus};
use crate::azure::models::{
    Compute, ComputeProperties, ComputeResource, ErrorResponse, VirtualMachineProperties,
};
use crate::controller::cache::same_name;
use crate::controller::claims::winner;
use crate::controller::conditions::Reason;
use crate::controller::context::Context;
use crate::controller::error::Error;
use crate::controller::plan::{
    AzureView, ClaimState, ComputeSummary, ConnectionView, PreflightView, SecretState,
    WorkspaceState,
};
use crate::controller::secrets::Credential;
use crate::controller::target::{AttachTarget, Underlying, compute_address};

/// Everything a pass observed before planning; `azure` and `connection` are updated by the
/// steps of the pass (settle's [`crate::controller::settle::Learned`]).
#[derive(Clone, Debug)]
pub(super) struct Seen {
    pub workspace: WorkspaceState,
    pub claim: ClaimState,
    pub secret: SecretState,
    /// The credential Secret's resourceVersion (part of the fingerprint).
    pub secret_rv: Option<String>,
    pub azure: Option<crate::controller::plan::AzureView>,
    pub connection: ConnectionView,
    pub preflight: PreflightView,
}

impl Seen {
    pub(super) async fn of<K: AttachTarget>(
        obj: &K,
        ctx: &Context,
        ns: &str,
        uid: &str,
        ws: Option<&MLWorkspace>,
        status: &TargetStatus,
        deleting: bool,
    ) -> Result<Self, Error> {
        let (secret, secret_rv) = match obj.secret_name() {
            None => (SecretState::NotNeeded, None),
            // Metadata only (rule 10): the resourceVersion says whether it changed.
            Some(name) => match ctx
                .secrets
                .credential(ns, name)
                .await
                .map_err(Error::Secret)?
            {
                Credential::OptedIn(rv) => (SecretState::Present, rv),
                Credential::NotOptedIn => (SecretState::NotOptedIn(name.to_owned()), None),
                Credential::Missing => (SecretState::Missing(name.to_owned()), None),
            },
        };
        let wanted = obj
            .common()
            .write_connection_secret_to_ref
            .as_ref()
            .map(|r| r.name.clone());
        // Only asked when it decides anything: the Secret recorded as written for the
        // configuration now attached (the store answers; a miss is confirmed by one GET).
        let in_place = match (&wanted, &status.connection_secret_name) {
            (Some(w), Some(recorded))
                if w == recorded
                    && status.connection_secret_hash.is_some()
                    && status.connection_secret_hash == status.attached_config_hash =>
            {
                ctx.secrets
                    .connection_in_place(ns, w, uid)
                    .await
                    .map_err(Error::Secret)?
            }
            _ => false,
        };
        Ok(Seen {
            workspace: workspace_state(ws, deleting),
            claim: claim_state(obj, ctx),
            secret,
            secret_rv,
            azure: None,
            connection: ConnectionView { wanted, in_place },
            preflight: PreflightView {
                applies: obj.preflight_read().is_some(),
                mode: obj.common().preflight,
            },
        })
    }
}

/// The claim index's answer for `obj` (rule 4).
fn claim_state<K: AttachTarget>(obj: &K, ctx: &Context) -> ClaimState {
    let Some(mine) = ctx.claim_of(obj) else {
        return ClaimState::Winner;
    };
    let all = ctx.claims_on(&mine.resource);
    let w = winner(&mine, &all);
    if w.uid == mine.uid {
        ClaimState::Winner
    } else {
        ClaimState::LosesTo(w.owner.clone())
    }
}

/// What planning needs to know about the workspace object. `deleting` is the target's own
/// state: a workspace being deleted (`InUse`, rule 9) refuses new work but still serves the
/// detach of a target that is itself being deleted, if it ever reached Azure.
pub(super) fn workspace_state(ws: Option<&MLWorkspace>, deleting: bool) -> WorkspaceState {
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
        None => WorkspaceState::Pending,
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
pub fn azure_view<K: AttachTarget>(
    obj: &K,
    name: &str,
    list: &[std::sync::Arc<ComputeResource>],
) -> AzureView {
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
        attaches: attaches(c),
    }
}

/// `computeType resource` of an existing compute, for a message naming what it attaches.
fn attaches(c: &ComputeResource) -> Option<String> {
    let kind = c.compute_type().map(|t| t.as_str().to_owned());
    let what = c
        .resource_id()
        .map(str::to_owned)
        .or_else(|| compute_address(c).map(|a| format!("address {a}")));
    match (kind, what) {
        (Some(k), Some(w)) => Some(format!("{k} {w}")),
        (Some(k), None) => Some(format!("a {k} compute")),
        (None, Some(w)) => Some(w),
        (None, None) => None,
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
pub(super) fn synthetic_compute<K: AttachTarget>(
    obj: &K,
    name: &str,
    state: &str,
) -> ComputeResource {
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
    use crate::controller::conditions::now;

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
