//! The invariants checked once everything is deleted, from the whole request log, the
//! emulator's state, the API server and every operator process's log.

use std::path::PathBuf;
use std::time::Duration;

use azureml_emulator::ResourceView;
use azureml_emulator::state::LogEntry;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use serde_json::Value;

use crate::checks::{Scenario, calls_on, leaked, non_detach_deletes};
use crate::disrupt::first_panic;
use crate::fixture::secret_values;
use crate::monitor::Recorded;
use crate::report::{Report, figure};
use crate::steps::{events_text, foreign_body};

/// What the scenario gathered on the way.
pub struct Evidence<'a> {
    pub log: &'a [LogEntry],
    pub recorded: &'a Recorded,
    /// Whether everything was gone within the bound (or what was left).
    pub gone: &'a Result<Duration, String>,
    pub foreign_before: &'a Value,
    pub resources_before: &'a [ResourceView],
    pub operator_logs: &'a [PathBuf],
    /// When the restarts happened (seconds since `start`).
    pub restarts_at: &'a [f64],
    /// Every status at the end of convergence.
    pub statuses: &'a str,
    pub start: Timestamp,
}

pub async fn after_deletion(report: &mut Report, s: &Scenario, ev: &Evidence<'_>) {
    let foreign = &s.fixture.foreign;
    let dup = &s.fixture.duplicate;
    let targets_left = s.list_targets().await.expect("targets");
    let workspaces_left = s.list_workspaces().await.expect("workspaces");
    let computes = s.control.computes().await.expect("computes");
    let mut left: Vec<String> = targets_left
        .iter()
        .chain(&workspaces_left)
        .map(|o| {
            format!(
                "{} {}/{} finalizers {:?} deleting since {:?}, conditions {}",
                o.types.as_ref().map_or("", |t| t.kind.as_str()),
                o.namespace().unwrap_or_default(),
                o.name_any(),
                o.finalizers(),
                o.metadata.deletion_timestamp,
                o.data["status"]["conditions"]
            )
        })
        .collect();
    left.extend(
        computes
            .iter()
            .filter(|c| {
                !(c.workspace.eq_ignore_ascii_case(foreign.workspace) && c.name == foreign.name)
            })
            .map(|c| {
                format!(
                    "compute {}/{} {}",
                    c.workspace, c.name, c.provisioning_state
                )
            }),
    );
    report.invariant(
        "after deleting everything, within the bound: 0 targets, 0 MLWorkspaces, 0 computes but the foreign one",
        match (ev.gone, crate::report::summarize(&left)) {
            (Ok(_), None) => None,
            (Ok(_), Some(l)) => Some(l),
            (Err(g), l) => Some(format!("{g}; {}", l.unwrap_or_default())),
        },
    );

    let foreign_calls: Vec<String> = calls_on(ev.log, foreign.workspace, &foreign.name)
        .filter(|e| e.method != "GET")
        .map(|e| format!("{} {} {}", e.method, e.path, e.status))
        .collect();
    let mut foreign_bad = foreign_calls;
    match foreign_body(s).await {
        None => foreign_bad.push("the foreign compute is gone".into()),
        Some(b) if b != *ev.foreign_before => {
            foreign_bad.push(format!("the foreign compute changed: {b}"));
        }
        Some(_) => {}
    }
    foreign_bad.extend(
        ev.recorded
            .sampled_violations
            .iter()
            .filter(|v| v.contains("foreign"))
            .cloned(),
    );
    report.invariant_list(
        "the foreign compute: 0 PUT/PATCH/DELETE on its name, same body throughout (sampled) and at the end",
        &foreign_bad,
    );
    let dup_calls: Vec<String> = calls_on(ev.log, dup.azure_workspace(), &dup.name)
        .map(|e| format!("{} {} {}", e.method, e.path, e.status))
        .collect();
    report.invariant_list(
        "the duplicate claim causes no Azure call (0 requests on its compute)",
        &dup_calls,
    );
    report.invariant_list(
        "0 DELETEs without underlyingResourceAction=Detach",
        &non_detach_deletes(ev.log),
    );
    let state = s.control.state().await.expect("state");
    let resources_after = s.control.resources().await.expect("resources");
    let mut resources_bad: Vec<String> = state
        .deleted_resources
        .iter()
        .map(|d| format!("deleted {} by {}", d.id, d.compute))
        .collect();
    if resources_after != ev.resources_before {
        resources_bad.push(format!(
            "world resources {} before, {} after",
            ev.resources_before.len(),
            resources_after.len()
        ));
    }
    report.invariant_list(
        "0 underlying resources deleted (resources unchanged)",
        &resources_bad,
    );
    let sampled_shared: Vec<String> = ev
        .recorded
        .sampled_violations
        .iter()
        .filter(|v| !v.contains("foreign"))
        .cloned()
        .collect();
    report.invariant_list(
        &format!(
            "never two computes on one resource (sampled every 2s, {} samples)",
            ev.recorded.samples
        ),
        &sampled_shared,
    );
    let logs = ev.operator_logs;
    report.invariant(
        &format!("0 panics in operator logs ({} processes)", logs.len()),
        first_panic(logs),
    );

    // Secret values: operator logs, events, status, request URLs.
    let secrets = secret_values();
    let mut leaks = Vec::new();
    let mut log_bytes = 0;
    for path in logs {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        log_bytes += text.len();
        for i in leaked(&text, &secrets) {
            leaks.push(format!("secret #{i} in {}", path.display()));
        }
    }
    let events_text = events_text(s).await;
    for i in leaked(&events_text, &secrets) {
        leaks.push(format!("secret #{i} in events"));
    }
    for i in leaked(ev.statuses, &secrets) {
        leaks.push(format!("secret #{i} in status"));
    }
    let urls: String = ev
        .log
        .iter()
        .map(|e| format!("{}?{}\n", e.path, e.query.as_deref().unwrap_or_default()))
        .collect();
    for i in leaked(&urls, &secrets) {
        leaks.push(format!("secret #{i} in a request URL"));
    }
    report.invariant_list(
        &format!(
            "0 secret values ({}) in operator logs ({} MB), events, status or request URLs",
            secrets.len(),
            log_bytes / 1_000_000
        ),
        &leaks,
    );
    let throttled_by_emulator: Vec<&LogEntry> = ev
        .log
        .iter()
        .filter(|e| e.status == 429 && e.fault.is_none())
        .collect();
    let injected_429 = ev
        .log
        .iter()
        .filter(|e| e.status == 429 && e.fault.is_some())
        .count();
    let self_429: Vec<String> = throttled_by_emulator
        .iter()
        .map(|e| {
            let at = e
                .timestamp
                .parse::<k8s_openapi::jiff::Timestamp>()
                .map_or(f64::NAN, |t| t.duration_since(ev.start).as_secs_f64());
            let after = ev
                .restarts_at
                .iter()
                .rev()
                .find(|r| **r <= at)
                .map_or("no restart before".to_owned(), |r| {
                    format!("{:.1}s after the restart at {r:.0}s", at - r)
                });
            let compute = e.path.rsplit('/').next().unwrap_or_default();
            format!("{} {compute} at {at:.1}s, {after}", e.operation)
        })
        .collect();
    report.invariant_list(
        "0 429s the operator caused itself (emulator throttle at ARM defaults)",
        &self_429,
    );

    figure(format!(
        "429s: {injected_429} injected by fault rules, {} from the emulator's own throttle",
        throttled_by_emulator.len()
    ));
}
