//! One small file per target kind: its `AttachTarget` implementation.

mod batch;
mod data_lake_analytics;
mod databricks;
mod hdinsight;
mod kubernetes;
mod remote_vm;
mod synapse_spark;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

use crate::api::{
    BatchTarget, DataLakeAnalyticsTarget, DatabricksTarget, HdInsightTarget, KubernetesTarget,
    RemoteVmTarget, SynapseSparkTarget,
};
use crate::controller::target::AttachTarget;

/// Something done once per target kind (see [`for_each_kind`]).
pub trait KindVisitor {
    /// Called with each kind in turn.
    fn visit<K: AttachTarget + CustomResourceExt + Unpin>(&mut self);
}

/// The registry of target kinds: the controllers, the workspace's wait for its targets,
/// `azureml-attach crds` and the RBAC coverage test all go through it, so a new kind is one
/// line here (plus its two files, a sample and a doc page).
pub fn for_each_kind(v: &mut impl KindVisitor) {
    v.visit::<RemoteVmTarget>();
    v.visit::<HdInsightTarget>();
    v.visit::<BatchTarget>();
    v.visit::<DatabricksTarget>();
    v.visit::<DataLakeAnalyticsTarget>();
    v.visit::<KubernetesTarget>();
    v.visit::<SynapseSparkTarget>();
}

/// The CRDs of every target kind, in registry order.
pub fn target_crds() -> Vec<CustomResourceDefinition> {
    struct Crds(Vec<CustomResourceDefinition>);
    impl KindVisitor for Crds {
        fn visit<K: AttachTarget + CustomResourceExt + Unpin>(&mut self) {
            self.0.push(K::crd());
        }
    }
    let mut crds = Crds(Vec::new());
    for_each_kind(&mut crds);
    crds.0
}

/// A target kind's names, from the registry (for tests, tools and RBAC checks).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KindNames {
    /// `RemoteVmTarget`, …
    pub kind: &'static str,
    /// `remotevmtargets`, …
    pub plural: String,
}

/// The names of every target kind, in registry order.
pub fn target_kinds() -> Vec<KindNames> {
    struct Names(Vec<KindNames>);
    impl KindVisitor for Names {
        fn visit<K: AttachTarget + CustomResourceExt + Unpin>(&mut self) {
            self.0.push(KindNames {
                kind: K::KIND,
                plural: K::plural(&()).into_owned(),
            });
        }
    }
    let mut names = Names(Vec::new());
    for_each_kind(&mut names);
    names.0
}

/// The plural resource name of every target kind (`remotevmtargets`, …), for RBAC.
pub fn target_plurals() -> Vec<String> {
    target_kinds().into_iter().map(|k| k.plural).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every kind's resource and its status are granted in `deploy/` and in the chart, in the
    /// cluster-wide and the per-namespace forms.
    #[test]
    fn rbac_in_deploy_and_the_chart_covers_every_kind() {
        let files = [
            (
                "deploy/base/rbac.yaml",
                include_str!("../../../deploy/base/rbac.yaml"),
            ),
            (
                "charts/azureml-attach/templates/rbac.yaml",
                include_str!("../../../charts/azureml-attach/templates/rbac.yaml"),
            ),
            (
                "deploy/overlays/namespaced/watched-namespace/rbac.yaml",
                include_str!("../../../deploy/overlays/namespaced/watched-namespace/rbac.yaml"),
            ),
        ];
        let plurals = target_plurals();
        assert_eq!(plurals.len(), target_crds().len());
        for (path, text) in files {
            for plural in &plurals {
                for resource in [plural.clone(), format!("{plural}/status")] {
                    assert!(
                        text.lines().any(|l| l.trim() == format!("- {resource}")),
                        "{path} does not grant {resource}"
                    );
                }
            }
        }
    }
}
