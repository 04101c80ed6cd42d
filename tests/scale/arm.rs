//! ARM calls from the emulator's request log: counts by (operation, status), 429s, and when
//! each compute's first PUT arrived.

use std::collections::BTreeMap;
use std::time::SystemTime;

use azureml_emulator::ControlClient;
use azureml_emulator::state::LogEntry;

/// ARM requests (not token or control requests) logged since the last clear.
pub struct ArmLog {
    counts: BTreeMap<String, u64>,
    entries: Vec<LogEntry>,
}

fn is_arm(operation: &str) -> bool {
    !matches!(operation, "Token" | "ManagedIdentity_Token")
}

impl ArmLog {
    pub async fn fetch(control: &ControlClient) -> ArmLog {
        let view = control.requests(None).await.expect("emulator requests");
        ArmLog {
            counts: view
                .counts
                .into_iter()
                .filter(|(k, _)| is_arm(k.split(' ').next().unwrap_or_default()))
                .collect(),
            entries: view
                .entries
                .into_iter()
                .filter(|e| is_arm(&e.operation))
                .collect(),
        }
    }

    /// 429 answers, from the emulator's counts.
    pub fn throttled(&self) -> u64 {
        self.counts
            .iter()
            .filter(|(k, _)| k.ends_with(" 429"))
            .map(|(_, n)| n)
            .sum()
    }

    /// PUT, POST, PATCH and DELETE requests, whatever the answer.
    pub fn writes(&self) -> usize {
        self.entries.iter().filter(|e| e.method != "GET").count()
    }

    /// LIST requests of a workspace's computes, next pages included.
    pub fn list_pages(&self) -> usize {
        self.entries
            .iter()
            .filter(|e| e.operation == "Compute_List")
            .count()
    }

    /// LISTs: first pages only (no `$skip` token).
    pub fn lists(&self) -> usize {
        self.entries
            .iter()
            .filter(|e| e.operation == "Compute_List")
            .filter(|e| {
                !e.query
                    .as_deref()
                    .is_some_and(|q| q.contains("$skip") || q.contains("%24skip"))
            })
            .count()
    }

    /// `Operation status: count, …`.
    pub fn describe(&self) -> String {
        if self.counts.is_empty() {
            return "none".into();
        }
        self.counts
            .iter()
            .map(|(k, n)| format!("`{k}` {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn puts(&self) -> impl Iterator<Item = (&str, SystemTime)> {
        self.entries
            .iter()
            .filter(|e| e.operation == "Compute_CreateOrUpdate")
            .filter_map(|e| {
                let name = e.path.rsplit_once("/computes/")?.1;
                Some((name, timestamp(&e.timestamp)?))
            })
    }

    /// For each created target, in the order of the PUTs: seconds from the create call's
    /// return to its compute's first PUT (negative if the PUT arrived before the create call
    /// returned).
    pub fn put_latencies(&self, created: &BTreeMap<String, SystemTime>) -> Vec<f64> {
        let mut first: BTreeMap<&str, SystemTime> = BTreeMap::new();
        for (name, at) in self.puts() {
            first.entry(name).or_insert(at);
        }
        let mut out: Vec<(SystemTime, f64)> = created
            .iter()
            .filter_map(|(name, made)| {
                let put = *first.get(name.as_str())?;
                Some((
                    put,
                    match put.duration_since(*made) {
                        Ok(d) => d.as_secs_f64(),
                        Err(e) => -e.duration().as_secs_f64(),
                    },
                ))
            })
            .collect();
        assert_eq!(
            out.len(),
            created.len(),
            "every created target has a PUT in the emulator's log"
        );
        out.sort_by_key(|(put, _)| *put);
        out.into_iter().map(|(_, l)| l).collect()
    }

    /// First to last PUT: how many in the first 1 and 10 s, and the rate from 30 s on (when
    /// any burst is long spent).
    pub fn put_rate(&self) -> String {
        let times: Vec<SystemTime> = self.puts().map(|(_, t)| t).collect();
        let (Some(first), Some(last)) = (times.iter().min(), times.iter().max()) else {
            return "no PUT".into();
        };
        let since = |t: &SystemTime| t.duration_since(*first).unwrap_or_default().as_secs_f64();
        let span = since(last);
        let within = |s: f64| times.iter().filter(|t| since(t) < s).count();
        let late = times.len() - within(30.0);
        let late_rate = if span > 30.0 {
            format!("{:.2}/s", late as f64 / (span - 30.0))
        } else {
            "—".into()
        };
        format!(
            "{} PUTs over {span:.1} s: {} in the first second, {} in the first 10 s, {late_rate} from 30 s on",
            times.len(),
            within(1.0),
            within(10.0),
        )
    }
}

/// The emulator's timestamps: RFC 3339 with 7 fractional digits.
fn timestamp(s: &str) -> Option<SystemTime> {
    let ts: k8s_openapi::jiff::Timestamp = s.parse().ok()?;
    Some(SystemTime::from(ts))
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_the_emulators_timestamps() {
        let t = super::timestamp("2026-11-27T20:30:00.1234567+00:00").unwrap();
        let d = t.duration_since(std::time::UNIX_EPOCH).unwrap();
        assert_eq!(d.subsec_nanos(), 123_456_700);
    }
}
