//! The chaos scenario (issue 8): `CHAOS_TARGETS` targets (default 30; `make chaos` runs 300) of
//! every kind over three namespaces and three Azure workspaces, on a private control plane and
//! one emulator with ARM's default throttle, with the operator as a process under the RBAC of
//! deploy/base. While the targets converge and again while everything is deleted, the operator
//! is SIGKILLed (sometimes SIGTERMed) and restarted every few seconds and the emulator injects
//! 5xx, dropped connections, latency and 429 bursts; mid-way kube-apiserver is stopped and
//! started (etcd kept), a credential Secret is rotated, an sshPort changes, computes are removed
//! behind the operator's back, and a duplicate claim appears in another namespace. A foreign
//! compute holds one target's name from the start.
//!
//! Every invariant prints `INVARIANT <name>: ok|VIOLATED (details)`; the measurements print as
//! `CHAOS …` lines (see bench/chaos/RESULTS.md). The test fails on any violation.

#[allow(dead_code)]
#[path = "../e2e/harness.rs"]
mod harness;

mod checks;
mod disrupt;
mod figures;
mod fixture;
mod monitor;
mod report;
mod steps;
mod verdict;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use azureml_attach::api::MLWorkspace;
use kube::ResourceExt;
use kube::discovery::ApiResource;
use testenv::TestEnv;

use checks::Scenario;
use disrupt::{FaultLabels, Faults, OperatorSpec, Restarter, Restarts, Rng, Schedule, lock};
use figures::{arm_figures, by_reason, flap_figures};
use fixture::{AZURE_WORKSPACES, Fixture, Kind, NAMESPACES, NEW_SSH_PORT};
use harness::{OPERATOR_NS, OPERATOR_SA, World};
use monitor::{Monitor, Phase, shared_resources};
use report::{Report, figure};
use steps::{
    apply, delete, foreign_body, mutate, status_text, wait_converged, wait_gone, warning_snapshot,
};

/// Phase lengths and bounds, from the number of targets.
struct Profile {
    /// Seconds between restarts (uniform).
    restart_every: (f64, f64),
    /// Share of restarts that are SIGTERM (else SIGKILL).
    term_share: f64,
    /// Mean seconds between 429 bursts.
    burst_every: f64,
    outage_at: Duration,
    outage_for: Duration,
    mutate_at: Duration,
    converge_chaos: Duration,
    delete_chaos: Duration,
    converge_bound: Duration,
    delete_bound: Duration,
    resync: &'static str,
}

impl Profile {
    fn for_targets(n: usize) -> Profile {
        let s = Duration::from_secs;
        if n < 100 {
            Profile {
                restart_every: (2.0, 5.0),
                term_share: 0.25,
                burst_every: 6.0,
                outage_at: s(12),
                outage_for: s(8),
                mutate_at: s(24),
                converge_chaos: s(36),
                delete_chaos: s(16),
                converge_bound: s(150),
                delete_bound: s(150),
                resync: "5s",
            }
        } else {
            Profile {
                restart_every: (3.0, 8.0),
                term_share: 0.25,
                burst_every: 10.0,
                outage_at: s(45),
                outage_for: s(20),
                mutate_at: s(90),
                converge_chaos: s(120),
                delete_chaos: s(45),
                converge_bound: s(480),
                delete_bound: s(480),
                resync: "10s",
            }
        }
    }
}

