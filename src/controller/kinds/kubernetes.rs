//! `KubernetesTarget` → computeType `Kubernetes` (resourceId, namespace, instance types,
//! optional identity).

use serde_json::json;

use crate::api::KubernetesTarget;
use crate::azure::models::{
    ComputeProperties, ComputeType, InstanceType, InstanceTypeResources, KubernetesProperties,
    ManagedServiceIdentity,
};
use crate::controller::target::{AttachTarget, BuildError, PreflightRead, SecretData, Underlying};

impl AttachTarget for KubernetesTarget {
    const KIND: &'static str = "KubernetesTarget";

    fn compute_type() -> ComputeType {
        ComputeType::Kubernetes
    }

    fn underlying(&self) -> Underlying {
        Underlying::ResourceId(self.spec.resource_id.clone())
    }

    fn secret_name(&self) -> Option<&str> {
        None
    }

    fn attach_fingerprint(&self) -> serde_json::Value {
        let s = &self.spec;
        json!({
            "resourceId": s.resource_id,
            "namespace": s.namespace,
            "defaultInstanceType": s.default_instance_type,
            "instanceTypes": s.instance_types,
            "identity": s.identity,
        })
    }

    fn build_properties(
        &self,
        _secret: Option<&SecretData>,
    ) -> Result<Option<ComputeProperties>, BuildError> {
        let s = &self.spec;
        let instance_types = s.instance_types.as_ref().map(|types| {
            types
                .iter()
                .map(|(name, t)| {
                    let wire = InstanceType {
                        node_selector: t.node_selector.clone(),
                        resources: t.resources.as_ref().map(|r| InstanceTypeResources {
                            requests: r.requests.clone(),
                            limits: r.limits.clone(),
                        }),
                    };
                    (name.clone(), wire)
                })
                .collect()
        });
        Ok(Some(ComputeProperties::Kubernetes(KubernetesProperties {
            namespace: Some(s.namespace.clone()),
            default_instance_type: s.default_instance_type.clone(),
            instance_types,
            ..Default::default()
        })))
    }

    fn identity(&self) -> Option<ManagedServiceIdentity> {
        self.spec.identity.as_ref().map(|i| i.to_wire())
    }

    fn preflight_read(&self) -> Option<PreflightRead> {
        Some(PreflightRead::Kubernetes(self.spec.resource_id.clone()))
    }
}
