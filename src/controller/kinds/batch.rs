//! `BatchTarget` → computeType `Batch` (resourceId only, no type-specific properties).

use serde_json::json;

use crate::api::BatchTarget;
use crate::azure::models::{ComputeProperties, ComputeType};
use crate::controller::target::{AttachTarget, BuildError, SecretData, Underlying};

impl AttachTarget for BatchTarget {
    const KIND: &'static str = "BatchTarget";

    fn compute_type() -> ComputeType {
        ComputeType::Batch
    }

    fn underlying(&self) -> Underlying {
        Underlying::ResourceId(self.spec.resource_id.clone())
    }

    fn secret_name(&self) -> Option<&str> {
        None
    }

    /// `Batch` is in no published spec: any 400 to it is read as the type being refused.
    fn refuses_type(_code: Option<&str>) -> bool {
        true
    }

    fn attach_fingerprint(&self) -> serde_json::Value {
        json!({ "resourceId": self.spec.resource_id })
    }

    fn build_properties(
        &self,
        _secret: Option<&SecretData>,
    ) -> Result<Option<ComputeProperties>, BuildError> {
        // The SDK sends only properties.resourceId for this type (CONTRACT §2, §8).
        Ok(None)
    }
}
