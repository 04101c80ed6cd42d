//! `HdInsightTarget` → computeType `HDInsight`.

use serde_json::json;

use crate::api::{HdInsightTarget, TargetStatus};
use crate::azure::models::{ComputeProperties, ComputeType, HdInsightProperties};
use crate::controller::target::{
    AttachTarget, BuildError, CommonSpec, SecretData, Underlying, ssh_account,
};

impl AttachTarget for HdInsightTarget {
    const KIND: &'static str = "HdInsightTarget";

    fn compute_type() -> ComputeType {
        ComputeType::HdInsight
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
        Some(&self.spec.credentials.secret_ref.name)
    }

    fn attach_fingerprint(&self) -> serde_json::Value {
        json!({
            "resourceId": self.spec.resource_id,
            "address": self.spec.address,
            "sshPort": self.spec.ssh_port,
            "credentials": self.spec.credentials,
        })
    }

    fn build_properties(
        &self,
        secret: Option<&SecretData>,
    ) -> Result<Option<ComputeProperties>, BuildError> {
        Ok(Some(ComputeProperties::HdInsight(HdInsightProperties {
            ssh_port: Some(self.spec.ssh_port),
            address: Some(self.spec.address.clone()),
            administrator_account: Some(ssh_account(&self.spec.credentials, secret)?),
        })))
    }
}
