//! The pure half of the import: Azure's compute list → the documents to print, and which
//! computes were left out and why.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Serialize;
use serde_yaml::Value;

use super::kinds::{self, Context};
use super::{CredentialChoice, PLACEHOLDER_PREFIX, Settings};
use crate::api::{
    ClientSecretCredential, CredentialType, MLWorkspace, MLWorkspaceSpec,
    ManagedIdentityCredential, SecretKeyRef, WorkloadIdentityCredential, WorkspaceCredential,
    is_valid_compute_name,
};
use crate::azure::models::{ComputeResource, ComputeType, ProvisioningState};
use crate::controller::secrets::{CREDENTIAL_LABEL, CREDENTIAL_LABEL_VALUE};

/// One YAML document with the comment lines printed above it.
#[derive(Clone, Debug, PartialEq)]
pub struct Document {
    /// Comment lines (without `# `), one line each.
    pub comments: Vec<String>,
    /// The object, its fields in the API types' order.
    pub object: Value,
}

impl Document {
    /// `kind` of the object.
    pub fn kind(&self) -> &str {
        self.object["kind"].as_str().unwrap_or_default()
    }

    /// `metadata.name` of the object.
    pub fn name(&self) -> &str {
        self.object["metadata"]["name"].as_str().unwrap_or_default()
    }
}

/// A compute that is not in the output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skipped {
    /// Azure's compute name.
    pub compute: String,
    /// Azure's compute type.
    pub compute_type: String,
    /// Why.
    pub why: SkipReason,
}

/// Why a compute is not in the output.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SkipReason {
    /// A type Azure ML manages, or not attached (AmlCompute, ComputeInstance, AKS inference, …).
    #[error("not attachable by this operator (yet)")]
    NotAttachable,
    /// A type this version does not know.
    #[error("unknown compute type")]
    UnknownType,
    /// Azure is detaching it.
    #[error("being deleted in Azure")]
    Deleting,
    /// Older computes may break today's naming rule, which the CRDs enforce.
    #[error(
        "its name breaks Azure's compute-name rule that the CRDs enforce (3-24 letters, digits or '-', starting with a letter, not ending in -<digits>)"
    )]
    InvalidComputeName,
    /// The underlying resource is missing from Azure's answer.
    #[error("Azure's answer names no underlying resource ({0})")]
    NoUnderlyingResource(&'static str),
    /// `properties.resourceId` is not the kind of resource the compute type attaches.
    #[error("properties.resourceId is not the ARM id of {0}")]
    WrongResource(&'static str),
    /// An SSH port outside 1-65535.
    #[error("sshPort {0} is outside 1-65535")]
    SshPort(i32),
    /// Another compute of the workspace attaches the same resource; the operator keeps one
    /// target per resource (rule 4), so a second target would only report DuplicateAttachment.
    #[error("it attaches the same resource as compute {0:?}, which is imported")]
    SameResourceAs(String),
}

/// Everything the import prints.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Output {
    /// The documents, in apply order (Secrets before the objects that reference them).
    pub documents: Vec<Document>,
    /// Computes left out.
    pub skipped: Vec<Skipped>,
    /// Remarks for stderr (names and states, never values).
    pub notes: Vec<String>,
}

impl Output {
    /// The documents as one multi-document YAML stream, comments included.
    pub fn to_yaml(&self) -> Result<String, serde_yaml::Error> {
        let mut out = String::new();
        for doc in &self.documents {
            out.push_str("---\n");
            for line in &doc.comments {
                out.push_str("# ");
                out.push_str(line);
                out.push('\n');
            }
            out.push_str(&serde_yaml::to_string(&doc.object)?);
        }
        Ok(out)
    }

    /// The target documents.
    pub fn targets(&self) -> Vec<&Document> {
        self.documents
            .iter()
            .filter(|d| d.kind().ends_with("Target"))
            .collect()
    }

    /// Names of the Secrets whose placeholders must be filled in.
    pub fn stubs(&self) -> Vec<&str> {
        self.documents
            .iter()
            .filter(|d| d.kind() == "Secret")
            .map(Document::name)
            .collect()
    }
}

