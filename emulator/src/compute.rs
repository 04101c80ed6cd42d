//! Compute bodies: what a PUT does to the world (attach checks) and what GET/LIST/listKeys answer.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use crate::config::{ResourceKind, Workspace, WorldResource};
use crate::response::arm_time;
use crate::state::ComputeRecord;

/// ARM type of computes.
pub const COMPUTE_TYPE: &str = "Microsoft.MachineLearningServices/workspaces/computes";

/// What attaching a compute finds out about its underlying resource.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Evaluation {
    /// Brought from outside.
    pub attached: bool,
    /// Resolved address of the machine.
    pub address: Option<String>,
    /// VM size.
    pub vm_size: Option<String>,
    /// ErrorDetail (`{code,message}`) when provisioning must fail.
    pub failure: Option<Value>,
}

fn failure(code: &str, message: String) -> Option<Value> {
    Some(json!({ "code": code, "message": message }))
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut cur = v;
    for p in path {
        cur = cur.get(*p)?;
    }
    cur.as_str()
}

/// Compare key texts ignoring CRLF and trailing whitespace differences.
fn same_key(a: &str, b: &str) -> bool {
    let norm = |s: &str| s.replace("\r\n", "\n").trim_end().to_owned();
    norm(a) == norm(b)
}

/// Kinds of resource a compute type may attach, or None when the type is provisioned by Azure ML
/// or attaches resources the world does not model.
fn expected_kinds(compute_type: &str) -> Option<&'static [ResourceKind]> {
    match compute_type {
        "VirtualMachine" => Some(&[ResourceKind::VirtualMachine]),
        "HDInsight" => Some(&[ResourceKind::HdInsight]),
        "Databricks" => Some(&[ResourceKind::Databricks]),
        "DataLakeAnalytics" => Some(&[ResourceKind::DataLakeAnalytics]),
        "Batch" => Some(&[ResourceKind::Batch]),
        "Kubernetes" => Some(&[ResourceKind::ManagedCluster, ResourceKind::ConnectedCluster]),
        "SynapseSpark" => Some(&[ResourceKind::SynapseSparkPool]),
        _ => None,
    }
}

/// Whether a compute type is "attached" (brought from outside) rather than provisioned by Azure ML.
fn is_attach_type(compute_type: &str, body: &Value) -> bool {
    match compute_type {
        "AmlCompute" | "ComputeInstance" => false,
        "AKS" | "Kubernetes" => str_at(body, &["properties", "resourceId"]).is_some(),
        _ => true,
    }
}

/// Check a PUT body against the world's resources and their credentials.
pub fn evaluate(
    compute_type: &str,
    body: &Value,
    resources: &BTreeMap<String, WorldResource>,
) -> Evaluation {
    let mut ev = Evaluation {
        attached: is_attach_type(compute_type, body),
        ..Evaluation::default()
    };
    let Some(kinds) = expected_kinds(compute_type) else {
        return ev;
    };
    let resource_id = str_at(body, &["properties", "resourceId"]);
    let address = str_at(body, &["properties", "properties", "address"]);
    let resource = match (resource_id, address) {
        (Some(id), _) => match resources.get(&id.to_ascii_lowercase()) {
            Some(r) if kinds.contains(&ResourceKind::of_id(&r.id)) => r,
            Some(r) => {
                ev.failure = failure(
                    "InvalidUnderlyingResource",
                    format!(
                        "The resource '{}' cannot be attached as compute type '{compute_type}'.",
                        r.id
                    ),
                );
                return ev;
            }
            None => {
                ev.failure = failure(
                    "UnderlyingResourceNotFound",
                    format!("The underlying resource '{id}' was not found."),
                );
                return ev;
            }
        },
        (None, Some(addr)) if matches!(compute_type, "VirtualMachine" | "HDInsight") => {
            match resources.values().find(|r| {
                kinds.contains(&ResourceKind::of_id(&r.id))
                    && r.address
                        .as_deref()
                        .is_some_and(|a| a.eq_ignore_ascii_case(addr))
            }) {
                Some(r) => r,
                None => {
                    ev.failure = failure(
                        "UnderlyingResourceNotFound",
                        format!("No {compute_type} is reachable at address '{addr}'."),
                    );
                    return ev;
                }
            }
        }
        _ => {
            ev.failure = failure(
                "MissingUnderlyingResource",
                format!(
                    "A {compute_type} compute needs properties.resourceId of an existing resource."
                ),
            );
            return ev;
        }
    };
    // For Databricks the "address" is the workspace URL.
    ev.address = address
        .map(str::to_owned)
        .or_else(|| resource.address.clone())
        .or_else(|| resource.workspace_url.clone());
    ev.vm_size = resource.vm_size.as_ref().map(|s| s.to_ascii_uppercase());
    ev.failure = check_credentials(compute_type, body, resource);
    ev
}

