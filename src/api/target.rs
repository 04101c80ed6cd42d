//! The shape every target kind shares, written once.
//!
//! `target_crd!` wraps a kind's spec: it adds the CRD attributes every target has (group,
//! version, status, category, printer columns, the compute-name rules) and the fields every
//! target has (`workspaceRef` and `computeName` first, `deletionPolicy` and
//! `writeConnectionSecretToRef` last) around the kind's own fields. A new kind is its own
//! fields and documentation, in its own small file.

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
            /// The MLWorkspace (same namespace) to attach to. Immutable.
            #[x_kube(validation = Rule::new("self == oldSelf").message("spec.workspaceRef is immutable: delete the target and create a new one"))]
            pub workspace_ref: $crate::api::common::WorkspaceRef,
            /// Compute name in the workspace; defaults to metadata.name. Azure's rule: 3-24 letters,
            /// digits or '-', starting with a letter, not ending in -<digits>. Immutable.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            #[x_kube(
                validation = Rule::new("self.matches('^[a-zA-Z][a-zA-Z0-9-]{2,23}$') && !self.matches('-[0-9]+$')").message("spec.computeName must be 3-24 letters, digits or '-', start with a letter and not end in -<digits>"),
                validation = Rule::new("self == oldSelf").message("spec.computeName is immutable: delete the target and create a new one")
            )]
            #[schemars(length(max = 24))]
            pub compute_name: Option<String>,
            $($fields)*
            /// Detach (default) or Orphan when this object is deleted. Never deletes the underlying resource.
            #[serde(default)]
            pub deletion_policy: $crate::api::common::DeletionPolicy,
            /// Check the underlying resource's prerequisites before the first PUT: Enforce
            /// (default: a failed check stops the attach), Warn (report it and attach) or Skip.
            #[serde(default, skip_serializing_if = "crate::api::common::PreflightMode::is_default")]
            pub preflight: $crate::api::common::PreflightMode,
            /// Optional Secret to write with the attachment's ids and the keys Azure returns (listKeys).
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub write_connection_secret_to_ref: Option<$crate::api::common::ConnectionSecretRef>,
        }
    };
}

pub(crate) use target_crd;
