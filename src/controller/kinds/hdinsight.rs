//! `HdInsightTarget` → computeType `HDInsight`.

use serde_json::json;

use crate::api::HdInsightTarget;
use crate::azure::models::{ComputeProperties, ComputeType, HdInsightProperties};
use crate::controller::target::{
    AttachTarget, BuildError, PreflightRead, SecretData, Underlying, ssh_account,
};

impl AttachTarget for HdInsightTarget {
    const KIND: &'static str = "HdInsightTarget";

    fn compute_type() -> ComputeType {
        ComputeType::HdInsight
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

    fn preflight_read(&self) -> Option<PreflightRead> {
        Some(PreflightRead::HdInsight(self.spec.resource_id.clone()))
    }
}