fn check_credentials(compute_type: &str, body: &Value, r: &WorldResource) -> Option<Value> {
    match compute_type {
        "VirtualMachine" | "HDInsight" => {
            let acct = body
                .get("properties")
                .and_then(|p| p.get("properties"))
                .and_then(|p| p.get("administratorAccount"));
            let user = acct.and_then(|a| a.get("username")).and_then(Value::as_str);
            let password = acct.and_then(|a| a.get("password")).and_then(Value::as_str);
            let key = acct
                .and_then(|a| a.get("privateKeyData"))
                .and_then(Value::as_str);
            let addr = r.address.as_deref().unwrap_or(&r.id);
            let user_ok = user.is_some() && user == r.username.as_deref();
            let password_ok = password.is_some() && password == r.password.as_deref();
            let key_ok =
                matches!((key, r.private_key.as_deref()), (Some(k), Some(rk)) if same_key(k, rk));
            if user_ok && (password_ok || key_ok) {
                None
            } else {
                failure(
                    "InvalidCredentials",
                    format!(
                        "SSH authentication to '{addr}' failed for user '{}': the credentials were rejected.",
                        user.unwrap_or("")
                    ),
                )
            }
        }
        "Databricks" => {
            let token = str_at(body, &["properties", "properties", "databricksAccessToken"]);
            match (&r.access_token, token) {
                (None, _) => None,
                (Some(expected), Some(t)) if expected == t => None,
                _ => failure(
                    "InvalidCredentials",
                    format!(
                        "The Databricks workspace '{}' rejected the access token.",
                        r.workspace_url.as_deref().unwrap_or(&r.id)
                    ),
                ),
            }
        }
        _ => None,
    }
}

/// Null out secrets in a type-specific `properties.properties` object.
fn strip_secrets(compute_type: &str, props: &mut Map<String, Value>) {
    let null = |m: &mut Map<String, Value>, k: &str| {
        if m.contains_key(k) {
            m.insert(k.to_owned(), Value::Null);
        }
    };
    match compute_type {
        "VirtualMachine" | "HDInsight" => {
            props.insert("administratorAccount".into(), Value::Null);
        }
        "Databricks" => null(props, "databricksAccessToken"),
        "Kubernetes" => {
            null(props, "relayConnectionString");
            null(props, "serviceBusConnectionString");
        }
        "AKS" => {
            if let Some(Value::Object(ssl)) = props.get_mut("sslConfiguration") {
                null(ssl, "cert");
                null(ssl, "key");
            }
        }
        "AmlCompute" => {
            if let Some(Value::Object(c)) = props.get_mut("userAccountCredentials") {
                // The public key is echoed (FINDINGS §2); only the password is hidden.
                null(c, "adminUserPassword");
            }
        }
        _ => {
            // Unknown shapes (Batch): drop anything that looks like a credential.
            for k in ["administratorAccount", "password", "accessToken", "key"] {
                null(props, k);
            }
        }
    }
}

