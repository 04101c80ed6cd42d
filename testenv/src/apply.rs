//! Server-side apply of YAML manifests, like `kubectl apply --server-side`.

use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::{
    Api, Client,
    api::{DynamicObject, GroupVersionKind, Patch, PatchParams},
    discovery::{self, Scope},
};
use serde::Deserialize;

use crate::{Error, wait::wait_for};

/// The field manager of everything this crate applies.
pub const FIELD_MANAGER: &str = "testenv";

/// Splits a multi-document YAML stream into objects, skipping empty documents.
pub(crate) fn parse_manifests(yaml: &str) -> Result<Vec<DynamicObject>, Error> {
    let mut objects = Vec::new();
    for document in serde_yaml::Deserializer::from_str(yaml) {
        let value =
            serde_yaml::Value::deserialize(document).map_err(|e| Error::Manifest(e.to_string()))?;
        if value.is_null() {
            continue;
        }
        let object: DynamicObject =
            serde_yaml::from_value(value).map_err(|e| Error::Manifest(e.to_string()))?;
        if object.types.is_none() {
            return Err(Error::Manifest("a document has no apiVersion/kind".into()));
        }
        if object.metadata.name.is_none() {
            return Err(Error::Manifest("a document has no metadata.name".into()));
        }
        objects.push(object);
    }
    Ok(objects)
}

/// Applies `object`; namespaced objects without `metadata.namespace` go to `namespace`.
/// A CustomResourceDefinition is waited for until it is Established, so its kind can be used
/// right away (also by a later document in the same manifest).
pub(crate) async fn apply_object(
    client: &Client,
    namespace: Option<&str>,
    object: &DynamicObject,
) -> Result<DynamicObject, Error> {
    let types = object
        .types
        .as_ref()
        .ok_or_else(|| Error::Manifest("missing apiVersion/kind".into()))?;
    let name = object
        .metadata
        .name
        .as_deref()
        .ok_or_else(|| Error::Manifest("missing metadata.name".into()))?;
    let gvk = GroupVersionKind::try_from(types).map_err(|e| Error::Manifest(e.to_string()))?;
    let what = format!("{} {name}", types.kind);
    let (resource, capabilities) = discovery::pinned_kind(client, &gvk)
        .await
        .map_err(Error::kube(format!("discovering {}", types.api_version)))?;
    let api: Api<DynamicObject> = match capabilities.scope {
        Scope::Cluster => Api::all_with(client.clone(), &resource),
        Scope::Namespaced => {
            let ns = object
                .metadata
                .namespace
                .as_deref()
                .or(namespace)
                .ok_or_else(|| {
                    Error::Manifest(format!("{what} is namespaced but no namespace was given"))
                })?;
            Api::namespaced_with(client.clone(), ns, &resource)
        }
    };
    let applied = api
        .patch(
            name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(object),
        )
        .await
        .map_err(Error::kube(format!("applying {what}")))?;
    if gvk.group == "apiextensions.k8s.io" && gvk.kind == "CustomResourceDefinition" {
        wait_established(client, name).await?;
    }
    Ok(applied)
}

async fn wait_established(client: &Client, name: &str) -> Result<(), Error> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    wait_for(
        &format!("CustomResourceDefinition {name} to be Established"),
        Duration::from_secs(30),
        async || {
            let crd = crds.get_opt(name).await.ok()??;
            let conditions = crd.status?.conditions?;
            conditions
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True")
                .then_some(())
        },
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_documents_and_skips_empty_ones() {
        let yaml = "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\ndata:\n  k: v\n---\n---\n\
                    apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: b\n";
        let objects = parse_manifests(yaml).unwrap();
        assert_eq!(objects.len(), 2);
        assert_eq!(objects[0].types.as_ref().unwrap().kind, "ConfigMap");
        assert_eq!(objects[0].data["data"]["k"], "v");
        assert_eq!(objects[1].metadata.name.as_deref(), Some("b"));
    }

    #[test]
    fn refuses_documents_without_kind_or_name() {
        assert!(parse_manifests("metadata:\n  name: a\n").is_err());
        assert!(parse_manifests("apiVersion: v1\nkind: ConfigMap\nmetadata: {}\n").is_err());
    }
}
