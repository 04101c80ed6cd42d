//! `DataLakeAnalyticsTarget`: an existing Data Lake Analytics account (retired service).

use super::common::TargetStatus;
use super::target::target_crd;

target_crd! {
    /// Attach an existing Data Lake Analytics account to an Azure ML workspace. The service was
    /// retired in 2024; the kind stays so that Azure's answer is surfaced in status.
    kind = "DataLakeAnalyticsTarget",
    shortnames = ["adla"],
    doc = "An existing Azure Data Lake Analytics account attached to an Azure ML workspace (the service was retired in 2024; Azure answers are surfaced in status).",
    pub struct DataLakeAnalyticsTargetSpec {
        /// ARM id of a Data Lake Analytics account: /subscriptions/<subscription id>/resourceGroups/<group>/providers/Microsoft.DataLakeAnalytics/accounts/<name>.
        /// Immutable: a different resource is a different attachment.
        #[x_kube(
            validation = Rule::new("self.matches('(?i)^/subscriptions/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/resourcegroups/[^/]{1,90}/providers/microsoft[.]datalakeanalytics/accounts/[^/]{1,80}$')").message("spec.resourceId must be the ARM id of a Data Lake Analytics account: /subscriptions/<subscription id>/resourceGroups/<group>/providers/Microsoft.DataLakeAnalytics/accounts/<name>"),
            validation = Rule::new("self == oldSelf").message("spec.resourceId is immutable: delete the target and create a new one")
        )]
        #[schemars(length(max = 512))]
        pub resource_id: String,
    }
}
