//! `RemoteVmTarget`: an existing Linux VM (e.g. a Data Science VM) attached over SSH.

use super::common::{SshCredentials, TargetStatus, default_ssh_port};
use super::target::target_crd;

target_crd! {
    /// Attach an existing virtual machine to an Azure ML workspace as a `VirtualMachine` compute
    /// target. The VM is never deleted: removing the object detaches it.
    kind = "RemoteVmTarget",
    shortnames = ["rvm", "vmtarget"],
    doc = "An existing Linux VM (Ubuntu DSVM with a public address) attached to an Azure ML workspace as a VirtualMachine compute target.",
    validation = Rule::new("has(self.spec.resourceId) == has(oldSelf.spec.resourceId)").message("spec.resourceId cannot be added or removed: delete the target and create a new one"),
    #[x_kube(validation = Rule::new("has(self.resourceId) != has(self.address)").message("set exactly one of spec.resourceId (the VM's ARM id) or spec.address (its public DNS name or IP)"))]
    pub struct RemoteVmTargetSpec {
        /// ARM id of the VM: /subscriptions/<id>/resourceGroups/<rg>/providers/Microsoft.Compute/virtualMachines/<name>.
        /// Set this or `address`. Immutable: a different VM is a different attachment.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[x_kube(
            validation = Rule::new("self.matches('(?i)^/subscriptions/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/resourcegroups/[^/]{1,90}/providers/microsoft[.]compute/virtualmachines/[^/]{1,80}$')").message("spec.resourceId must be a virtual machine's ARM id: /subscriptions/<subscription id>/resourceGroups/<group>/providers/Microsoft.Compute/virtualMachines/<name>"),
            validation = Rule::new("self == oldSelf").message("spec.resourceId is immutable: delete the target and create a new one")
        )]
        #[schemars(length(max = 512))]
        pub resource_id: Option<String>,
        /// Public DNS name or IP address of the VM, when it is not addressed by `resourceId`.
        /// Changing it re-attaches.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(length(min = 1, max = 253))]
        pub address: Option<String>,
        /// SSH port (1-65535, default 22). Changing it re-attaches.
        #[serde(default = "default_ssh_port")]
        #[schemars(range(min = 1, max = 65535))]
        pub ssh_port: i32,
        /// The login Azure ML uses on the VM, from a Secret. Rotating the Secret re-attaches.
        pub credentials: SshCredentials,
    }
}