fn env_number(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_every_kind_converges_and_detaches_under_restarts_faults_and_an_apiserver_outage() {
    azureml_attach::azure::install_crypto_provider();
    let wall = Instant::now();
    let n = env_number("CHAOS_TARGETS").map_or(30, |v| v as usize);
    assert!(
        n >= 15,
        "CHAOS_TARGETS must be at least 15 (every kind in every namespace)"
    );
    let seed = env_number("CHAOS_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    });
    let p = Profile::for_targets(n);
    figure(format!(
        "start: {n} targets ({} kinds x {NAMESPACES} namespaces x {} workspaces), seed {seed} (CHAOS_SEED={seed} replays the restart and 429-burst schedule), resync {}, restarts every {:.0}-{:.0}s ({:.0}% SIGTERM), converge phase {:?} (outage at {:?} for {:?}, mutations at {:?}), delete phase {:?}",
        Kind::ALL.len(),
        AZURE_WORKSPACES.len(),
        p.resync,
        p.restart_every.0,
        p.restart_every.1,
        p.term_share * 100.0,
        p.converge_chaos,
        p.outage_at,
        p.outage_for,
        p.mutate_at,
        p.delete_chaos
    ));
    let mut rng = Rng::new(seed);
    let mut report = Report::default();

    // The world.
    let fixture = Fixture::new(n);
    let env: &'static TestEnv =
        Box::leak(Box::new(TestEnv::start().expect("a private control plane")));
    let world: &'static World = Box::leak(Box::new(
        World::on_private_with(env, "chaos-n0", fixture.emulator_config()).await,
    ));
    let mut namespaces = vec![world.ns.clone()];
    for k in 1..NAMESPACES {
        namespaces.push(env.create_namespace(&format!("chaos-n{k}")).await);
    }
    let s = Scenario {
        fixture,
        namespaces,
        client: env.client(),
        control: world.control.clone(),
    };
    for (k, ns) in s.namespaces.iter().enumerate() {
        for v in Fixture::namespace_manifests(k, ns) {
            apply(&s.client, &v).await;
        }
    }
    let foreign = &s.fixture.foreign;
    s.control
        .put_compute(foreign.workspace, &foreign.name, &foreign.body)
        .await
        .expect("put the foreign compute");
    let foreign_before = foreign_body(&s).await.expect("the foreign compute exists");
    let resources_before = s.control.resources().await.expect("resources");
    let kubeconfig = env
        .service_account_kubeconfig(OPERATOR_NS, OPERATOR_SA)
        .await;

    // Converge under chaos.
    let monitor = Monitor::start(
        env.client(),
        s.control.clone(),
        (
            foreign.workspace.to_owned(),
            foreign.name.clone(),
            foreign_before.clone(),
        ),
    );
    let restarts = Arc::new(Mutex::new(Restarts::default()));
    let labels: FaultLabels = Arc::default();
    let spec = OperatorSpec {
        world,
        kubeconfig,
        namespaces: s.namespaces.clone(),
        resync: p.resync.to_owned(),
    };
    let t0 = Instant::now();
    let start = k8s_openapi::jiff::Timestamp::now();
    let op = spec.start(&restarts);
    let restarter = Restarter::start(
        spec.clone(),
        op,
        Schedule {
            first: rng.between(p.restart_every.0, p.restart_every.1),
            every: p.restart_every,
            term: p.term_share,
        },
        Rng::new(rng.next_u64()),
        restarts.clone(),
        t0,
    );
    let faults = Faults::start(
        s.control.clone(),
        p.burst_every,
        Rng::new(rng.next_u64()),
        labels.clone(),
    )
    .await;
    for t in &s.fixture.targets {
        apply(&s.client, &t.manifest(s.ns(t))).await;
    }
    figure(format!(
        "applied {n} targets in {:.1}s",
        t0.elapsed().as_secs_f64()
    ));

    tokio::time::sleep_until((t0 + p.outage_at).into()).await;
    let outage = Instant::now();
    tokio::task::block_in_place(|| env.stop_apiserver());
    tokio::time::sleep(p.outage_for).await;
    env.start_apiserver().await;
    let outage_took = outage.elapsed();
    figure(format!(
        "kube-apiserver stopped at {:.0}s for {:.1}s (until it answered again)",
        (outage - t0).as_secs_f64(),
        outage_took.as_secs_f64()
    ));

    tokio::time::sleep_until((t0 + p.mutate_at).into()).await;
    let (rotation_seq, drifted) = mutate(&s, &monitor).await;

    tokio::time::sleep_until((t0 + p.converge_chaos).into()).await;
    let events_chaos = warning_snapshot(&s).await;
    faults.stop(&s.control).await;
    let op = restarter.stop().await;
    monitor.set_phase(Phase::ConvergeQuiet);
    let quiet = Instant::now();
    figure(format!(
        "faults and restarts stopped at {:.0}s",
        (quiet - t0).as_secs_f64()
    ));
    let converged = wait_converged(&s, &monitor, rotation_seq, p.converge_bound).await;
    match &converged {
        Ok(d) => figure(format!(
            "converged {:.1}s after the faults stopped (bound {:?})",
            d.as_secs_f64(),
            p.converge_bound
        )),
        Err(_) => figure(format!(
            "NOT converged {:?} after the faults stopped",
            p.converge_bound
        )),
    }
    report.invariant(
        "every target converges (Ready, or ComputeNameTaken / DuplicateAttachment where expected; sshPort, rotation and drift re-attached; connection Secrets written) after the faults stop",
        converged.as_ref().err().and_then(|bad| report::summarize(bad)),
    );
    let computes = s.control.computes().await.expect("computes");
    report.invariant_list(
        "never two computes on one resource (end of convergence)",
        &shared_resources(&computes),
    );
    let statuses = status_text(&s).await;
    let events_converged = warning_snapshot(&s).await;

    // Delete everything under chaos.
    monitor.set_phase(Phase::DeleteChaos);
    let d0 = Instant::now();
    let restarter = Restarter::start(
        spec.clone(),
        op,
        Schedule {
            // The first restart lands in the middle of the detaches.
            first: 1.5,
            every: p.restart_every,
            term: p.term_share,
        },
        Rng::new(rng.next_u64()),
        restarts.clone(),
        t0,
    );
    let faults = Faults::start(
        s.control.clone(),
        p.burst_every,
        Rng::new(rng.next_u64()),
        labels.clone(),
    )
    .await;
    let dup = &s.fixture.duplicate;
    delete(&s.client, Kind::Batch.api_resource(), s.ns(dup), &dup.name).await;
    for t in &s.fixture.targets {
        delete(&s.client, t.kind.api_resource(), s.ns(t), &t.name).await;
    }
    // The harness's own `prod-workspace` (no targets) goes too.
    let workspaces = s.list_workspaces().await.expect("workspaces");
    for ws in &workspaces {
        delete(
            &s.client,
            ApiResource::erase::<MLWorkspace>(&()),
            &ws.namespace().unwrap_or_default(),
            &ws.name_any(),
        )
        .await;
    }
    figure(format!(
        "deleted {} targets and {} MLWorkspaces in {:.1}s",
        n + 1,
        workspaces.len(),
        d0.elapsed().as_secs_f64()
    ));
    // Under chaos until everything is gone or the phase ends.
    let gone_under_chaos = wait_gone(&s, p.delete_chaos).await.ok();
    match gone_under_chaos {
        Some(_) => figure(format!(
            "everything deleted under chaos {:.1}s after the deletes",
            d0.elapsed().as_secs_f64()
        )),
        None => figure(format!(
            "not everything deleted within the {:?} chaos phase",
            p.delete_chaos
        )),
    }
    let events_delete_chaos = warning_snapshot(&s).await;
    faults.stop(&s.control).await;
    let mut op = restarter.stop().await;
    monitor.set_phase(Phase::DeleteQuiet);
    let gone = wait_gone(&s, p.delete_bound).await;
    match &gone {
        Ok(_) if gone_under_chaos.is_some() => {}
        Ok(d) => figure(format!(
            "everything deleted {:.1}s after the faults stopped (bound {:?}; {:.1}s after the deletes)",
            d.as_secs_f64(),
            p.delete_bound,
            d0.elapsed().as_secs_f64()
        )),
        Err(_) => figure(format!(
            "NOT deleted {:?} after the faults stopped",
            p.delete_bound
        )),
    }
    let events_end = warning_snapshot(&s).await;
    op.kill();
    let log = {
        let mut l = monitor.log.lock().await;
        l.sync(&s.control).await.expect("request log");
        std::mem::take(&mut l.entries)
    };
    let recorded = std::mem::take(&mut *monitor.recorded.lock().await);
    let sample_errors = monitor
        .sample_errors
        .load(std::sync::atomic::Ordering::Relaxed);
    monitor.stop().await;

    let operator_logs = lock(&restarts).logs.clone();
    let restarts_at = lock(&restarts).at.clone();
    verdict::after_deletion(
        &mut report,
        &s,
        &verdict::Evidence {
            log: &log,
            recorded: &recorded,
            gone: &gone,
            foreign_before: &foreign_before,
            resources_before: &resources_before,
            operator_logs: &operator_logs,
            restarts_at: &restarts_at,
            statuses: &statuses,
            start,
        },
    )
    .await;

    // Figures.
    arm_figures(&log, &labels);
    figures::restart_figures(&lock(&restarts));
    figure(format!(
        "mutations: {} targets on the rotated Secret, {} sshPort changes (22 -> {NEW_SSH_PORT}), {} computes removed behind the operator's back ({}), 1 duplicate claim, 1 foreign compute",
        s.fixture.rotated.len(),
        s.fixture.port_changes.len(),
        drifted.len(),
        drifted.join(" ")
    ));
    flap_figures(&s, &recorded, &drifted);
    for (label, before, after) in [
        ("converge+chaos", &BTreeMap::new(), &events_chaos),
        ("converge quiet", &events_chaos, &events_converged),
        ("delete+chaos", &events_converged, &events_delete_chaos),
        ("delete quiet", &events_delete_chaos, &events_end),
    ] {
        figure(format!(
            "Warning events ({label}): {}",
            by_reason(before, after)
        ));
    }
    figures::warning_times(steps::events(&s).await, start);
    figure(format!(
        "monitor: {} compute samples, {sample_errors} failed samples or log fetches",
        recorded.samples
    ));
    figure(format!("wall time {:.0}s", wall.elapsed().as_secs_f64()));
    report.summary();
    let violated = report.violated();
    assert!(violated.is_empty(), "invariants violated: {violated:#?}");
}
