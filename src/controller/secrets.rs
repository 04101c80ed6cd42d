//! Secrets, the operator's only contact with them: credential Secrets opt in with a label and
//! are seen through one metadata-only store; connection Secrets are written only where no one
//! else's Secret stands (rule 12, docs/design/threat-model.md).
//!
//! The decisions (is this Secret opted in? may this target write that Secret?) are pure
//! functions with tests; the few calls around them are in [`Secrets`].

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client, ResourceExt};
use serde_json::json;

use crate::api::FIELD_MANAGER;
use crate::controller::target::SecretData;

/// The label a Secret's owner sets to let the operator read it as a credential.
pub const CREDENTIAL_LABEL: &str = "attach.azureml.io/credential";
/// Its value.
pub const CREDENTIAL_LABEL_VALUE: &str = "true";
/// The label selector of the credential Secret watch.
pub const CREDENTIAL_SELECTOR: &str = "attach.azureml.io/credential=true";

/// The label on every connection Secret the operator writes, and its watch's selector.
pub const CONNECTION_SELECTOR: &str = "app.kubernetes.io/managed-by=azureml-attach";

/// What the operator may know about a credential Secret a spec names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Credential {
    /// Opted in; its resourceVersion (never its data) from the store.
    OptedIn(Option<String>),
    /// It exists without the label: the operator does not read it.
    NotOptedIn,
    /// No Secret of that name.
    Missing,
}

/// Why a credential Secret cannot be used, in words a person acts on.
pub fn not_opted_in_message(name: &str) -> String {
    format!(
        "Secret {name:?} is not labeled {CREDENTIAL_SELECTOR}: the operator reads only Secrets \
         whose owner opted in, so that permission to create a target never exposes an arbitrary \
         Secret through Azure; run `kubectl label secret {name} {CREDENTIAL_SELECTOR}`"
    )
}

/// Whether a Secret's labels opt it in.
pub fn opted_in(meta: &ObjectMeta) -> bool {
    meta.labels
        .as_ref()
        .and_then(|l| l.get(CREDENTIAL_LABEL))
        .is_some_and(|v| v == CREDENTIAL_LABEL_VALUE)
}

/// Who controls an existing Secret, as far as a target that wants to write it is concerned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Control {
    /// No Secret of that name.
    Absent,
    /// It exists and this target is its controller owner.
    Ours,
    /// It exists and belongs to someone else (a description for the condition message).
    Foreign(String),
}

/// Who controls the Secret `meta` (if it exists), seen from the target `uid`.
pub fn control(meta: Option<&ObjectMeta>, uid: &str) -> Control {
    let Some(meta) = meta else {
        return Control::Absent;
    };
    let owners = meta.owner_references.as_deref().unwrap_or_default();
    if let Some(c) = owners.iter().find(|o| o.controller == Some(true)) {
        return if c.uid == uid {
            Control::Ours
        } else {
            Control::Foreign(format!("it is controlled by {} {:?}", c.kind, c.name))
        };
    }
    Control::Foreign(match owners.first() {
        Some(o) => format!(
            "it is owned by {} {:?} and not by this target",
            o.kind, o.name
        ),
        None => "it was not created by this target".to_owned(),
    })
}

/// How a connection-Secret write ended.
#[derive(Debug)]
pub enum WriteOutcome {
    /// Created or updated.
    Written,
    /// A Secret of that name belongs to someone else; nothing was written.
    Conflict(String),
}

