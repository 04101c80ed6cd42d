//! `HdInsightTarget`: an existing HDInsight (Spark) cluster attached over SSH.

use super::common::{SshCredentials, TargetStatus, default_ssh_port};
use super::target::target_crd;

target_crd! {
    /// Attach an existing HDInsight cluster to an Azure ML workspace as an `HDInsight` compute
    /// target. The cluster is never deleted: removing the object detaches it.
    kind = "HdInsightTarget",
    shortnames = ["hdi"],
    doc = "An existing Azure HDInsight (Spark) cluster attached to an Azure ML workspace as an HDInsight compute target.",
    pub struct HdInsightTargetSpec {
        /// ARM id of an HDInsight cluster: /subscriptions/<subscription id>/resourceGroups/<group>/providers/Microsoft.HDInsight/clusters/<name>.
        /// Immutable: a different resource is a different attachment.
        #[x_kube(
            validation = Rule::new("self.matches('(?i)^/subscriptions/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/resourcegroups/[^/]{1,90}/providers/microsoft[.]hdinsight/clusters/[^/]{1,80}$')").message("spec.resourceId must be the ARM id of an HDInsight cluster: /subscriptions/<subscription id>/resourceGroups/<group>/providers/Microsoft.HDInsight/clusters/<name>"),
            validation = Rule::new("self == oldSelf").message("spec.resourceId is immutable: delete the target and create a new one")
        )]
        #[schemars(length(max = 512))]
        pub resource_id: String,
        /// SSH host of the cluster, normally `<cluster>-ssh.azurehdinsight.net` (a host name or IP
        /// address: no scheme, port or path). Changing it re-attaches.
        #[x_kube(
            validation = Rule::new("!self.contains('://')").message("spec.address is an SSH host such as <cluster>-ssh.azurehdinsight.net, not a URL: remove the scheme (https://, ssh://)"),
            validation = Rule::new("self.matches('^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?([.][A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$')").message("spec.address must be a host name or IP address such as <cluster>-ssh.azurehdinsight.net, without a port or path (the port is spec.sshPort)")
        )]
        #[schemars(length(min = 1, max = 253))]
        pub address: String,
        /// SSH port (1-65535, default 22). Changing it re-attaches.
        #[serde(default = "default_ssh_port")]
        #[schemars(range(min = 1, max = 65535))]
        pub ssh_port: i32,
        /// The SSH login of the cluster, from a Secret. Rotating the Secret re-attaches.
        pub credentials: SshCredentials,
    }
}
