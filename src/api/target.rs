//! The shape every target kind shares, written once.
//!
//! `target_crd!` wraps a kind's spec: it adds the CRD attributes every target has (group,
//! version, status, category, printer columns, the compute-name rules) and composes the fields
//! every target has ([`TargetCommon`](crate::api::TargetCommon), `#[serde(flatten)]`) with the
//! kind's own fields. A new kind is its own fields and documentation, in its own small file.

/// Declares a target kind. See the module documentation.
macro_rules! target_crd {
    (
        $(#[$meta:meta])*
        kind = $kind:tt,
        shortnames = [$($short:tt),+],
        doc = $doc:tt,
        $(validation = $rule:expr,)*
        $(#[$smeta:meta])*
        pub struct $spec:ident {
            $($fields:tt)*
        }
    ) => {
        $(#[$meta])*
        #[derive(
            kube::CustomResource,
            kube::KubeSchema,
            serde::Serialize,
            serde::Deserialize,
            Clone,
            Debug,
            PartialEq
        )]
        #[kube(
            group = "attach.azureml.io",
            version = "v1alpha1",
            kind = $kind,
            namespaced,
            status = "TargetStatus",
            $(shortname = $short,)+
            category = "azureml",
            doc = $doc,
            printcolumn(name = "Workspace", type_ = "string", json_path = ".spec.workspaceRef.name"),
            printcolumn(name = "Compute", type_ = "string", json_path = ".status.computeName"),
            printcolumn(name = "State", type_ = "string", json_path = ".status.provisioningState"),
            printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
            printcolumn(name = "Reason", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].reason"),
            printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
            validation = Rule::new("has(self.spec.computeName) || (self.metadata.name.matches('^[a-zA-Z][a-zA-Z0-9-]{2,23}$') && !self.metadata.name.matches('-[0-9]+$'))").message("metadata.name is not a valid Azure compute name (3-24 letters, digits or '-', starting with a letter, not ending in -<digits>): set spec.computeName"),
            validation = Rule::new("has(self.spec.computeName) == has(oldSelf.spec.computeName)").message("spec.computeName cannot be added or removed: delete the target and create a new one"),
            $(validation = $rule,)*
        )]
        #[serde(rename_all = "camelCase")]
        $(#[$smeta])*
        pub struct $spec {
            /// The fields every target has (workspaceRef, computeName, deletionPolicy,
            /// preflight, writeConnectionSecretToRef), flattened into the spec.
            #[serde(flatten)]
            pub common: $crate::api::common::TargetCommon,
            $($fields)*
        }

        impl $crate::api::common::TargetSpec for $spec {
            fn common(&self) -> &$crate::api::common::TargetCommon {
                &self.common
            }
        }
    };
}

pub(crate) use target_crd;
