//! Scale benchmark (issue 9): N BatchTargets over W MLWorkspaces on a private control plane and
//! the emulator with ARM's default throttle buckets; the operator runs as a process under the
//! RBAC of deploy/base/rbac.yaml, as in the e2e tests. Ignored by `cargo test`; run it with
//! `make bench-scale` (see bench/scale/RESULTS.md for the knobs and the figures).

#[allow(dead_code)]
#[path = "../e2e/harness.rs"]
mod harness;

mod apiserver;
mod arm;
mod knobs;
mod process;
mod report;
mod tracker;

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime};

use azureml_attach::api::{BatchTarget, MLWorkspace};
use futures::StreamExt;
use k8s_openapi::api::events::v1::Event;
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::{Api, Client};
use testenv::TestEnv;

use apiserver::{Delta, Own, key};
use arm::ArmLog;
use harness::{Operator, World};
use knobs::Knobs;
use report::{Report, percentile, percentile_of};
use tracker::Tracker;

const CRD_GROUP: &str = "attach.azureml.io";

/// Everything a phase needs.
struct Bench {
    knobs: Knobs,
    world: World,
    namespaces: Vec<String>,
    admin: Client,
    own: Own,
    tracker: Tracker,
    op: Operator,
    op_addr: String,
    http: reqwest::Client,
    report: Report,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: minutes long; run with `make bench-scale`"]
async fn scale() {
    azureml_attach::azure::install_crypto_provider();
    let knobs = Knobs::from_env();
    eprintln!("SCALE {knobs:?}; load {}", process::load());
    let mut b = Bench::start(knobs).await;
    b.converge().await;
    b.steady().await;
    b.probes().await;
    b.restart(false).await;
    b.restart(true).await;
    b.delete_all().await;
    b.op.terminate(Duration::from_secs(30));
    b.report.print(&b.knobs);
}

impl Bench {
    async fn start(knobs: Knobs) -> Bench {
        let env: &'static TestEnv =
            Box::leak(Box::new(TestEnv::start().expect("a private control plane")));
        harness::install_now(env).await;
        let emu = azureml_emulator::spawn_detached(knobs.emulator_config()).expect("emulator");
        let control = emu.control().expect("control client");
        let mut namespaces = Vec::new();
        for _ in 0..knobs.namespaces {
            namespaces.push(env.create_namespace("scale").await);
        }
        let world = World {
            env,
            emu,
            control,
            ns: namespaces[0].clone(),
            client: env.client(),
        };
        for (i, ns) in namespaces.iter().enumerate() {
            world.apply_in(ns, &knobs.workspaces_yaml(i)).await;
        }
        let own = Own::default();
        let admin = env.client();
        let tracker = Tracker::start(admin.clone(), own.clone()).await;
        let op = start_operator(&world, &namespaces, &knobs).await;
        let op_addr = op.admin_addr().await;
        let mut b = Bench {
            knobs,
            world,
            namespaces,
            admin,
            own,
            tracker,
            op,
            op_addr,
            http: reqwest::Client::new(),
            report: Report::default(),
        };
        b.wait_workspaces_ready().await;
        b
    }

