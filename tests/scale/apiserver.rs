//! Requests the operator sent to the private kube-apiserver, from the server's own `/metrics`.
//!
//! `apiserver_request_total{verb,group,resource,subresource,code}` counts every client. On a
//! private control plane the others are the benchmark (its calls are counted here, in [`Own`],
//! and subtracted), kube-controller-manager and the API server itself; those two touch the
//! operator's resources only with long-running LIST/WATCHes of their informers, so only the
//! resources the operator's ClusterRole grants are attributed. A WATCH is counted when it ends.
//!
//! The exact total comes from API Priority and Fairness: the operator's ServiceAccount is the only
//! client in flow schema `service-accounts` (the benchmark is `system:masters`, exempt;
//! kube-controller-manager's controllers are `kube-system-service-accounts`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use kube::Client;

/// `(verb, group, resource, subresource)` as the API server labels a request.
pub type Key = (String, String, String, String);

/// The resources of the operator's ClusterRole (deploy/base/rbac.yaml): MLWorkspaces, every
/// target kind in the registry, Secrets and Events.
fn operator_resources() -> Vec<(String, String)> {
    let group = azureml_attach::api::GROUP.to_owned();
    let mut out = vec![(group.clone(), "mlworkspaces".to_owned())];
    out.extend(
        azureml_attach::controller::kinds::target_plurals()
            .into_iter()
            .map(|plural| (group.clone(), plural)),
    );
    out.push((String::new(), "secrets".to_owned()));
    out.push(("events.k8s.io".to_owned(), "events".to_owned()));
    out
}

pub fn key(verb: &str, group: &str, resource: &str, subresource: &str) -> Key {
    (
        verb.into(),
        group.into(),
        resource.into(),
        subresource.into(),
    )
}

/// The benchmark's own requests to the operator's resources, counted as they are made.
#[derive(Clone, Default)]
pub struct Own(Arc<Mutex<BTreeMap<Key, u64>>>);

impl Own {
    pub fn add(&self, k: Key, n: u64) {
        *self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(k)
            .or_default() += n;
    }

    fn snapshot(&self) -> BTreeMap<Key, u64> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// One reading of the API server's counters and of the benchmark's own.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// Requests to the operator's resources, by key (all codes).
    requests: BTreeMap<Key, u64>,
    /// The same, answered with a code outside 2xx, by key and code.
    failed: BTreeMap<(Key, String), u64>,
    /// APF `service-accounts` dispatches (the operator alone).
    service_accounts: u64,
    own: BTreeMap<Key, u64>,
}

pub async fn snapshot(admin: &Client, own: &Own) -> Snapshot {
    let request = http::Request::get("/metrics")
        .body(Vec::new())
        .expect("metrics request");
    let text = admin
        .request_text(request)
        .await
        .expect("kube-apiserver /metrics");
    let mut s = Snapshot {
        own: own.snapshot(),
        ..Snapshot::default()
    };
    let resources = operator_resources();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("apiserver_request_total{") {
            let (labels, value) = parse(rest);
            let l = |n: &str| labels.get(n).cloned().unwrap_or_default();
            let (group, resource) = (l("group"), l("resource"));
            if !resources.iter().any(|(g, r)| *g == group && *r == resource) {
                continue;
            }
            let k = (l("verb"), group, resource, l("subresource"));
            *s.requests.entry(k.clone()).or_default() += value;
            let code = l("code");
            if !code.starts_with('2') {
                *s.failed.entry((k, code)).or_default() += value;
            }
        } else if let Some(rest) =
            line.strip_prefix("apiserver_flowcontrol_dispatched_requests_total{")
        {
            let (labels, value) = parse(rest);
            if labels.get("flow_schema").map(String::as_str) == Some("service-accounts") {
                s.service_accounts += value;
            }
        }
    }
    s
}

/// `a="x",b="y"} 12` → labels and value.
fn parse(rest: &str) -> (BTreeMap<String, String>, u64) {
    let (labels, value) = rest.rsplit_once("} ").unwrap_or((rest, "0"));
    let mut map = BTreeMap::new();
    for pair in labels.split("\",") {
        if let Some((k, v)) = pair.split_once("=\"") {
            map.insert(
                k.trim_start_matches(',').to_owned(),
                v.trim_end_matches('"').to_owned(),
            );
        }
    }
    // Counters print as integers or in exponent form (`1.2e+06`).
    let value = value.trim().parse::<f64>().unwrap_or(0.0) as u64;
    (map, value)
}

/// The operator's requests between two snapshots.
#[derive(Clone, Debug, Default)]
pub struct Delta {
    /// By key, the benchmark's own subtracted.
    pub by_key: BTreeMap<Key, u64>,
    /// Non-2xx answers by key and code.
    pub failed: BTreeMap<(Key, String), u64>,
    /// APF `service-accounts` dispatches: every request of the operator, WATCH starts included.
    pub apf_total: u64,
}

impl Delta {
    pub fn between(a: &Snapshot, b: &Snapshot) -> Delta {
        let mut by_key = BTreeMap::new();
        for (k, v) in &b.requests {
            let seen = v.saturating_sub(a.requests.get(k).copied().unwrap_or(0));
            let own = b
                .own
                .get(k)
                .copied()
                .unwrap_or(0)
                .saturating_sub(a.own.get(k).copied().unwrap_or(0));
            let n = seen.saturating_sub(own);
            if n > 0 {
                by_key.insert(k.clone(), n);
            }
        }
        let mut failed = BTreeMap::new();
        for (k, v) in &b.failed {
            let n = v.saturating_sub(a.failed.get(k).copied().unwrap_or(0));
            if n > 0 {
                failed.insert(k.clone(), n);
            }
        }
        Delta {
            by_key,
            failed,
            apf_total: b.service_accounts.saturating_sub(a.service_accounts),
        }
    }

    pub fn total(&self) -> u64 {
        self.by_key.values().sum()
    }

    /// Sum of the requests whose key matches.
    pub fn count(&self, verb: &str, resource: &str, subresource: &str) -> u64 {
        self.by_key
            .iter()
            .filter(|((v, _, r, s), _)| v == verb && r == resource && s == subresource)
            .map(|(_, n)| n)
            .sum()
    }

    /// `VERB resource[/sub] N, …` (non-2xx codes in brackets).
    pub fn describe(&self) -> String {
        if self.by_key.is_empty() {
            return "none".into();
        }
        self.by_key
            .iter()
            .map(|(k @ (verb, _, resource, sub), n)| {
                let path = if sub.is_empty() {
                    resource.clone()
                } else {
                    format!("{resource}/{sub}")
                };
                let failed: Vec<String> = self
                    .failed
                    .iter()
                    .filter(|((fk, _), _)| fk == k)
                    .map(|((_, code), n)| format!("{n}×{code}"))
                    .collect();
                if failed.is_empty() {
                    format!("{verb} {path} {n}")
                } else {
                    format!("{verb} {path} {n} [{}]", failed.join(" "))
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_counter_line() {
        let (labels, v) = parse(
            r#"code="201",component="apiserver",dry_run="",group="events.k8s.io",resource="events",scope="resource",subresource="",verb="POST",version="v1"} 1.5e+03"#,
        );
        assert_eq!(v, 1500);
        assert_eq!(labels["verb"], "POST");
        assert_eq!(labels["subresource"], "");
        assert_eq!(labels["group"], "events.k8s.io");
    }
}
