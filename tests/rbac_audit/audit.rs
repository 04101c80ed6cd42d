//! The API server's audit log (testenv writes it at level Metadata for ServiceAccount users)
//! read back as the calls one user made, and compared with the rules of rendered RBAC.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt::Write as _,
    path::Path,
};

use serde_json::Value as Json;
use serde_yaml::Value;

/// What RBAC authorizes about one request.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Call {
    /// API group, "" for core; "-" for a non-resource URL.
    pub group: String,
    /// Resource (`secrets`), or the path of a non-resource URL (`/version`).
    pub resource: String,
    /// `status`, or "".
    pub subresource: String,
    pub verb: String,
    /// The namespace of a namespaced request; `None` for cluster-wide ones (a list or watch
    /// over all namespaces included) and non-resource URLs.
    pub namespace: Option<String>,
}

/// One request as the audit log tells it.
#[derive(Clone, Debug)]
pub struct Request {
    pub call: Call,
    pub code: Option<u64>,
    /// `authorization.k8s.io/decision`: `allow` or `forbid`.
    pub decision: String,
    /// `authorization.k8s.io/reason`: which binding allowed it.
    pub reason: String,
    pub uri: String,
}

/// Every request `username` made, once each (a watch is logged when it starts and when it
/// ends; the last stage of an auditID wins).
pub fn requests_of(log: &Path, username: &str) -> Vec<Request> {
    let text = std::fs::read_to_string(log)
        .unwrap_or_else(|e| panic!("reading the audit log {}: {e}", log.display()));
    let mut by_id: BTreeMap<String, Request> = BTreeMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let event: Json = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("an audit line that is not JSON ({e}): {line}"));
        if event["user"]["username"] != username {
            continue;
        }
        let text_of = |v: &Json| v.as_str().unwrap_or_default().to_owned();
        let object = &event["objectRef"];
        let call = if object.is_object() {
            Call {
                group: text_of(&object["apiGroup"]),
                resource: text_of(&object["resource"]),
                subresource: text_of(&object["subresource"]),
                verb: text_of(&event["verb"]),
                namespace: object["namespace"].as_str().map(str::to_owned),
            }
        } else {
            let uri = text_of(&event["requestURI"]);
            Call {
                group: "-".into(),
                resource: uri.split('?').next().unwrap_or_default().to_owned(),
                subresource: String::new(),
                verb: text_of(&event["verb"]),
                namespace: None,
            }
        };
        let annotations = &event["annotations"];
        by_id.insert(
            text_of(&event["auditID"]),
            Request {
                call,
                code: event["responseStatus"]["code"].as_u64(),
                decision: text_of(&annotations["authorization.k8s.io/decision"]),
                reason: text_of(&annotations["authorization.k8s.io/reason"]),
                uri: text_of(&event["requestURI"]),
            },
        );
    }
    by_id.into_values().collect()
}

/// One verb on one resource that a Role or ClusterRole grants.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Grant {
    pub kind: String,
    /// The Role's namespace; `None` for a ClusterRole (bound cluster-wide).
    pub namespace: Option<String>,
    pub group: String,
    pub resource: String,
    pub subresource: String,
    pub verb: String,
}

impl Grant {
    pub fn allows(&self, call: &Call) -> bool {
        self.group == call.group
            && self.resource == call.resource
            && self.subresource == call.subresource
            && self.verb == call.verb
            && (self.namespace.is_none() || self.namespace == call.namespace)
    }
}

/// Every (group, resource, verb) of every Role and ClusterRole in rendered manifests.
pub fn grants(docs: &[Value]) -> Vec<Grant> {
    let list = |v: &Value| -> Vec<String> {
        v.as_sequence()
            .into_iter()
            .flatten()
            .map(|i| i.as_str().unwrap_or_default().to_owned())
            .collect()
    };
    let mut out = Vec::new();
    for doc in docs {
        let kind = doc["kind"].as_str().unwrap_or_default();
        if kind != "Role" && kind != "ClusterRole" {
            continue;
        }
        let namespace = (kind == "Role").then(|| {
            doc["metadata"]["namespace"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        });
        for rule in doc["rules"].as_sequence().into_iter().flatten() {
            for group in list(&rule["apiGroups"]) {
                for resource in list(&rule["resources"]) {
                    let (resource, subresource) = resource
                        .split_once('/')
                        .map_or((resource.clone(), String::new()), |(r, s)| {
                            (r.to_owned(), s.to_owned())
                        });
                    for verb in list(&rule["verbs"]) {
                        out.push(Grant {
                            kind: kind.to_owned(),
                            namespace: namespace.clone(),
                            group: group.clone(),
                            resource: resource.clone(),
                            subresource: subresource.clone(),
                            verb,
                        });
                    }
                }
            }
        }
    }
    out
}

/// The observed calls as a table: one row per (group, resource, subresource, verb, scope)
/// with the count and the response codes. `scope` is `namespaced` or `cluster`, or the namespace
/// itself when `by_namespace`.
pub fn table(requests: &[Request], by_namespace: bool) -> String {
    // [group, resource, subresource, verb, scope] -> (count, response codes)
    let mut rows: BTreeMap<[String; 5], (usize, BTreeSet<u64>)> = BTreeMap::new();
    for r in requests {
        let c = &r.call;
        let scope = match (&c.namespace, by_namespace) {
            (Some(ns), true) => ns.clone(),
            (Some(_), false) => "namespaced".into(),
            (None, _) => "cluster".into(),
        };
        let group = if c.group.is_empty() {
            "core".into()
        } else {
            c.group.clone()
        };
        let key = [
            group,
            c.resource.clone(),
            c.subresource.clone(),
            c.verb.clone(),
            scope,
        ];
        let row = rows.entry(key).or_default();
        row.0 += 1;
        row.1.extend(r.code);
    }
    let mut out = format!(
        "{:<20} {:<26} {:<8} {:<7} {:<24} {:>5}  codes\n",
        "group", "resource", "sub", "verb", "scope", "count"
    );
    for ([group, resource, sub, verb, scope], (count, codes)) in rows {
        let _ = writeln!(
            out,
            "{group:<20} {resource:<26} {sub:<8} {verb:<7} {scope:<24} {count:>5}  {codes:?}"
        );
    }
    out
}
