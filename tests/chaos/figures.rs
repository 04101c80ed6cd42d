//! The measurements printed as `CHAOS …` lines: ARM calls, restarts, Ready flaps, Warning events.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::events::v1::Event;
use k8s_openapi::jiff::Timestamp;

use crate::checks::Scenario;
use crate::disrupt::{FaultLabels, GRACE, Restarts, lock};
use crate::monitor::{Phase, Recorded};
use crate::report::figure;

pub fn by_reason(
    before: &BTreeMap<String, (String, i64)>,
    after: &BTreeMap<String, (String, i64)>,
) -> String {
    let mut counts: BTreeMap<&str, i64> = BTreeMap::new();
    for (uid, (reason, n)) in after {
        let prior = before.get(uid).map_or(0, |(_, c)| *c);
        if *n > prior {
            *counts.entry(reason).or_default() += n - prior;
        }
    }
    if counts.is_empty() {
        return "none".into();
    }
    counts
        .iter()
        .map(|(r, n)| format!("{r}={n}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// ARM and token calls by operation and status (injected ones counted apart).
pub fn arm_figures(log: &[azureml_emulator::state::LogEntry], labels: &FaultLabels) {
    let mut by: BTreeMap<(String, u16), (usize, usize)> = BTreeMap::new();
    let mut by_rule: BTreeMap<&str, usize> = BTreeMap::new();
    let labels = lock(labels);
    for e in log {
        let c = by.entry((e.operation.clone(), e.status)).or_default();
        c.0 += 1;
        if let Some(id) = e.fault {
            c.1 += 1;
            *by_rule
                .entry(labels.get(&id).copied().unwrap_or("?"))
                .or_default() += 1;
        }
    }
    figure(format!("requests to the emulator: {}", log.len()));
    for ((op, status), (total, injected)) in by {
        figure(format!(
            "  {op} {status}: {total}{}",
            if injected > 0 {
                format!(" ({injected} injected)")
            } else {
                String::new()
            }
        ));
    }
    figure(format!(
        "injected answers by rule: {}",
        by_rule
            .iter()
            .map(|(l, n)| format!("{l}={n}"))
            .collect::<Vec<_>>()
            .join(", ")
    ));
}

pub fn flap_figures(s: &Scenario, recorded: &Recorded, drifted: &[String]) {
    let f = &s.fixture;
    let disturbed: BTreeSet<&str> = f
        .rotated
        .iter()
        .chain(&f.port_changes)
        .map(|&i| f.targets[i].name.as_str())
        .chain(drifted.iter().map(String::as_str))
        .collect();
    figure(format!(
        "Ready=True reached {} times (a watch per kind)",
        recorded.became_ready
    ));
    for phase in Phase::ALL {
        let mut plain: BTreeMap<&str, usize> = BTreeMap::new();
        let mut changed: BTreeMap<&str, usize> = BTreeMap::new();
        for fl in recorded.flaps.iter().filter(|fl| fl.phase == phase) {
            let m = if disturbed.contains(fl.name.as_str()) {
                &mut changed
            } else {
                &mut plain
            };
            *m.entry(fl.reason.as_str()).or_default() += 1;
        }
        let fmt = |m: &BTreeMap<&str, usize>| {
            if m.is_empty() {
                "none".to_owned()
            } else {
                m.iter()
                    .map(|(r, n)| format!("{r}={n}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            }
        };
        figure(format!(
            "Ready True->False ({}): untouched targets {} ({}); targets changed on purpose {} ({})",
            phase.label(),
            plain.values().sum::<usize>(),
            fmt(&plain),
            changed.values().sum::<usize>(),
            fmt(&changed)
        ));
    }
}

pub fn restart_figures(r: &Restarts) {
    let max_term = r.term_seconds.iter().copied().fold(0.0, f64::max);
    figure(format!(
        "restarts: {} ({} SIGKILL, {} SIGTERM: exits {:?} after at most {max_term:.1}s, {} not within the {GRACE:?} grace period), {} operator processes",
        r.kills + r.terms,
        r.kills,
        r.terms,
        r.term_exits,
        r.term_timeouts,
        r.logs.len()
    ));
    figure(format!(
        "restarts at (s since the start): {}",
        r.at.iter()
            .map(|t| format!("{t:.0}"))
            .collect::<Vec<_>>()
            .join(" ")
    ));
}

/// One note per Warning reason, and when they were emitted (seconds since `start`).
pub fn warning_times(events: Vec<Event>, start: Timestamp) {
    let mut examples: BTreeMap<String, (String, f64, f64)> = BTreeMap::new();
    for e in events {
        if e.type_.as_deref() == Some("Warning") {
            let since = |t: Timestamp| t.duration_since(start).as_secs_f64();
            let first = e.event_time.as_ref().map_or(f64::NAN, |t| since(t.0));
            let last = e
                .series
                .as_ref()
                .map_or(first, |x| since(x.last_observed_time.0));
            let note: String = e.note.unwrap_or_default().chars().take(160).collect();
            let x = examples
                .entry(e.reason.unwrap_or_default())
                .or_insert((note, first, last));
            x.1 = x.1.min(first);
            x.2 = x.2.max(last);
        }
    }
    for (reason, (note, first, last)) in examples {
        figure(format!(
            "  Warning {reason} from {first:.0}s to {last:.0}s, e.g.: {note}"
        ));
    }
}
