//! `RemoteVmTarget` → computeType `VirtualMachine`.

use serde_json::json;

use crate::api::RemoteVmTarget;
use crate::azure::models::{ComputeProperties, ComputeType, VirtualMachineProperties};
use crate::controller::target::{
    AttachTarget, BuildError, PreflightRead, SecretData, Underlying, ssh_account,
};

impl AttachTarget for RemoteVmTarget {
    const KIND: &'static str = "RemoteVmTarget";

    fn compute_type() -> ComputeType {
        ComputeType::VirtualMachine
    }

    fn underlying(&self) -> Underlying {
        match (&self.spec.resource_id, &self.spec.address) {
            (Some(id), _) => Underlying::ResourceId(id.clone()),
            (None, Some(address)) => Underlying::Address(address.clone()),
            (None, None) => Underlying::Address(String::new()),
        }
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
        if self.spec.resource_id.is_some() == self.spec.address.is_some() {
            return Err(BuildError::InvalidSpec(
                "set exactly one of spec.resourceId or spec.address".into(),
            ));
        }
        // The SDK sends resourceId *or* address, never both (CONTRACT §2).
        Ok(Some(ComputeProperties::VirtualMachine(
            VirtualMachineProperties {
                ssh_port: Some(self.spec.ssh_port),
                address: self.spec.address.clone(),
                administrator_account: Some(ssh_account(&self.spec.credentials, secret)?),
                ..Default::default()
            },
        )))
    }

    fn preflight_read(&self) -> Option<PreflightRead> {
        self.spec
            .resource_id
            .clone()
            .map(PreflightRead::VirtualMachine)
    }
}
