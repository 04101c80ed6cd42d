//! The disruptions that run on their own schedule: operator restarts (mostly SIGKILL, some
//! SIGTERM) and emulator fault rules (5xx, dropped connections and latency with a probability,
//! plus 429 + Retry-After bursts).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use azureml_emulator::{ControlClient, FaultSpec};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::harness::{Operator, World};

/// A small deterministic generator (xorshift64*), so a seed replays a schedule.
#[derive(Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn between(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }
}

/// What the restart loop did.
#[derive(Default, Debug)]
pub struct Restarts {
    pub kills: usize,
    pub terms: usize,
    /// SIGTERMs answered by an exit within the grace period, by exit status.
    pub term_exits: BTreeMap<String, usize>,
    /// Seconds from SIGTERM to exit, for those that exited.
    pub term_seconds: Vec<f64>,
    /// SIGTERMs not answered within the grace period (then SIGKILLed).
    pub term_timeouts: usize,
    /// When each restart happened (seconds since the scenario's start).
    pub at: Vec<f64>,
    /// Every operator process's log file.
    pub logs: Vec<PathBuf>,
}

/// When restarts happen.
#[derive(Clone, Copy)]
pub struct Schedule {
    /// Seconds before the first restart.
    pub first: f64,
    /// Seconds between later restarts (uniform).
    pub every: (f64, f64),
    /// Share of restarts that are SIGTERM (else SIGKILL).
    pub term: f64,
}

pub struct Restarter {
    stop: watch::Sender<bool>,
    task: JoinHandle<Operator>,
}

/// The grace period of a SIGTERM, as `terminationGracePeriodSeconds` in deploy/base.
pub const GRACE: Duration = Duration::from_secs(30);

/// How the operator process is started.
#[derive(Clone)]
pub struct OperatorSpec {
    pub world: &'static World,
    pub kubeconfig: PathBuf,
    pub namespaces: Vec<String>,
    pub resync: String,
}

impl OperatorSpec {
    pub fn start(&self, restarts: &Mutex<Restarts>) -> Operator {
        let ns: Vec<&str> = self.namespaces.iter().map(String::as_str).collect();
        let op = Operator::start_with(self.world, &self.kubeconfig, &ns, &[], &self.resync);
        lock(restarts).logs.push(op.log.clone());
        op
    }
}

pub fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Restarter {
    /// Restarts `op` on `schedule`.
    pub fn start(
        spec: OperatorSpec,
        mut op: Operator,
        schedule: Schedule,
        mut rng: Rng,
        restarts: Arc<Mutex<Restarts>>,
        t0: Instant,
    ) -> Restarter {
        let (stop, mut stop_rx) = watch::channel(false);
        let task = tokio::spawn(async move {
            let Schedule { first, every, term } = schedule;
            let mut wait = Duration::from_secs_f64(first);
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = stop_rx.changed() => return op,
                }
                lock(&restarts).at.push(t0.elapsed().as_secs_f64());
                if rng.unit() < term {
                    let sent = Instant::now();
                    let exit = tokio::task::block_in_place(|| op.terminate(GRACE));
                    let mut r = lock(&restarts);
                    r.terms += 1;
                    match exit {
                        Some(status) => {
                            *r.term_exits.entry(status.to_string()).or_default() += 1;
                            r.term_seconds.push(sent.elapsed().as_secs_f64());
                        }
                        None => r.term_timeouts += 1,
                    }
                    drop(r);
                    op.kill();
                } else {
                    op.kill();
                    lock(&restarts).kills += 1;
                }
                op = spec.start(&restarts);
                wait = Duration::from_secs_f64(rng.between(every.0, every.1));
            }
        });
        Restarter { stop, task }
    }

    /// Stops restarting and hands back the running operator.
    pub async fn stop(self) -> Operator {
        let _ = self.stop.send(true);
        self.task.await.expect("the restart loop does not panic")
    }
}

/// Fault rules on ARM paths (the token endpoint too, rarely).
pub struct Faults {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// Rule id → what it injects.
pub type FaultLabels = Arc<Mutex<BTreeMap<u64, &'static str>>>;

const ARM: &str = "^/subscriptions/";

impl Faults {
    /// Adds the steady rules now and a 429 burst of 1-4 s every `burst_every` seconds (jittered).
    pub async fn start(
        control: ControlClient,
        burst_every: f64,
        mut rng: Rng,
        labels: FaultLabels,
    ) -> Faults {
        let steady = [
            (
                "503 (p=0.05)",
                FaultSpec {
                    path_pattern: ARM.into(),
                    status: Some(503),
                    probability: Some(0.05),
                    ..FaultSpec::default()
                },
            ),
            (
                "500 (p=0.05)",
                FaultSpec {
                    path_pattern: ARM.into(),
                    status: Some(500),
                    probability: Some(0.05),
                    ..FaultSpec::default()
                },
            ),
            (
                "drop (p=0.03)",
                FaultSpec {
                    path_pattern: ARM.into(),
                    drop: true,
                    probability: Some(0.03),
                    ..FaultSpec::default()
                },
            ),
            (
                "latency 1.5s (p=0.1)",
                FaultSpec {
                    path_pattern: ARM.into(),
                    latency_ms: Some(1500),
                    probability: Some(0.1),
                    ..FaultSpec::default()
                },
            ),
            (
                "token 503 (p=0.05)",
                FaultSpec {
                    path_pattern: "/oauth2/".into(),
                    status: Some(503),
                    probability: Some(0.05),
                    ..FaultSpec::default()
                },
            ),
        ];
        for (label, spec) in steady {
            let id = control.add_fault(&spec).await.expect("add fault rule");
            lock(&labels).insert(id, label);
        }
        let (stop, mut stop_rx) = watch::channel(false);
        let task = tokio::spawn(async move {
            loop {
                let wait = Duration::from_secs_f64(rng.between(0.5, 1.5) * burst_every);
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = stop_rx.changed() => return,
                }
                // Like ARM: every request is refused for a while (not for a number of requests,
                // which would punish a client for honouring Retry-After).
                let spec = FaultSpec {
                    path_pattern: ARM.into(),
                    status: Some(429),
                    code: Some("TooManyRequests".into()),
                    retry_after: Some(1 + rng.next_u64() % 3),
                    ..FaultSpec::default()
                };
                let lasts = Duration::from_secs_f64(rng.between(1.0, 4.0));
                if let Ok(id) = control.add_fault(&spec).await {
                    lock(&labels).insert(id, "429 burst (1-4s long, Retry-After 1-3s)");
                    tokio::select! {
                        _ = tokio::time::sleep(lasts) => {}
                        _ = stop_rx.changed() => return,
                    }
                    let _ = control.delete_fault(id).await;
                }
            }
        });
        Faults { stop, task }
    }

    /// Stops the bursts and removes every rule.
    pub async fn stop(self, control: &ControlClient) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
        control.clear_faults().await.expect("clear fault rules");
    }
}

/// Whether any of `logs` mentions a panic; returns the first such line.
pub fn first_panic(logs: &[PathBuf]) -> Option<String> {
    logs.iter().find_map(|p| panic_in(p))
}

fn panic_in(p: &Path) -> Option<String> {
    let text = std::fs::read_to_string(p).ok()?;
    text.lines()
        .find(|l| l.contains("panicked"))
        .map(|l| format!("{}: {l}", p.display()))
}
