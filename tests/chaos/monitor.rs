//! What runs beside the scenario and records: the emulator's request log (fetched
//! incrementally, so its bounded buffer never drops an entry), Ready transitions seen by a watch
//! per kind, and samples of the emulator's computes (two computes on one resource, the foreign
//! compute gone or changed).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::time::Duration;

use azureml_emulator::state::LogEntry;
use azureml_emulator::{ClientError, ComputeView, ControlClient};
use futures::StreamExt;
use kube::api::DynamicObject;
use kube::runtime::utils::Backoff;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use serde_json::Value;
use tokio::sync::{Mutex, watch};
use tokio::task::JoinHandle;

use crate::fixture::Kind;

/// Phases of the scenario, for attributing flaps and events.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    /// Targets created; restarts, faults, the outage and the mutations.
    ConvergeChaos = 0,
    /// Faults stopped, waiting for every target to converge.
    ConvergeQuiet = 1,
    /// Everything deleted under restarts and faults.
    DeleteChaos = 2,
    /// Faults stopped, waiting for everything to be gone.
    DeleteQuiet = 3,
}

impl Phase {
    pub const ALL: [Phase; 4] = [
        Phase::ConvergeChaos,
        Phase::ConvergeQuiet,
        Phase::DeleteChaos,
        Phase::DeleteQuiet,
    ];

    fn from_u8(v: u8) -> Phase {
        Phase::ALL
            .into_iter()
            .find(|p| *p as u8 == v)
            .unwrap_or(Phase::DeleteQuiet)
    }

    pub fn label(self) -> &'static str {
        match self {
            Phase::ConvergeChaos => "converge+chaos",
            Phase::ConvergeQuiet => "converge quiet",
            Phase::DeleteChaos => "delete+chaos",
            Phase::DeleteQuiet => "delete quiet",
        }
    }
}

/// The request log, fetched with `?since=` so nothing is lost.
#[derive(Default)]
pub struct RequestLog {
    pub entries: Vec<LogEntry>,
    last: u64,
}

impl RequestLog {
    pub async fn sync(&mut self, control: &ControlClient) -> Result<(), ClientError> {
        let view = control.requests(Some(self.last)).await?;
        for e in view.entries {
            self.last = self.last.max(e.seq);
            self.entries.push(e);
        }
        Ok(())
    }

    pub fn last_seq(&self) -> u64 {
        self.last
    }
}

/// A Ready True→False transition of a target that is not being deleted.
#[derive(Clone, Debug)]
pub struct Flap {
    pub name: String,
    pub reason: String,
    pub phase: Phase,
}

#[derive(Default)]
pub struct Recorded {
    pub flaps: Vec<Flap>,
    /// Times a target turned Ready=True.
    pub became_ready: usize,
    /// Violations seen by the compute sampler (capped).
    pub sampled_violations: Vec<String>,
    pub samples: usize,
}

