//! Reading the outcome: targets and workspaces from the API server, computes and requests from
//! the emulator, and the comparisons the invariants are made of.

use std::collections::BTreeMap;

use azureml_attach::api::MLWorkspace;
use azureml_emulator::state::LogEntry;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{DynamicObject, ListParams};
use kube::discovery::ApiResource;
use kube::{Api, Client, ResourceExt};

use crate::fixture::{Expect, Fixture, Kind, ML_WORKSPACES, NEW_SSH_PORT, Target};
use crate::monitor::RequestLog;

/// Ready (status, reason, message) by `namespace/name`.
pub type ReadyMap = BTreeMap<String, (bool, String, String)>;

pub struct Scenario {
    pub fixture: Fixture,
    pub namespaces: Vec<String>,
    pub client: Client,
    pub control: azureml_emulator::ControlClient,
}

impl Scenario {
    pub fn ns(&self, t: &Target) -> &str {
        &self.namespaces[t.ns]
    }

    pub fn key(&self, t: &Target) -> String {
        format!("{}/{}", self.ns(t), t.name)
    }

    /// Every target the scenario expects to exist (the duplicate claim once created).
    pub fn expected(&self, with_duplicate: bool) -> Vec<&Target> {
        let mut v: Vec<&Target> = self.fixture.targets.iter().collect();
        if with_duplicate {
            v.push(&self.fixture.duplicate);
        }
        v
    }

    /// Every target object of every kind, in all namespaces.
    pub async fn list_targets(&self) -> Result<Vec<DynamicObject>, kube::Error> {
        let mut all = Vec::new();
        for kind in Kind::ALL {
            let api: Api<DynamicObject> = Api::all_with(self.client.clone(), &kind.api_resource());
            all.extend(api.list(&ListParams::default()).await?.items);
        }
        Ok(all)
    }

    pub async fn list_workspaces(&self) -> Result<Vec<DynamicObject>, kube::Error> {
        let api: Api<DynamicObject> =
            Api::all_with(self.client.clone(), &ApiResource::erase::<MLWorkspace>(&()));
        Ok(api.list(&ListParams::default()).await?.items)
    }