/// The manifests for `computes` (a workspace LIST), per `settings`.
pub fn manifests(settings: &Settings, computes: &[ComputeResource]) -> Output {
    let mut out = Output::default();
    workspace_documents(settings, &mut out);
    let ctx = Context {
        namespace: &settings.namespace,
        workspace_object: &settings.workspace_object,
        ssh_login: settings.ssh_login,
    };
    let mut sorted: Vec<&ComputeResource> = computes.iter().collect();
    sorted.sort_by_key(|c| c.name.as_deref().unwrap_or_default().to_ascii_lowercase());
    let mut object_names = BTreeSet::new();
    let mut claimed: BTreeMap<String, String> = BTreeMap::new();
    for compute in sorted {
        let name = compute.name.clone().unwrap_or_default();
        let compute_type = compute
            .compute_type()
            .cloned()
            .unwrap_or(ComputeType::Other(String::new()));
        let skip = |why| Skipped {
            compute: name.clone(),
            compute_type: compute_type.to_string(),
            why,
        };
        if let Err(why) = supported(&compute_type)
            .and_then(|()| usable_name(&name))
            .and_then(|()| not_deleting(compute))
        {
            out.skipped.push(skip(why));
            continue;
        }
        let object = unique(object_name(&name), &mut object_names);
        let compute_name = (object != name).then(|| name.clone());
        let imported = match kinds::import(compute, &object, compute_name.clone(), &ctx) {
            Ok(i) => i,
            Err(why) => {
                out.skipped.push(skip(why));
                continue;
            }
        };
        if let Some(first) = claimed.get(&imported.claim_key) {
            out.skipped
                .push(skip(SkipReason::SameResourceAs(first.clone())));
            continue;
        }
        claimed.insert(imported.claim_key.clone(), name.clone());
        let mut comments = vec![format!("Azure compute {name:?} ({compute_type})")];
        if compute_name.is_some() {
            comments.push(format!(
                "metadata.name is {object:?}: {name:?} is not a valid Kubernetes name; spec.computeName keeps Azure's"
            ));
        }
        comments.extend(state_comments(compute, &name, &mut out.notes));
        comments.extend(imported.comments);
        if let Some(secret) = imported.secret {
            out.documents.push(Document {
                comments: vec![
                    format!("Credentials of {object}: Azure never returns them."),
                    format!("Replace every \"{PLACEHOLDER_PREFIX}…>\" value before applying."),
                ],
                object: to_value(&secret),
            });
        }
        out.documents.push(Document {
            comments,
            object: imported.target,
        });
    }
    out
}

/// The MLWorkspace, and the Secret stub its client secret lives in.
fn workspace_documents(settings: &Settings, out: &mut Output) {
    let object = &settings.workspace_object;
    let mut credential = WorkspaceCredential::default();
    let mut comments = vec![format!(
        "Azure ML workspace {} (imported by azureml-attach import)",
        settings.workspace.arm_id()
    )];
    match &settings.credential {
        CredentialChoice::Default => credential.type_ = CredentialType::Default,
        CredentialChoice::AzureCli { .. } => {
            credential.type_ = CredentialType::Default;
            comments.push(
                "The import used the Azure CLI's account; the operator uses its own identity (type Default)."
                    .to_owned(),
            );
            out.notes.push(format!(
                "MLWorkspace {object} uses the operator's own identity (credential.type Default): the Azure CLI is not an operator credential"
            ));
        }
        CredentialChoice::WorkloadIdentity {
            tenant_id,
            client_id,
        } => {
            credential.type_ = CredentialType::WorkloadIdentity;
            credential.workload_identity = Some(WorkloadIdentityCredential {
                client_id: client_id.clone(),
                tenant_id: tenant_id.clone(),
            });
        }
        CredentialChoice::ManagedIdentity { client_id } => {
            credential.type_ = CredentialType::ManagedIdentity;
            credential.managed_identity = client_id.clone().map(|id| ManagedIdentityCredential {
                client_id: Some(id),
            });
        }
        CredentialChoice::ClientSecret {
            tenant_id,
            client_id,
        } => {
            let secret = format!("{object}-sp");
            credential.type_ = CredentialType::ClientSecret;
            credential.client_secret = Some(ClientSecretCredential {
                tenant_id: tenant_id.clone(),
                client_id: client_id.clone(),
                secret_ref: SecretKeyRef {
                    name: secret.clone(),
                    key: "clientSecret".to_owned(),
                },
            });
            let stub = secret_stub(
                &secret,
                &settings.namespace,
                [(
                    "clientSecret",
                    format!("{PLACEHOLDER_PREFIX}client secret of application {client_id}>"),
                )],
            );
            out.documents.push(Document {
                comments: vec![
                    format!("The client secret of {object}: never printed by the import."),
                    format!("Replace the \"{PLACEHOLDER_PREFIX}…>\" value before applying."),
                ],
                object: to_value(&stub),
            });
        }
    }
    let mut ws = MLWorkspace::new(
        object,
        MLWorkspaceSpec {
            subscription_id: settings.workspace.subscription_id.clone(),
            resource_group: settings.workspace.resource_group.clone(),
            workspace_name: settings.workspace.workspace_name.clone(),
            cloud: settings.cloud,
            credential,
        },
    );
    ws.metadata.namespace = Some(settings.namespace.clone());
    out.documents.push(Document {
        comments,
        object: to_value(&ws),
    });
}

