//! `DataLakeAnalyticsTarget` → computeType `DataLakeAnalytics` (resourceId only, no type-specific properties).

use serde_json::json;

use crate::api::DataLakeAnalyticsTarget;
use crate::azure::models::{ComputeProperties, ComputeType};
use crate::controller::target::{AttachTarget, BuildError, SecretData, Underlying};

impl AttachTarget for DataLakeAnalyticsTarget {
    const KIND: &'static str = "DataLakeAnalyticsTarget";

    fn compute_type() -> ComputeType {
        ComputeType::DataLakeAnalytics
    }

    fn underlying(&self) -> Underlying {
        Underlying::ResourceId(self.spec.resource_id.clone())
    }

    fn secret_name(&self) -> Option<&str> {
        None
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