/// The ComputeResource answered by PUT/GET/LIST (no credentials).
pub fn compute_body(
    rec: &ComputeRecord,
    ws: &Workspace,
    tenant: &str,
    now: DateTime<Utc>,
) -> Value {
    let req = &rec.request;
    let req_props = req.get("properties").unwrap_or(&Value::Null);
    let location = req
        .get("location")
        .and_then(Value::as_str)
        .unwrap_or(&ws.location)
        .to_owned();
    let mut inner = match req_props.get("properties") {
        Some(Value::Object(m)) => m.clone(),
        _ => Map::new(),
    };
    strip_secrets(&rec.compute_type, &mut inner);
    if matches!(rec.compute_type.as_str(), "VirtualMachine" | "HDInsight") {
        inner.insert(
            "address".into(),
            rec.address.clone().map_or(Value::Null, Value::String),
        );
        inner.entry("sshPort").or_insert(json!(22));
    }
    if rec.compute_type == "Databricks"
        && let Some(url) = &rec.address
    {
        inner
            .entry("workspaceUrl")
            .or_insert_with(|| Value::String(url.clone()));
    }
    if rec.compute_type == "Kubernetes" {
        // What the spec's KubernetesCompute examples answer for fields the PUT left out.
        for k in [
            "relayConnectionString",
            "serviceBusConnectionString",
            "extensionPrincipalId",
            "vcName",
        ] {
            inner.entry(k).or_insert(Value::Null);
        }
        inner
            .entry("extensionInstanceReleaseTrain")
            .or_insert(json!("stable"));
        inner.entry("namespace").or_insert(json!("default"));
    }
    if rec.compute_type == "SynapseSpark"
        && let Some(pool) = rec.resource_id.as_deref().and_then(spark_pool_parts)
    {
        // The pool's own settings, as the Synapse RP reports them (see `underlying.rs`).
        let [sub, rg, ws, name] = pool;
        for (k, v) in [
            (
                "autoScaleProperties",
                json!({"minNodeCount": 3, "enabled": true, "maxNodeCount": 10}),
            ),
            (
                "autoPauseProperties",
                json!({"delayInMinutes": 15, "enabled": true}),
            ),
            ("sparkVersion", json!("3.4")),
            ("nodeCount", json!(0)),
            ("nodeSize", json!("Medium")),
            ("nodeSizeFamily", json!("MemoryOptimized")),
            ("subscriptionId", json!(sub)),
            ("resourceGroup", json!(rg)),
            ("workspaceName", json!(ws)),
            ("poolName", json!(name)),
        ] {
            inner.entry(k).or_insert(v);
        }
    }
    if rec.compute_type == "VirtualMachine" {
        inner.insert(
            "virtualMachineSize".into(),
            rec.vm_size.clone().map_or(Value::Null, Value::String),
        );
        inner.entry("notebookServerPort").or_insert(Value::Null);
        inner
            .entry("isNotebookInstanceCompute")
            .or_insert(Value::Bool(false));
    }
    let provisioning_errors = match (&rec.failure, rec.provisioning_state(now)) {
        (Some(err), "Failed") => json!([{ "error": err }]),
        _ => Value::Null,
    };
    let field = |k: &str| req_props.get(k).cloned().unwrap_or(Value::Null);
    let mut properties = Map::new();
    properties.insert("createdOn".into(), json!(arm_time(rec.created_on)));
    properties.insert("modifiedOn".into(), json!(arm_time(rec.modified_on(now))));
    properties.insert("computeType".into(), json!(rec.compute_type));
    properties.insert(
        "computeLocation".into(),
        req_props
            .get("computeLocation")
            .cloned()
            .unwrap_or_else(|| json!(location)),
    );
    properties.insert("description".into(), field("description"));
    properties.insert(
        "resourceId".into(),
        rec.resource_id.clone().map_or(Value::Null, Value::String),
    );
    properties.insert("provisioningErrors".into(), provisioning_errors);
    properties.insert(
        "provisioningState".into(),
        json!(rec.provisioning_state(now)),
    );
    properties.insert("isAttachedCompute".into(), json!(rec.attached));
    properties.insert(
        "disableLocalAuth".into(),
        req_props
            .get("disableLocalAuth")
            .cloned()
            .unwrap_or(Value::Bool(false)),
    );
    properties.insert(
        "properties".into(),
        if inner.is_empty() && req_props.get("properties").is_none() {
            Value::Null
        } else {
            Value::Object(inner)
        },
    );

    let mut out = Map::new();
    out.insert(
        "id".into(),
        json!(format!("{}/computes/{}", ws.id(), rec.name)),
    );
    out.insert("name".into(), json!(rec.name));
    out.insert("type".into(), json!(COMPUTE_TYPE));
    out.insert("location".into(), json!(location));
    out.insert(
        "tags".into(),
        req.get("tags").cloned().unwrap_or(Value::Null),
    );
    if let Some(identity) = identity_body(req.get("identity"), rec, tenant) {
        out.insert("identity".into(), identity);
    }
    out.insert("properties".into(), Value::Object(properties));
    Value::Object(out)
}

/// `[subscription, resource group, Synapse workspace, pool]` of a Spark pool id.
fn spark_pool_parts(id: &str) -> Option<[String; 4]> {
    let s: Vec<&str> = id.trim_start_matches('/').split('/').collect();
    match s.as_slice() {
        [_, sub, _, rg, _, _, _, ws, _, pool] => Some([sub, rg, ws, pool].map(|x| (*x).to_owned())),
        _ => None,
    }
}