/// Why a Secret call failed.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// Kubernetes API failure.
    #[error("Kubernetes API error")]
    Kube(#[source] kube::Error),
    /// Serializing the Secret failed (never expected).
    #[error("cannot serialize the Secret")]
    Serialize(#[source] serde_json::Error),
}

/// Access to Secrets: the credential store of every watched namespace and the client.
#[derive(Clone)]
pub struct Secrets {
    client: Client,
    stores: Vec<Store<PartialObjectMeta<Secret>>>,
    connections: Vec<Store<PartialObjectMeta<Secret>>>,
}

impl Secrets {
    /// Over the label-selected metadata stores of the credential Secret watches (`stores`) and
    /// of the connection Secrets the operator wrote (`connections`).
    pub fn new(
        client: Client,
        stores: Vec<Store<PartialObjectMeta<Secret>>>,
        connections: Vec<Store<PartialObjectMeta<Secret>>>,
    ) -> Self {
        Self {
            client,
            stores,
            connections,
        }
    }

    /// Whether the connection Secret `ns/name` exists and is controlled by the target `uid`.
    /// The store answers in steady state; a miss is confirmed by one metadata GET, since the
    /// store can lag the write this target just made.
    pub async fn connection_in_place(
        &self,
        ns: &str,
        name: &str,
        uid: &str,
    ) -> Result<bool, SecretError> {
        let key = ObjectRef::new(name).within(ns);
        if let Some(m) = self.connections.iter().find_map(|s| s.get(&key))
            && control(Some(&m.metadata), uid) == Control::Ours
        {
            return Ok(true);
        }
        let meta = self
            .api(ns)
            .get_metadata_opt(name)
            .await
            .map_err(SecretError::Kube)?;
        Ok(control(meta.as_ref().map(|m| &m.metadata), uid) == Control::Ours)
    }

    fn api(&self, ns: &str) -> Api<Secret> {
        Api::namespaced(self.client.clone(), ns)
    }

    /// What is known about the credential Secret `ns/name`: the store answers for an opted-in
    /// one; otherwise one metadata-only GET tells a missing Secret from an unlabelled one (so the
    /// condition can say which), without ever reading the unlabelled Secret's data.
    pub async fn credential(&self, ns: &str, name: &str) -> Result<Credential, SecretError> {
        let key = ObjectRef::new(name).within(ns);
        if let Some(m) = self.stores.iter().find_map(|s| s.get(&key)) {
            return Ok(Credential::OptedIn(m.resource_version()));
        }
        let meta = self
            .api(ns)
            .get_metadata_opt(name)
            .await
            .map_err(SecretError::Kube)?;
        Ok(match meta {
            Some(m) if opted_in(&m.metadata) => Credential::OptedIn(m.resource_version()),
            Some(_) => Credential::NotOptedIn,
            None => Credential::Missing,
        })
    }

    /// Reads an opted-in credential Secret's data (rule 10: right before it goes to Azure).
    /// A Secret that lost its label in the meantime reads as [`Credential::NotOptedIn`] and its
    /// data is dropped here.
    pub async fn read_credential(
        &self,
        ns: &str,
        name: &str,
    ) -> Result<Result<SecretData, Credential>, SecretError> {
        let secret = self
            .api(ns)
            .get_opt(name)
            .await
            .map_err(SecretError::Kube)?;
        Ok(match secret {
            None => Err(Credential::Missing),
            Some(s) if !opted_in(&s.metadata) => Err(Credential::NotOptedIn),
            Some(s) => Ok(SecretData(s.data.unwrap_or_default())),
        })
    }

    /// Writes the connection Secret `name` for the target `owner`, unless a Secret of that name
    /// belongs to anyone else: then nothing is written. A new Secret is created (never applied
    /// over one that appeared meanwhile: create fails on a name that exists); one this target
    /// controls is applied with its resourceVersion as precondition.
    pub async fn write_connection(
        &self,
        ns: &str,
        name: &str,
        owner: OwnerReference,
        data: BTreeMap<String, ByteString>,
    ) -> Result<WriteOutcome, SecretError> {
        let api = self.api(ns);
        let existing = api
            .get_metadata_opt(name)
            .await
            .map_err(SecretError::Kube)?;
        let resource_version = match control(existing.as_ref().map(|m| &m.metadata), &owner.uid) {
            Control::Foreign(why) => return Ok(WriteOutcome::Conflict(why)),
            Control::Absent => None,
            Control::Ours => existing.and_then(|m| m.resource_version()),
        };
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                namespace: Some(ns.to_owned()),
                owner_references: Some(vec![owner]),
                labels: Some(BTreeMap::from([(
                    "app.kubernetes.io/managed-by".to_owned(),
                    "azureml-attach".to_owned(),
                )])),
                resource_version: resource_version.clone(),
                ..Default::default()
            },
            data: Some(data),
            type_: Some("Opaque".to_owned()),
            ..Default::default()
        };
        let result = match resource_version {
            None => {
                let pp = PostParams {
                    field_manager: Some(FIELD_MANAGER.to_owned()),
                    ..Default::default()
                };
                api.create(&pp, &secret).await.map(drop)
            }
            Some(_) => {
                let mut value = serde_json::to_value(&secret).map_err(SecretError::Serialize)?;
                value["apiVersion"] = json!("v1");
                value["kind"] = json!("Secret");
                // Forced: the Secret is this target's; the resourceVersion guards the check above.
                api.patch(
                    name,
                    &PatchParams::apply(FIELD_MANAGER).force(),
                    &Patch::Apply(value),
                )
                .await
                .map(drop)
            }
        };
        // A 409 (created or changed by someone else since the check) is an error like any
        // other: the next pass decides again from a fresh look.
        result
            .map(|()| WriteOutcome::Written)
            .map_err(SecretError::Kube)
    }

    /// Deletes the Secret `name` if, and only if, the target `uid` controls it (a renamed or
    /// removed `writeConnectionSecretToRef`). Returns whether it deleted something.
    pub async fn delete_if_controlled(
        &self,
        ns: &str,
        name: &str,
        uid: &str,
    ) -> Result<bool, SecretError> {
        let api = self.api(ns);
        let Some(meta) = api
            .get_metadata_opt(name)
            .await
            .map_err(SecretError::Kube)?
        else {
            return Ok(false);
        };
        if control(Some(&meta.metadata), uid) != Control::Ours {
            return Ok(false);
        }
        let dp = DeleteParams {
            preconditions: Some(Preconditions {
                uid: meta.uid(),
                resource_version: meta.resource_version(),
            }),
            ..Default::default()
        };
        match api.delete(name, &dp).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(false),
            Err(e) => Err(SecretError::Kube(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(uid: &str, controller: Option<bool>) -> OwnerReference {
        OwnerReference {
            api_version: "attach.azureml.io/v1alpha1".into(),
            kind: "RemoteVmTarget".into(),
            name: "gpu".into(),
            uid: uid.into(),
            controller,
            block_owner_deletion: None,
        }
    }

    fn meta(owners: Vec<OwnerReference>) -> ObjectMeta {
        ObjectMeta {
            owner_references: Some(owners),
            ..Default::default()
        }
    }

    #[test]
    fn rule12_only_an_absent_secret_or_one_this_target_controls_is_written() {
        assert_eq!(control(None, "u1"), Control::Absent);
        assert_eq!(
            control(Some(&meta(vec![owner("u1", Some(true))])), "u1"),
            Control::Ours
        );
        // An application's own Secret, no owners at all.
        assert!(matches!(
            control(Some(&ObjectMeta::default()), "u1"),
            Control::Foreign(_)
        ));
        // Owned by this target but not as controller (someone added the reference by hand).
        assert!(matches!(
            control(Some(&meta(vec![owner("u1", None)])), "u1"),
            Control::Foreign(_)
        ));
        // Controlled by another object, even with this target as an extra owner.
        let foreign = control(
            Some(&meta(vec![owner("u1", None), owner("u2", Some(true))])),
            "u1",
        );
        assert!(matches!(foreign, Control::Foreign(ref m) if m.contains("controlled by")));
    }

    #[test]
    fn rule12_only_the_exact_label_value_opts_in() {
        let labelled = |v: &str| ObjectMeta {
            labels: Some(BTreeMap::from([(
                CREDENTIAL_LABEL.to_owned(),
                v.to_owned(),
            )])),
            ..Default::default()
        };
        assert!(opted_in(&labelled("true")));
        assert!(!opted_in(&labelled("True")));
        assert!(!opted_in(&labelled("")));
        assert!(!opted_in(&ObjectMeta::default()));
        assert_eq!(
            CREDENTIAL_SELECTOR,
            format!("{CREDENTIAL_LABEL}={CREDENTIAL_LABEL_VALUE}")
        );
        assert!(not_opted_in_message("ssh").contains("kubectl label secret ssh"));
    }
}