pub struct Monitor {
    pub phase: Arc<AtomicU8>,
    pub log: Arc<Mutex<RequestLog>>,
    pub recorded: Arc<Mutex<Recorded>>,
    pub sample_errors: Arc<AtomicUsize>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Monitor {
    /// Starts the watches and samplers. `foreign` is (workspace, name, body) of the foreign compute.
    pub fn start(client: Client, control: ControlClient, foreign: (String, String, Value)) -> Self {
        let (stop, stop_rx) = watch::channel(false);
        let phase = Arc::new(AtomicU8::new(Phase::ConvergeChaos as u8));
        let log = Arc::new(Mutex::new(RequestLog::default()));
        let recorded = Arc::new(Mutex::new(Recorded::default()));
        let sample_errors = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for kind in Kind::ALL {
            tasks.push(tokio::spawn(watch_ready(
                client.clone(),
                kind,
                phase.clone(),
                recorded.clone(),
                stop_rx.clone(),
            )));
        }
        tasks.push(tokio::spawn(sample_computes(
            control.clone(),
            foreign,
            recorded.clone(),
            sample_errors.clone(),
            stop_rx.clone(),
        )));
        {
            let log = log.clone();
            let mut stop_rx = stop_rx.clone();
            let errors = sample_errors.clone();
            tasks.push(tokio::spawn(async move {
                loop {
                    if log.lock().await.sync(&control).await.is_err() {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                        _ = stop_rx.changed() => break,
                    }
                }
            }));
        }
        Monitor {
            phase,
            log,
            recorded,
            sample_errors,
            stop,
            tasks,
        }
    }

    pub fn set_phase(&self, p: Phase) {
        self.phase.store(p as u8, Ordering::Relaxed);
    }

    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

fn ready_of(obj: &DynamicObject) -> (bool, String) {
    let cond = obj.data["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"));
    match cond {
        Some(c) => (
            c["status"] == "True",
            c["reason"].as_str().unwrap_or_default().to_owned(),
        ),
        None => (false, String::new()),
    }
}

async fn watch_ready(
    client: Client,
    kind: Kind,
    phase: Arc<AtomicU8>,
    recorded: Arc<Mutex<Recorded>>,
    mut stop: watch::Receiver<bool>,
) {
    let api: Api<DynamicObject> = Api::all_with(client, &kind.api_resource());
    let stream = watcher(api, watcher::Config::default()).backoff(EverySecond);
    futures::pin_mut!(stream);
    let mut was_ready: HashMap<String, bool> = HashMap::new();
    loop {
        let event = tokio::select! {
            e = stream.next() => e,
            _ = stop.changed() => break,
        };
        let obj = match event {
            Some(Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o))) => o,
            Some(Ok(watcher::Event::Delete(o))) => {
                was_ready.remove(&key(&o));
                continue;
            }
            Some(_) => continue,
            None => break,
        };
        let k = key(&obj);
        if obj.metadata.deletion_timestamp.is_some() {
            was_ready.remove(&k);
            continue;
        }
        let (ready, reason) = ready_of(&obj);
        let before = was_ready.insert(k, ready);
        let mut r = recorded.lock().await;
        if ready && before != Some(true) {
            r.became_ready += 1;
        }
        if before == Some(true) && !ready {
            r.flaps.push(Flap {
                name: obj.name_any(),
                reason,
                phase: Phase::from_u8(phase.load(Ordering::Relaxed)),
            });
        }
    }
}

/// Retry a failed watch every second: kube's default backoff (up to 30 s, reset only after
/// 120 s) would leave the monitor blind for a while after the API-server outage.
struct EverySecond;

impl Iterator for EverySecond {
    type Item = Duration;
    fn next(&mut self) -> Option<Duration> {
        Some(Duration::from_secs(1))
    }
}

impl Backoff for EverySecond {
    fn reset(&mut self) {}
}

fn key(o: &DynamicObject) -> String {
    format!("{}/{}", o.namespace().unwrap_or_default(), o.name_any())
}

/// Computes sharing one (workspace, resource id), as `workspace: a, b -> resource`.
pub fn shared_resources(computes: &[ComputeView]) -> Vec<String> {
    let mut by: BTreeMap<(String, String), Vec<&str>> = BTreeMap::new();
    for c in computes {
        if let Some(r) = &c.resource_id {
            by.entry((c.workspace.to_ascii_lowercase(), r.to_ascii_lowercase()))
                .or_default()
                .push(&c.name);
        }
    }
    by.into_iter()
        .filter(|(_, names)| names.len() > 1)
        .map(|((ws, r), names)| format!("{ws}: {} -> {r}", names.join(", ")))
        .collect()
}

async fn sample_computes(
    control: ControlClient,
    foreign: (String, String, Value),
    recorded: Arc<Mutex<Recorded>>,
    errors: Arc<AtomicUsize>,
    mut stop: watch::Receiver<bool>,
) {
    let (fws, fname, fbody) = foreign;
    loop {
        match control.computes().await {
            Ok(computes) => {
                let mut found = shared_resources(&computes);
                match computes
                    .iter()
                    .find(|c| c.workspace.eq_ignore_ascii_case(&fws) && c.name == fname)
                {
                    None => found.push(format!("foreign compute {fname} missing")),
                    Some(c) if c.body != fbody => {
                        found.push(format!("foreign compute {fname} changed: {}", c.body));
                    }
                    Some(_) => {}
                }
                let mut r = recorded.lock().await;
                r.samples += 1;
                for v in found {
                    if r.sampled_violations.len() < 20 {
                        r.sampled_violations.push(v);
                    }
                }
            }
            Err(_) => {
                errors.fetch_add(1, Ordering::Relaxed);
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            _ = stop.changed() => break,
        }
    }
}