    /// What is not yet where it must end up; empty when converged.
    pub async fn unconverged(
        &self,
        log: &RequestLog,
        with_duplicate: bool,
        rotation_seq: Option<u64>,
    ) -> Vec<String> {
        let mut bad = Vec::new();
        let (targets, workspaces, computes) = match (
            self.list_targets().await,
            self.list_workspaces().await,
            self.control.computes().await,
        ) {
            (Ok(t), Ok(w), Ok(c)) => (ready_map(&t), ready_map(&w), c),
            (t, w, c) => {
                return vec![format!(
                    "cannot read the state: {:?} {:?} {:?}",
                    t.err(),
                    w.err(),
                    c.err()
                )];
            }
        };
        for ns in &self.namespaces {
            for ws in ML_WORKSPACES {
                match workspaces.get(&format!("{ns}/{ws}")) {
                    Some((true, r, _)) if r == "Reached" => {}
                    other => bad.push(format!("MLWorkspace {ns}/{ws}: {other:?}")),
                }
            }
        }
        let expected = self.expected(with_duplicate);
        for t in &expected {
            let key = self.key(t);
            match targets.get(&key) {
                None => bad.push(format!("{key}: missing")),
                Some((ready, reason, msg)) => {
                    let ok =
                        reason == t.expect.reason() && (*ready || t.expect != Expect::Attached);
                    if !ok {
                        bad.push(format!("{key}: {reason} ({msg})"));
                    }
                }
            }
            if t.expect != Expect::Attached {
                continue;
            }
            let compute = computes.iter().find(|c| {
                c.workspace.eq_ignore_ascii_case(t.azure_workspace()) && c.name == t.name
            });
            match compute {
                None => bad.push(format!("{key}: no compute in {}", t.azure_workspace())),
                Some(c) if c.provisioning_state != "Succeeded" => {
                    bad.push(format!("{key}: compute {}", c.provisioning_state));
                }
                Some(c)
                    if !c
                        .resource_id
                        .as_deref()
                        .is_some_and(|r| r.eq_ignore_ascii_case(&t.resource_id)) =>
                {
                    bad.push(format!("{key}: compute on {:?}", c.resource_id));
                }
                Some(_) => {}
            }
        }
        if rotation_seq.is_some() {
            for &i in &self.fixture.port_changes {
                let t = &self.fixture.targets[i];
                let port = computes
                    .iter()
                    .find(|c| {
                        c.workspace.eq_ignore_ascii_case(t.azure_workspace()) && c.name == t.name
                    })
                    .and_then(|c| c.body.pointer("/properties/properties/sshPort"))
                    .and_then(serde_json::Value::as_i64);
                if port != Some(NEW_SSH_PORT) {
                    bad.push(format!("{}: sshPort in Azure {port:?}", self.key(t)));
                }
            }
        }
        if let Some(seq) = rotation_seq {
            for &i in &self.fixture.rotated {
                let t = &self.fixture.targets[i];
                let reput = calls_on(&log.entries, t.azure_workspace(), &t.name)
                    .any(|e| e.seq > seq && e.method == "PUT" && matches!(e.status, 200 | 201));
                if !reput {
                    bad.push(format!(
                        "{}: not re-attached after the Secret rotation",
                        self.key(t)
                    ));
                }
            }
        }
        if bad.is_empty() {
            for t in expected {
                if let (Some(name), Expect::Attached) = (&t.connection_secret, t.expect) {
                    let secrets: Api<Secret> = Api::namespaced(self.client.clone(), self.ns(t));
                    if !matches!(secrets.get_opt(name).await, Ok(Some(_))) {
                        bad.push(format!("{}: connection Secret {name} missing", self.key(t)));
                    }
                }
            }
        }
        bad
    }
}

/// Ready condition by `namespace/name`.
pub fn ready_map(objs: &[DynamicObject]) -> ReadyMap {
    objs.iter()
        .map(|o| {
            let c = o.data["status"]["conditions"]
                .as_array()
                .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"));
            let s = |f: &str| c.and_then(|c| c[f].as_str()).unwrap_or_default().to_owned();
            (
                format!("{}/{}", o.namespace().unwrap_or_default(), o.name_any()),
                (s("status") == "True", s("reason"), s("message")),
            )
        })
        .collect()
}

/// Requests on one compute (GET, PUT, DELETE, listKeys, …).
pub fn calls_on<'a>(
    log: &'a [LogEntry],
    workspace: &str,
    name: &str,
) -> impl Iterator<Item = &'a LogEntry> {
    let exact = format!("/workspaces/{workspace}/computes/{name}").to_ascii_lowercase();
    let action = format!("{exact}/");
    log.iter().filter(move |e| {
        let p = e.path.to_ascii_lowercase();
        p.ends_with(&exact) || p.contains(&action)
    })
}

/// DELETEs that do not say `underlyingResourceAction=Detach`.
pub fn non_detach_deletes(log: &[LogEntry]) -> Vec<String> {
    log.iter()
        .filter(|e| e.method == "DELETE")
        .filter(|e| {
            !e.query
                .as_deref()
                .unwrap_or_default()
                .split('&')
                .any(|kv| kv == "underlyingResourceAction=Detach")
        })
        .map(|e| {
            format!(
                "DELETE {}?{}",
                e.path,
                e.query.as_deref().unwrap_or_default()
            )
        })
        .collect()
}

/// Which of `secrets` occur in `text` (by index, never printing the value).
pub fn leaked(text: &str, secrets: &[String]) -> Vec<usize> {
    secrets
        .iter()
        .enumerate()
        .filter(|(_, s)| text.contains(s.as_str()))
        .map(|(i, _)| i)
        .collect()
}