    async fn wait_workspaces_ready(&mut self) {
        let start = Instant::now();
        loop {
            let mut ready = 0;
            for ns in &self.namespaces {
                let list = Api::<MLWorkspace>::namespaced(self.admin.clone(), ns)
                    .list(&ListParams::default())
                    .await
                    .expect("list MLWorkspaces");
                self.own.add(key("LIST", CRD_GROUP, "mlworkspaces", ""), 1);
                ready += list
                    .items
                    .iter()
                    .filter(|w| {
                        w.status.as_ref().is_some_and(|s| {
                            s.conditions
                                .iter()
                                .any(|c| c.type_ == "Ready" && c.status == "True")
                        })
                    })
                    .count();
            }
            if ready == self.knobs.workspaces {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(120),
                "{ready}/{} MLWorkspaces Ready\n{}",
                self.knobs.workspaces,
                harness::tail(&self.op.logs())
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    async fn snapshot(&self) -> apiserver::Snapshot {
        apiserver::snapshot(&self.admin, &self.own).await
    }

    fn status_writes(&self) -> usize {
        self.op.logs().matches("\"writing status\"").count()
    }

    fn pid(&self) -> u32 {
        self.op.pid().expect("operator running")
    }

    /// Sum of an operator metric's samples whose line contains `filter`.
    async fn operator_metric(&self, name: &str, filter: &str) -> f64 {
        let text = match self
            .http
            .get(format!("http://{}/metrics", self.op_addr))
            .send()
            .await
        {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => return 0.0,
        };
        text.lines()
            .filter(|l| l.starts_with(name) && l.contains(filter))
            .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
            .sum::<f64>()
            + 0.0 // an empty sum is -0
    }

    /// BatchTarget reconciles the running process finished.
    async fn reconciles(&self) -> u64 {
        self.operator_metric("azureml_attach_reconcile_total", "kind=\"BatchTarget\"")
            .await as u64
    }

    /// Waits until the tracker sees `objects` targets, `ready` of them Ready.
    async fn wait_counts(&self, objects: usize, ready: usize, timeout: Duration, what: &str) {
        let start = Instant::now();
        let mut last_print = Instant::now();
        loop {
            let c = self.tracker.counts();
            if c == (objects, ready) {
                return;
            }
            if last_print.elapsed() > Duration::from_secs(10) {
                eprintln!(
                    "SCALE {what}: {} objects, {} Ready after {:.0}s; operator {:.1} CPU-s, {} reconciles; load {}",
                    c.0,
                    c.1,
                    start.elapsed().as_secs_f64(),
                    self.op.pid().map_or(0.0, process::cpu_secs),
                    self.reconciles().await,
                    process::load()
                );
                last_print = Instant::now();
            }
            assert!(
                start.elapsed() < timeout,
                "{what}: {c:?} after {timeout:?}, wanted ({objects}, {ready})\n{}",
                harness::tail(&self.op.logs())
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn create_targets(
        &self,
        indices: std::ops::Range<usize>,
    ) -> BTreeMap<String, SystemTime> {
        let n = indices.len() as u64;
        let created = futures::stream::iter(indices)
            .map(|i| {
                let ns = &self.namespaces[self.knobs.namespace_of(i)];
                let api = Api::<BatchTarget>::namespaced(self.admin.clone(), ns);
                let target = self.knobs.target(i);
                async move {
                    api.create(&PostParams::default(), &target)
                        .await
                        .expect("create BatchTarget");
                    (self.knobs.target_name(i), SystemTime::now())
                }
            })
            .buffer_unordered(self.knobs.create_parallelism)
            .collect::<BTreeMap<_, _>>()
            .await;
        self.own.add(key("POST", CRD_GROUP, "batchtargets", ""), n);
        created
    }

    async fn converge(&mut self) {
        let n = self.knobs.targets;
        let idle = (process::rss(self.pid()), process::cpu_secs(self.pid()));
        let reconciles0 = self.reconciles().await;
        let m0 = self.snapshot().await;
        let writes0 = self.status_writes();
        self.world.control.clear_requests().await.expect("clear");
        let started = Instant::now();
        let created = self.create_targets(0..n).await;
        let created_in = started.elapsed();
        let timeout = Duration::from_secs_f64(3.0 * self.knobs.write_bound(n) + 300.0);
        self.wait_counts(n, n, timeout, "converge").await;
        let ready_in = self
            .tracker
            .last_ready()
            .map_or(started.elapsed(), |t| t - started);
        let (rss, cpu) = (process::rss(self.pid()), process::cpu_secs(self.pid()));
        // Writes that land after the last Ready (none expected) still count as converge.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let m1 = self.snapshot().await;
        let writes = self.status_writes() - writes0;
        let log = ArmLog::fetch(&self.world.control).await;
        let throttled = self
            .operator_metric("azureml_attach_arm_throttled_total", "")
            .await;
        let reconciles = self.reconciles().await - reconciles0;
        let delta = Delta::between(&m0, &m1);
        let latencies = log.put_latencies(&created);
        let bound = self.knobs.write_bound(n);
        let own_bound = self.knobs.operator_write_bound(n);
        let r = &mut self.report;
        r.section("Converge: create N targets, wait until all Ready");
        r.row(
            "apply → all Ready",
            "≤ 1.05 × bound, 0 429s",
            format!(
                "{:.1} s (creates returned after {:.1} s); ARM write-bucket bound {bound:.0} s: ratio {}; \
                 the operator's own budget's bound {own_bound:.1} s: ratio {}",
                ready_in.as_secs_f64(),
                created_in.as_secs_f64(),
                ratio(ready_in, bound),
                ratio(ready_in, own_bound).replace("**", "")
            ),
        );
        r.row("429s from ARM", "0", format!("**{}**", log.throttled()));
        r.row(
            "client-side ARM throttling (operator metric `arm_throttled_total`)",
            "—",
            format!("{throttled}"),
        );
        r.row(
            "ARM calls by operation",
            "—",
            format!("{} ({} LISTs)", log.describe(), log.lists()),
        );
        r.row("PUTs over time", "—", log.put_rate());
        let floor = self.knobs.put_floor(n);
        r.row(
            "apply → first PUT, all N: p50 / p99 / max",
            "p99 ≤ 0.05 s",
            format!(
                "{:.3} s / **{:.3} s** / {:.3} s (ARM's bucket alone forces p50 {:.1} s / p99 {:.1} s)",
                percentile_of(&latencies, 0.5),
                percentile_of(&latencies, 0.99),
                percentile_of(&latencies, 1.0),
                percentile(&floor, 0.5),
                percentile(&floor, 0.99)
            ),
        );
        let burst = latencies.len().min(self.knobs.operator_write_burst());
        r.row(
            &format!(
                "apply → first PUT, the first {burst} PUTs (the operator's write burst, not bucket-bound): p50 / p99 / max"
            ),
            "p99 ≤ 0.05 s",
            format!(
                "{:.3} s / {:.3} s / {:.3} s",
                percentile_of(&latencies[..burst], 0.5),
                percentile_of(&latencies[..burst], 0.99),
                percentile_of(&latencies[..burst], 1.0)
            ),
        );
        r.api_rows(&delta, n, true);
        r.row(
            "status applies (log \"writing status\")",
            "≤ 2 per target",
            format!("{writes} ({:.2} per target)", writes as f64 / n as f64),
        );
        r.row(
            "BatchTarget reconciles (operator metric)",
            "—",
            format!(
                "{reconciles} ({:.1} per target)",
                reconciles as f64 / n as f64
            ),
        );
        r.row(
            "operator RSS / CPU before the apply (workspaces only)",
            "—",
            format!("{} / {:.1} CPU-s since start", idle.0, idle.1),
        );
        r.row(
            "operator RSS / CPU at the end of converge",
            "RSS ≤ 40 MiB",
            format!("{rss} / {cpu:.1} CPU-s since start"),
        );
        eprintln!("SCALE converge done; load {}", process::load());
    }

    async fn steady(&mut self) {
        let n = self.knobs.targets;
        // The last polls and event writes of the converge tail.
        tokio::time::sleep(Duration::from_secs(5)).await;
        let m0 = self.snapshot().await;
        let writes0 = self.status_writes();
        self.world.control.clear_requests().await.expect("clear");
        let cpu0 = process::cpu_secs(self.pid());
        let reconciles0 = self.reconciles().await;
        let window = Duration::from_secs(self.knobs.steady_secs);
        tokio::time::sleep(window).await;
        let cpu1 = process::cpu_secs(self.pid());
        let reconciles = self.reconciles().await - reconciles0;
        let rss = process::rss(self.pid());
        let m1 = self.snapshot().await;
        let writes = self.status_writes() - writes0;
        let log = ArmLog::fetch(&self.world.control).await;
        let delta = Delta::between(&m0, &m1);
        let r = &mut self.report;
        r.section(&format!(
            "Steady state: {} s with every target Ready, resync {}",
            window.as_secs(),
            self.knobs.resync
        ));
        r.api_rows(&delta, n, false);
        r.row(
            "status applies (log \"writing status\")",
            "0",
            format!("**{writes}**"),
        );
        r.row(
            "ARM calls by operation",
            "LIST per workspace per resync, 0 writes",
            log.describe(),
        );
        r.row(
            "BatchTarget reconciles (operator metric)",
            "one per target per resync",
            format!(
                "{reconciles} ({:.2} per target); {:.2} ms CPU each",
                reconciles as f64 / n as f64,
                1000.0 * (cpu1 - cpu0) / reconciles.max(1) as f64
            ),
        );
        r.row(
            "operator RSS / CPU in the window",
            "RSS ≤ 40 MiB",
            format!(
                "{rss} / {:.1} CPU-s ({:.1}% of one core)",
                cpu1 - cpu0,
                100.0 * (cpu1 - cpu0) / window.as_secs_f64()
            ),
        );
        eprintln!("SCALE steady done; load {}", process::load());
    }

    /// Apply → first PUT with a quiet write bucket: a few targets created one at a time while
    /// N are Ready, then deleted again.
    async fn probes(&mut self) {
        let (n, p) = (self.knobs.targets, self.knobs.probes);
        if p == 0 {
            return;
        }
        self.world.control.clear_requests().await.expect("clear");
        let mut created = BTreeMap::new();
        for i in n..n + p {
            created.append(&mut self.create_targets(i..i + 1).await);
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        self.wait_counts(n + p, n + p, Duration::from_secs(120), "probes")
            .await;
        let log = ArmLog::fetch(&self.world.control).await;
        let latencies = log.put_latencies(&created);
        for i in n..n + p {
            let ns = &self.namespaces[self.knobs.namespace_of(i)];
            Api::<BatchTarget>::namespaced(self.admin.clone(), ns)
                .delete(&self.knobs.target_name(i), &DeleteParams::default())
                .await
                .expect("delete probe");
            self.own
                .add(key("DELETE", CRD_GROUP, "batchtargets", ""), 1);
        }
        self.wait_counts(n, n, Duration::from_secs(120), "probes deleted")
            .await;
        self.report.section(&format!(
            "Probes: {p} targets created one every 0.5 s while {n} are Ready (quiet write bucket)"
        ));
        self.report.row(
            "apply → first PUT: p50 / p99 / max",
            "p99 ≤ 0.05 s",
            format!(
                "{:.3} s / **{:.3} s** / {:.3} s",
                percentile_of(&latencies, 0.5),
                percentile_of(&latencies, 0.99),
                percentile_of(&latencies, 1.0)
            ),
        );
    }

    /// Events by name → (`type/reason`, count); the count is the series count, at least 1.
    async fn events(&self) -> BTreeMap<String, (String, i64)> {
        let mut out = BTreeMap::new();
        for ns in &self.namespaces {
            let list = Api::<Event>::namespaced(self.admin.clone(), ns)
                .list(&ListParams::default())
                .await
                .expect("list events");
            self.own.add(key("LIST", "events.k8s.io", "events", ""), 1);
            for e in list.items {
                let count = e
                    .series
                    .as_ref()
                    .map(|s| i64::from(s.count))
                    .or(e.deprecated_count.map(i64::from))
                    .unwrap_or(1);
                out.insert(
                    format!("{ns}/{}", e.metadata.name.unwrap_or_default()),
                    (
                        format!(
                            "{}/{}",
                            e.type_.unwrap_or_default(),
                            e.reason.unwrap_or_default()
                        ),
                        count,
                    ),
                );
            }
        }
        out
    }

    async fn restart(&mut self, crash: bool) {
        let (n, w) = (self.knobs.targets, self.knobs.workspaces);
        let how = if crash { "SIGKILL" } else { "SIGTERM" };
        self.wait_counts(n, n, Duration::from_secs(60), "before restart")
            .await;
        let events0 = self.events().await;
        let m0 = self.snapshot().await;
        self.world.control.clear_requests().await.expect("clear");
        self.tracker.take_transitions();
        let t = Instant::now();
        let stop = if crash {
            self.op.kill();
            "killed".to_owned()
        } else {
            match self.op.terminate(Duration::from_secs(60)) {
                Some(status) => {
                    format!("exited ({status}) after {:.1} s", t.elapsed().as_secs_f64())
                }
                None => "did not exit within 60 s".to_owned(),
            }
        };
        let restarted = Instant::now();
        self.op = start_operator(&self.world, &self.namespaces, &self.knobs).await;
        self.op_addr = self.op.admin_addr().await;
        // Until every target has been reconciled once by the new process.
        loop {
            let done = self.reconciles().await;
            if done >= n as u64 {
                break;
            }
            assert!(
                restarted.elapsed() < Duration::from_secs(300),
                "{how}: {done}/{n} reconciled\n{}",
                harness::tail(&self.op.logs())
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        let reconciled_in = restarted.elapsed();
        tokio::time::sleep(Duration::from_secs(3)).await;
        let rss = process::rss(self.pid());
        let window = t.elapsed();
        let m1 = self.snapshot().await;
        let transitions = self.tracker.take_transitions();
        let events1 = self.events().await;
        let log = ArmLog::fetch(&self.world.control).await;
        let writes = self.status_writes();
        let warnings: BTreeMap<String, i64> = new_events(&events0, &events1)
            .into_iter()
            .filter(|(k, _)| k.starts_with("Warning/"))
            .collect();
        let delta = Delta::between(&m0, &m1);
        let r = &mut self.report;
        r.section(&format!(
            "Restart by {how}: old process {stop}; new one reconciled all {n} after {:.1} s; window {:.1} s",
            reconciled_in.as_secs_f64(),
            window.as_secs_f64()
        ));
        r.row(
            "Ready transitions True → False",
            "0",
            format!("**{transitions}**"),
        );
        r.row(
            "Warning events (by reason)",
            "0",
            if warnings.is_empty() {
                "**0**".to_owned()
            } else {
                format!("**{warnings:?}**")
            },
        );
        r.row("ARM writes", "0", format!("**{}**", log.writes()));
        r.row(
            "ARM LISTs per workspace (pages per LIST)",
            "≤ 1",
            format!(
                "**{:.1}** ({} LISTs, {} pages, {w} workspaces)",
                log.lists() as f64 / w as f64,
                log.lists(),
                log.list_pages()
            ),
        );
        r.row("ARM calls by operation", "—", log.describe());
        r.api_rows(&delta, n, false);
        r.row(
            "status applies by the new process",
            "0",
            format!("**{writes}**"),
        );
        r.row(
            "RSS of the new process after reconciling all",
            "RSS ≤ 40 MiB",
            rss.to_string(),
        );
    }

    async fn delete_all(&mut self) {
        let n = self.knobs.targets;
        let events0 = self.events().await;
        let m0 = self.snapshot().await;
        self.world.control.clear_requests().await.expect("clear");
        let started = Instant::now();
        // One collection DELETE per workspace, all at once: a single one for 10,000 objects
        // outlives the API server's 60 s request timeout (504, retried by kube-client).
        let deletes = (0..self.knobs.workspaces).map(|w| {
            let ns = &self.namespaces[w % self.knobs.namespaces];
            let api = Api::<BatchTarget>::namespaced(self.admin.clone(), ns);
            let selector = format!("{}={}", knobs::WORKSPACE_LABEL, knobs::workspace_name(w));
            async move {
                api.delete_collection(
                    &DeleteParams::default(),
                    &ListParams::default().labels(&selector),
                )
                .await
                .expect("delete collection");
            }
        });
        futures::future::join_all(deletes).await;
        // kube-apiserver labels a collection DELETE with verb DELETE.
        self.own.add(
            key("DELETE", CRD_GROUP, "batchtargets", ""),
            self.knobs.workspaces as u64,
        );
        let timeout = Duration::from_secs_f64(3.0 * self.knobs.write_bound(n) + 300.0);
        self.wait_counts(0, 0, timeout, "delete all").await;
        let gone_in = started.elapsed();
        let (rss, cpu) = (process::rss(self.pid()), process::cpu_secs(self.pid()));
        let m1 = self.snapshot().await;
        let events = new_events(&events0, &self.events().await);
        let log = ArmLog::fetch(&self.world.control).await;
        let delta = Delta::between(&m0, &m1);
        let bound = self.knobs.delete_bound(n);
        let own_bound = self.knobs.operator_delete_bound(n);
        let r = &mut self.report;
        r.section(
            "Delete all: one DELETECOLLECTION per workspace (label selector), all at once; wait until every object is gone",
        );
        r.row(
            "delete → all gone",
            "≤ 1.05 × bound, 0 429s",
            format!(
                "{:.1} s; ARM delete-bucket bound {bound:.0} s: ratio {}; the operator's own \
                 budget's bound {own_bound:.1} s: ratio {}",
                gone_in.as_secs_f64(),
                ratio(gone_in, bound),
                ratio(gone_in, own_bound).replace("**", "")
            ),
        );
        r.row("429s from ARM", "0", format!("**{}**", log.throttled()));
        r.row("ARM calls by operation", "—", log.describe());
        r.row(
            "API-server requests from the operator",
            "—",
            format!("{} (APF total {})", delta.describe(), delta.apf_total),
        );
        r.row(
            "events (type/reason)",
            "1 per target",
            format!("{events:?}"),
        );
        r.row(
            "operator RSS / CPU at the end",
            "RSS ≤ 40 MiB",
            format!("{rss} / {cpu:.1} CPU-s since start"),
        );
    }
}

/// Events published (or repeated) between two [`Bench::events`] readings, by `type/reason`.
fn new_events(
    before: &BTreeMap<String, (String, i64)>,
    after: &BTreeMap<String, (String, i64)>,
) -> BTreeMap<String, i64> {
    let mut out = BTreeMap::new();
    for (name, (what, count)) in after {
        let was = before.get(name).map_or(0, |(_, c)| *c);
        if *count > was {
            *out.entry(what.clone()).or_default() += count - was;
        }
    }
    out
}

/// `measured / bound`, or why there is none.
fn ratio(measured: Duration, bound: f64) -> String {
    if bound > 0.0 {
        format!("**{:.2}**", measured.as_secs_f64() / bound)
    } else {
        "n/a (all within the burst)".to_owned()
    }
}

async fn start_operator(world: &World, namespaces: &[String], knobs: &Knobs) -> Operator {
    let ns: Vec<&str> = namespaces.iter().map(String::as_str).collect();
    let mut env = vec![("LOG_FORMAT", "json")];
    if let Some(c) = &knobs.concurrency {
        env.push(("CONCURRENCY", c.as_str()));
    }
    if let Some(w) = &knobs.operator_writes {
        env.push(("ARM_THROTTLE_WRITES", w.as_str()));
    }
    if let Some(d) = &knobs.operator_deletes {
        env.push(("ARM_THROTTLE_DELETES", d.as_str()));
    }
    Operator::start(world, &ns, &env, &knobs.resync).await
}