/// A Secret with the credential label (rule 12) and placeholder values.
pub(super) fn secret_stub<const N: usize>(
    name: &str,
    namespace: &str,
    data: [(&str, String); N],
) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(namespace.to_owned()),
            labels: Some(BTreeMap::from([(
                CREDENTIAL_LABEL.to_owned(),
                CREDENTIAL_LABEL_VALUE.to_owned(),
            )])),
            ..Default::default()
        },
        type_: Some("Opaque".to_owned()),
        string_data: Some(data.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()),
        ..Default::default()
    }
}

/// Serializes an object the API types describe (their serialization cannot fail), keeping
/// their field order (`apiVersion`, `kind`, `metadata`, `spec`).
pub(super) fn to_value<T: Serialize>(object: &T) -> Value {
    serde_yaml::to_value(object).unwrap_or(Value::Null)
}

fn supported(compute_type: &ComputeType) -> Result<(), SkipReason> {
    match compute_type {
        ComputeType::VirtualMachine
        | ComputeType::HdInsight
        | ComputeType::Batch
        | ComputeType::Databricks
        | ComputeType::DataLakeAnalytics
        | ComputeType::Kubernetes
        | ComputeType::SynapseSpark => Ok(()),
        ComputeType::AmlCompute
        | ComputeType::ComputeInstance
        | ComputeType::Aks
        | ComputeType::DataFactory => Err(SkipReason::NotAttachable),
        ComputeType::Other(_) => Err(SkipReason::UnknownType),
    }
}

fn usable_name(name: &str) -> Result<(), SkipReason> {
    if is_valid_compute_name(name) {
        Ok(())
    } else {
        Err(SkipReason::InvalidComputeName)
    }
}

fn not_deleting(compute: &ComputeResource) -> Result<(), SkipReason> {
    match compute.provisioning_state() {
        Some(ProvisioningState::Deleting) => Err(SkipReason::Deleting),
        _ => Ok(()),
    }
}

/// Comments (and a note) for a compute Azure does not report as Succeeded.
fn state_comments(compute: &ComputeResource, name: &str, notes: &mut Vec<String>) -> Vec<String> {
    let Some(state) = compute.provisioning_state() else {
        return Vec::new();
    };
    if *state == ProvisioningState::Succeeded {
        return Vec::new();
    }
    let mut lines = vec![format!(
        "NOTE: Azure reports provisioningState {state} for this attachment; once applied, the target reports it in status."
    )];
    if *state == ProvisioningState::Failed {
        notes.push(format!(
            "compute {name:?} is Failed in Azure: emitted anyway, with a comment"
        ));
        let errors = compute
            .properties
            .iter()
            .flat_map(|p| &p.provisioning_errors)
            .filter_map(|e| e.error.as_ref());
        for e in errors {
            lines.push(one_line(&format!(
                "  {}: {}",
                e.code.as_deref().unwrap_or("Error"),
                e.message.as_deref().unwrap_or_default()
            )));
        }
        lines.push(
            "Fix the underlying resource and re-attach (delete the compute in Azure, then apply), or leave it out."
                .to_owned(),
        );
    }
    lines
}

/// Text from Azure, safe inside a `#` comment line.
pub(super) fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// `name` if it is a valid Kubernetes object name (DNS-1123 subdomain), else a sanitized one:
/// lowercased, other characters replaced by `-`, no leading or trailing `-`.
pub fn object_name(name: &str) -> String {
    let lowered: String = name
        .chars()
        .map(|c| match c {
            'a'..='z' | '0'..='9' | '-' => c,
            'A'..='Z' => c.to_ascii_lowercase(),
            _ => '-',
        })
        .collect();
    let trimmed = lowered.trim_matches('-');
    let mut out = if trimmed.is_empty() {
        "compute".to_owned()
    } else {
        trimmed.to_owned()
    };
    out.truncate(253);
    out
}

/// Whether `name` is a valid Kubernetes object name (DNS-1123 subdomain, as CRs need).
pub fn is_object_name(name: &str) -> bool {
    let alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            let b = label.as_bytes();
            !b.is_empty()
                && b.first().copied().is_some_and(alnum)
                && b.last().copied().is_some_and(alnum)
                && b.iter().all(|&c| alnum(c) || c == b'-')
        })
}

/// `base`, or `base-2`, `base-3`, … if taken.
fn unique(base: String, taken: &mut BTreeSet<String>) -> String {
    let mut candidate = base.clone();
    let mut n = 2;
    while taken.contains(&candidate) {
        candidate = format!("{base}-{n}");
        n += 1;
    }
    taken.insert(candidate.clone());
    candidate
}