fn identity_body(identity: Option<&Value>, rec: &ComputeRecord, tenant: &str) -> Option<Value> {
    let identity = identity?.as_object()?;
    let mut out = identity.clone();
    let ty = identity
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("None");
    if ty.contains("SystemAssigned") {
        out.insert("principalId".into(), json!(rec.identity_principal));
        out.insert("tenantId".into(), json!(tenant));
    }
    Some(Value::Object(out))
}

/// The ComputeSecrets answered by listKeys.
pub fn secrets_body(rec: &ComputeRecord) -> Value {
    let props = rec
        .request
        .get("properties")
        .and_then(|p| p.get("properties"));
    let get = |k: &str| props.and_then(|p| p.get(k)).cloned();
    match rec.compute_type.as_str() {
        "VirtualMachine" | "HDInsight" => {
            let acct = get("administratorAccount").unwrap_or(Value::Null);
            let f = |k: &str| acct.get(k).cloned().unwrap_or(Value::Null);
            json!({
                "computeType": rec.compute_type,
                "administratorAccount": {
                    "username": f("username"),
                    "password": f("password"),
                    "publicKeyData": f("publicKeyData"),
                    "privateKeyData": f("privateKeyData"),
                }
            })
        }
        "Databricks" => json!({
            "computeType": "Databricks",
            "databricksAccessToken": get("databricksAccessToken").unwrap_or(Value::Null),
        }),
        "AKS" => json!({
            "computeType": "AKS",
            "userKubeConfig": format!("apiVersion: v1\nkind: Config\n# emulator user kubeconfig for {}\n", rec.name),
            "adminKubeConfig": format!("apiVersion: v1\nkind: Config\n# emulator admin kubeconfig for {}\n", rec.name),
            "imagePullSecretName": Value::Null,
        }),
        other => json!({ "computeType": other }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::default_resources;

    fn world() -> BTreeMap<String, WorldResource> {
        default_resources()
            .into_iter()
            .map(|r| (r.id.to_ascii_lowercase(), r))
            .collect()
    }

    const VM: &str = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/ml-rg/providers/Microsoft.Compute/virtualMachines/dsvm-1";

    #[test]
    fn vm_with_password_attaches() {
        let body = json!({"properties":{"computeType":"VirtualMachine","resourceId":VM,
            "properties":{"sshPort":22,"administratorAccount":{"username":"azureuser","password":"Emulator-VM-Passw0rd"}}}});
        let ev = evaluate("VirtualMachine", &body, &world());
        assert_eq!(ev.failure, None);
        assert!(ev.attached);
        assert_eq!(ev.address.as_deref(), Some("20.61.0.10"));
    }

    #[test]
    fn vm_with_key_by_address_attaches() {
        let body = json!({"properties":{"computeType":"VirtualMachine",
            "properties":{"address":"20.61.0.11","administratorAccount":{"username":"azureuser",
            "privateKeyData":"-----BEGIN OPENSSH PRIVATE KEY-----\r\nemulator-dsvm-1-key\r\n-----END OPENSSH PRIVATE KEY-----"}}}});
        assert_eq!(evaluate("VirtualMachine", &body, &world()).failure, None);
    }

    #[test]
    fn wrong_password_fails() {
        let body = json!({"properties":{"computeType":"VirtualMachine","resourceId":VM,
            "properties":{"administratorAccount":{"username":"azureuser","password":"nope"}}}});
        let ev = evaluate("VirtualMachine", &body, &world());
        assert_eq!(ev.failure.unwrap()["code"], "InvalidCredentials");
    }

    #[test]
    fn missing_resource_fails() {
        let body = json!({"properties":{"computeType":"DataLakeAnalytics",
            "resourceId":"/subscriptions/x/resourceGroups/y/providers/Microsoft.DataLakeAnalytics/accounts/nope"}});
        let ev = evaluate("DataLakeAnalytics", &body, &world());
        assert_eq!(ev.failure.unwrap()["code"], "UnderlyingResourceNotFound");
    }

    #[test]
    fn aml_compute_needs_nothing() {
        let ev = evaluate(
            "AmlCompute",
            &json!({"properties":{"computeType":"AmlCompute"}}),
            &world(),
        );
        assert_eq!(ev.failure, None);
        assert!(!ev.attached);
    }
}
