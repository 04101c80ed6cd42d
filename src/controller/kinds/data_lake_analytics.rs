//! `DataLakeAnalyticsTarget` → computeType `DataLakeAnalytics` (resourceId only, no type-specific properties).

use serde_json::json;

use crate::api::{DataLakeAnalyticsTarget, TargetStatus};
use crate::azure::models::{ComputeProperties, ComputeType};
use crate::controller::target::{AttachTarget, BuildError, CommonSpec, SecretData, Underlying};

impl AttachTarget for DataLakeAnalyticsTarget {
    const KIND: &'static str = "DataLakeAnalyticsTarget";

    fn compute_type() -> ComputeType {
        ComputeType::DataLakeAnalytics
    }

    fn common(&self) -> CommonSpec<'_> {
        CommonSpec {
            workspace_ref: &self.spec.workspace_ref,
            compute_name: self.spec.compute_name.as_deref(),
            deletion_policy: self.spec.deletion_policy,
            write_connection_secret_to_ref: self.spec.write_connection_secret_to_ref.as_ref(),
        }
    }

    fn target_status(&self) -> Option<&TargetStatus> {
        self.status.as_ref()
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
