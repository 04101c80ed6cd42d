//! `SynapseSparkTarget` → computeType `SynapseSpark` (resourceId, optional identity; Azure fills
//! in the pool's settings).

use serde_json::json;

use crate::api::SynapseSparkTarget;
use crate::azure::models::{ComputeProperties, ComputeType, ManagedServiceIdentity};
use crate::controller::target::{AttachTarget, BuildError, PreflightRead, SecretData, Underlying};

impl AttachTarget for SynapseSparkTarget {
    const KIND: &'static str = "SynapseSparkTarget";

    fn compute_type() -> ComputeType {
        ComputeType::SynapseSpark
    }

    fn underlying(&self) -> Underlying {
        Underlying::ResourceId(self.spec.resource_id.clone())
    }

    fn secret_name(&self) -> Option<&str> {
        None
    }

    fn attach_fingerprint(&self) -> serde_json::Value {
        json!({ "resourceId": self.spec.resource_id, "identity": self.spec.identity })
    }

    fn build_properties(
        &self,
        _secret: Option<&SecretData>,
    ) -> Result<Option<ComputeProperties>, BuildError> {
        // `az ml compute attach --type SynapseSpark` sends only the resourceId (and identity).
        Ok(None)
    }

    fn identity(&self) -> Option<ManagedServiceIdentity> {
        self.spec.identity.as_ref().map(|i| i.to_wire())
    }

    fn preflight_read(&self) -> Option<PreflightRead> {
        Some(PreflightRead::SynapsePool(self.spec.resource_id.clone()))
    }
}
