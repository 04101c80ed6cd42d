//! The figures as a Markdown table (pasted into bench/scale/RESULTS.md).

use crate::apiserver::Delta;
use crate::knobs::Knobs;
use crate::process;

enum Line {
    Section(String),
    Row(String, String, String),
}

#[derive(Default)]
pub struct Report(Vec<Line>);

/// The `q` quantile (nearest rank) of sorted values; 0 when empty.
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// The same for values in any order.
pub fn percentile_of(values: &[f64], q: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    percentile(&sorted, q)
}

impl Report {
    pub fn section(&mut self, title: &str) {
        eprintln!("SCALE == {title}");
        self.0.push(Line::Section(title.to_owned()));
    }

    pub fn row(&mut self, what: &str, aim: &str, measured: String) {
        eprintln!("SCALE {what}: {measured}");
        self.0
            .push(Line::Row(what.to_owned(), aim.to_owned(), measured));
    }

    /// The operator's kube-apiserver requests of a phase. `converge`: per-target writes and
    /// events against the convergence aim; otherwise against "~0 per target".
    pub fn api_rows(&mut self, d: &Delta, n: usize, converge: bool) {
        let n = n as f64;
        self.row(
            "API-server requests from the operator (metrics delta)",
            if converge { "—" } else { "~0 per target" },
            format!(
                "{}; total {} ({:.2} per target); APF `service-accounts` {}",
                d.describe(),
                d.total(),
                d.total() as f64 / n,
                d.apf_total
            ),
        );
        if converge {
            let writes = d.count("PATCH", "batchtargets", "")
                + d.count("PATCH", "batchtargets", "status")
                + d.count("APPLY", "batchtargets", "status")
                + d.count("PUT", "batchtargets", "")
                + d.count("PUT", "batchtargets", "status");
            let events = d.count("POST", "events", "") + d.count("PATCH", "events", "");
            self.row(
                "writes to targets / events, per target",
                "≤ 3 / 1",
                format!(
                    "**{:.2}** / **{:.2}**",
                    writes as f64 / n,
                    events as f64 / n
                ),
            );
        }
    }

    pub fn print(&self, knobs: &Knobs) {
        println!();
        println!("## Scale benchmark");
        println!();
        println!(
            "{} targets, {} workspaces, {} subscription(s), {} namespace(s), resync {}; load at the end {}",
            knobs.targets,
            knobs.workspaces,
            knobs.subscriptions,
            knobs.namespaces,
            knobs.resync,
            process::load()
        );
        println!();
        println!("| figure | aim | measured |");
        println!("|---|---|---|");
        for line in &self.0 {
            match line {
                Line::Section(t) => println!("| **{t}** | | |"),
                Line::Row(w, a, m) => println!("| {w} | {a} | {m} |"),
            }
        }
    }
}
