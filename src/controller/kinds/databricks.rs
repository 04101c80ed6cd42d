//! `DatabricksTarget` → computeType `Databricks`.

use serde_json::json;

use crate::api::DatabricksTarget;
use crate::azure::models::{ComputeProperties, ComputeType, DatabricksProperties};
use crate::controller::target::{AttachTarget, BuildError, SecretData, Underlying};

impl AttachTarget for DatabricksTarget {
    const KIND: &'static str = "DatabricksTarget";

    fn compute_type() -> ComputeType {
        ComputeType::Databricks
    }

    fn underlying(&self) -> Underlying {
        Underlying::ResourceId(self.spec.resource_id.clone())
    }

    fn secret_name(&self) -> Option<&str> {
        Some(&self.spec.access_token_secret_ref.name)
    }

    fn attach_fingerprint(&self) -> serde_json::Value {
        json!({
            "resourceId": self.spec.resource_id,
            "workspaceUrl": self.spec.workspace_url,
            "accessTokenSecretRef": self.spec.access_token_secret_ref,
        })
    }

    fn build_properties(
        &self,
        secret: Option<&SecretData>,
    ) -> Result<Option<ComputeProperties>, BuildError> {
        let r = &self.spec.access_token_secret_ref;
        let data = secret
            .ok_or_else(|| BuildError::InvalidSpec(format!("Secret {:?} was not read", r.name)))?;
        Ok(Some(ComputeProperties::Databricks(DatabricksProperties {
            databricks_access_token: Some(data.text(&r.name, &r.key)?),
            workspace_url: self.spec.workspace_url.clone(),
        })))
    }
}
