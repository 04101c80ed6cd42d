//! Pure views of what a target sees: its workspace, its fingerprint, the LIST.

use super::*;

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
