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
mod fixture;
mod monitor;
mod report;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use azureml_attach::api::MLWorkspace;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::events::v1::Event;
use kube::api::{DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::discovery::ApiResource;
use kube::{Api, Client, ResourceExt};
use serde_json::{Value, json};
use testenv::TestEnv;

use checks::{Scenario, calls_on, leaked, non_detach_deletes};
use disrupt::{
    FaultLabels, Faults, OperatorSpec, Restarter, Restarts, Rng, Schedule, first_panic, lock,
};
use fixture::{
    AZURE_WORKSPACES, Fixture, Kind, NAMESPACES, NEW_SSH_PORT, ROTATED_NS, ROTATED_VM_PASSWORD,
    secret_values,
};
use harness::{OPERATOR_NS, OPERATOR_SA, World};
use monitor::{Monitor, Phase, shared_resources};
use report::{Report, figure};

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
        "start: {n} targets ({} kinds x {NAMESPACES} namespaces x {} workspaces), seed {seed} (CHAOS_SEED={seed} replays the schedule), resync {}, restarts every {:.0}-{:.0}s ({:.0}% SIGTERM), converge phase {:?} (outage at {:?} for {:?}, mutations at {:?}), delete phase {:?}",
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

    // After deletion.
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
        match (&gone, report::summarize(&left)) {
            (Ok(_), None) => None,
            (Ok(_), Some(l)) => Some(l),
            (Err(g), l) => Some(format!("{g}; {}", l.unwrap_or_default())),
        },
    );

    let foreign_calls: Vec<String> = calls_on(&log, foreign.workspace, &foreign.name)
        .filter(|e| e.method != "GET")
        .map(|e| format!("{} {} {}", e.method, e.path, e.status))
        .collect();
    let mut foreign_bad = foreign_calls;
    match foreign_body(&s).await {
        None => foreign_bad.push("the foreign compute is gone".into()),
        Some(b) if b != foreign_before => {
            foreign_bad.push(format!("the foreign compute changed: {b}"));
        }
        Some(_) => {}
    }
    foreign_bad.extend(
        recorded
            .sampled_violations
            .iter()
            .filter(|v| v.contains("foreign"))
            .cloned(),
    );
    report.invariant_list(
        "the foreign compute: 0 PUT/PATCH/DELETE on its name, same body throughout (sampled) and at the end",
        &foreign_bad,
    );
    let dup_calls: Vec<String> = calls_on(&log, dup.azure_workspace(), &dup.name)
        .map(|e| format!("{} {} {}", e.method, e.path, e.status))
        .collect();
    report.invariant_list(
        "the duplicate claim causes no Azure call (0 requests on its compute)",
        &dup_calls,
    );
    report.invariant_list(
        "0 DELETEs without underlyingResourceAction=Detach",
        &non_detach_deletes(&log),
    );
    let state = s.control.state().await.expect("state");
    let resources_after = s.control.resources().await.expect("resources");
    let mut resources_bad: Vec<String> = state
        .deleted_resources
        .iter()
        .map(|d| format!("deleted {} by {}", d.id, d.compute))
        .collect();
    if resources_after != resources_before {
        resources_bad.push(format!(
            "world resources {} before, {} after",
            resources_before.len(),
            resources_after.len()
        ));
    }
    report.invariant_list(
        "0 underlying resources deleted (resources unchanged)",
        &resources_bad,
    );
    let sampled_shared: Vec<String> = recorded
        .sampled_violations
        .iter()
        .filter(|v| !v.contains("foreign"))
        .cloned()
        .collect();
    report.invariant_list(
        &format!(
            "never two computes on one resource (sampled every 2s, {} samples)",
            recorded.samples
        ),
        &sampled_shared,
    );
    let logs = lock(&restarts).logs.clone();
    report.invariant(
        &format!("0 panics in operator logs ({} processes)", logs.len()),
        first_panic(&logs),
    );

    // Secret values: operator logs, events, status, request URLs.
    let secrets = secret_values();
    let mut leaks = Vec::new();
    let mut log_bytes = 0;
    for path in &logs {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        log_bytes += text.len();
        for i in leaked(&text, &secrets) {
            leaks.push(format!("secret #{i} in {}", path.display()));
        }
    }
    let events_text = events_text(&s).await;
    for i in leaked(&events_text, &secrets) {
        leaks.push(format!("secret #{i} in events"));
    }
    for i in leaked(&statuses, &secrets) {
        leaks.push(format!("secret #{i} in status"));
    }
    let urls: String = log
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
    let throttled_by_emulator: Vec<&azureml_emulator::state::LogEntry> = log
        .iter()
        .filter(|e| e.status == 429 && e.fault.is_none())
        .collect();
    let injected_429 = log
        .iter()
        .filter(|e| e.status == 429 && e.fault.is_some())
        .count();
    let restart_at = lock(&restarts).at.clone();
    let self_429: Vec<String> = throttled_by_emulator
        .iter()
        .map(|e| {
            let at = e
                .timestamp
                .parse::<k8s_openapi::jiff::Timestamp>()
                .map_or(f64::NAN, |t| t.duration_since(start).as_secs_f64());
            let after = restart_at
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

    // Figures.
    figure(format!(
        "429s: {injected_429} injected by fault rules, {} from the emulator's own throttle",
        throttled_by_emulator.len()
    ));
    arm_figures(&log, &labels);
    {
        let r = lock(&restarts);
        let max_term = r.term_seconds.iter().copied().fold(0.0, f64::max);
        figure(format!(
            "restarts: {} ({} SIGKILL, {} SIGTERM: exits {:?} after at most {max_term:.1}s, {} not within the {:?} grace period), {} operator processes",
            r.kills + r.terms,
            r.kills,
            r.terms,
            r.term_exits,
            r.term_timeouts,
            disrupt::GRACE,
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
    // One note per Warning reason, and when they were emitted (seconds since the start).
    let mut examples: BTreeMap<String, (String, f64, f64)> = BTreeMap::new();
    for e in events(&s).await {
        if e.type_.as_deref() == Some("Warning") {
            let since = |t: k8s_openapi::jiff::Timestamp| t.duration_since(start).as_secs_f64();
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
    figure(format!(
        "monitor: {} compute samples, {sample_errors} failed samples or log fetches",
        recorded.samples
    ));
    figure(format!("wall time {:.0}s", wall.elapsed().as_secs_f64()));
    report.summary();
    let violated = report.violated();
    assert!(violated.is_empty(), "invariants violated: {violated:#?}");
}

/// Server-side apply (field manager `chaos`), retried through a restarting API server.
async fn apply(client: &Client, v: &Value) {
    let kind = v["kind"].as_str().unwrap_or_default();
    let ar = match kind {
        "Secret" => ApiResource::erase::<Secret>(&()),
        "MLWorkspace" => ApiResource::erase::<MLWorkspace>(&()),
        k => Kind::ALL
            .into_iter()
            .find(|x| x.crd_kind() == k)
            .expect("a target kind")
            .api_resource(),
    };
    let ns = v["metadata"]["namespace"].as_str().unwrap_or_default();
    let name = v["metadata"]["name"].as_str().unwrap_or_default();
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &ar);
    let pp = PatchParams::apply("chaos").force();
    let mut tries = 0;
    while let Err(e) = api.patch(name, &pp, &Patch::Apply(v)).await {
        tries += 1;
        assert!(tries < 20, "apply {kind} {ns}/{name}: {e}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn delete(client: &Client, ar: ApiResource, ns: &str, name: &str) {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &ar);
    let mut tries = 0;
    loop {
        match api.delete(name, &DeleteParams::default()).await {
            Ok(_) => return,
            Err(kube::Error::Api(s)) if s.is_not_found() => return,
            Err(e) => {
                tries += 1;
                assert!(tries < 20, "delete {ns}/{name}: {e}");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

async fn foreign_body(s: &Scenario) -> Option<Value> {
    let f = &s.fixture.foreign;
    s.control
        .computes()
        .await
        .ok()?
        .into_iter()
        .find(|c| c.workspace.eq_ignore_ascii_case(f.workspace) && c.name == f.name)
        .map(|c| c.body)
}

/// Mid-way changes; returns the request-log position after the Secret rotation and the
/// computes removed behind the operator's back.
async fn mutate(s: &Scenario, monitor: &Monitor) -> (u64, Vec<String>) {
    let f = &s.fixture;
    // Rotation: the VMs accept the new password first, then the Secret carries it.
    for &i in &f.rotated {
        s.control
            .put_resource(&f.targets[i].world_resource(ROTATED_VM_PASSWORD))
            .await
            .expect("rotate a VM's password");
    }
    apply(
        &s.client,
        &json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "vm-ssh", "namespace": s.namespaces[ROTATED_NS],
                         "labels": {"attach.azureml.io/credential": "true"}},
            "stringData": {"username": "azureuser", "password": ROTATED_VM_PASSWORD},
        }),
    )
    .await;
    let rotation_seq = {
        let mut log = monitor.log.lock().await;
        log.sync(&s.control).await.expect("request log");
        log.last_seq()
    };
    for &i in &f.port_changes {
        let mut t = f.targets[i].clone();
        t.ssh_port = NEW_SSH_PORT;
        apply(&s.client, &t.manifest(s.ns(&t))).await;
    }
    let computes = s.control.computes().await.expect("computes");
    let mut drifted = Vec::new();
    for &i in &f.drift {
        let t = &f.targets[i];
        if computes
            .iter()
            .any(|c| c.workspace.eq_ignore_ascii_case(t.azure_workspace()) && c.name == t.name)
        {
            s.control
                .delete_compute(t.azure_workspace(), &t.name)
                .await
                .expect("remove a compute behind the operator's back");
            drifted.push(t.name.clone());
        }
    }
    apply(&s.client, &f.duplicate.manifest(s.ns(&f.duplicate))).await;
    figure(format!(
        "mutations applied: Secret rotated ({} targets), {} sshPort changes, {} computes removed, duplicate claim {}/{} on the resource of {}",
        f.rotated.len(),
        f.port_changes.len(),
        drifted.len(),
        s.ns(&f.duplicate),
        f.duplicate.name,
        s.key(&f.targets[f.dup_of])
    ));
    (rotation_seq, drifted)
}

async fn wait_converged(
    s: &Scenario,
    monitor: &Monitor,
    rotation_seq: u64,
    bound: Duration,
) -> Result<Duration, Vec<String>> {
    let start = Instant::now();
    let mut said = Instant::now();
    loop {
        let bad = {
            let mut log = monitor.log.lock().await;
            let _ = log.sync(&s.control).await;
            s.unconverged(&log, true, Some(rotation_seq)).await
        };
        if bad.is_empty() {
            return Ok(start.elapsed());
        }
        if start.elapsed() > bound {
            return Err(bad);
        }
        if said.elapsed() > Duration::from_secs(15) {
            eprintln!(
                "chaos: {:.0}s after the faults: {} not converged, e.g. {}",
                start.elapsed().as_secs_f64(),
                bad.len(),
                bad.iter().take(3).cloned().collect::<Vec<_>>().join("; ")
            );
            said = Instant::now();
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn wait_gone(s: &Scenario, bound: Duration) -> Result<Duration, String> {
    let start = Instant::now();
    loop {
        let (t, w) = (s.list_targets().await, s.list_workspaces().await);
        let f = &s.fixture.foreign;
        let computes = s.control.computes().await.map(|c| {
            c.into_iter()
                .filter(|c| !(c.workspace.eq_ignore_ascii_case(f.workspace) && c.name == f.name))
                .count()
        });
        match (&t, &w, &computes) {
            (Ok(t), Ok(w), Ok(0)) if t.is_empty() && w.is_empty() => return Ok(start.elapsed()),
            _ => {}
        }
        if start.elapsed() > bound {
            return Err(format!(
                "after {bound:?}: {:?} targets, {:?} MLWorkspaces, {:?} computes",
                t.map(|v| v.len()),
                w.map(|v| v.len()),
                computes
            ));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Every status (targets and MLWorkspaces) as text.
async fn status_text(s: &Scenario) -> String {
    let mut all = s.list_targets().await.expect("targets");
    all.extend(s.list_workspaces().await.expect("workspaces"));
    all.iter().map(|o| o.data["status"].to_string()).collect()
}

async fn events(s: &Scenario) -> Vec<Event> {
    let mut all = Vec::new();
    for ns in &s.namespaces {
        let api: Api<Event> = Api::namespaced(s.client.clone(), ns);
        if let Ok(l) = api.list(&ListParams::default()).await {
            all.extend(l.items);
        }
    }
    all
}

async fn events_text(s: &Scenario) -> String {
    serde_json::to_string(&events(s).await).unwrap_or_default()
}

/// Warning events: uid → (reason, count so far).
async fn warning_snapshot(s: &Scenario) -> BTreeMap<String, (String, i64)> {
    events(s)
        .await
        .into_iter()
        .filter(|e| e.type_.as_deref() == Some("Warning"))
        .map(|e| {
            let count = e
                .series
                .as_ref()
                .map(|x| i64::from(x.count))
                .or(e.deprecated_count.map(i64::from))
                .unwrap_or(1);
            (
                e.uid().unwrap_or_default(),
                (e.reason.clone().unwrap_or_default(), count),
            )
        })
        .collect()
}

fn by_reason(
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
fn arm_figures(log: &[azureml_emulator::state::LogEntry], labels: &FaultLabels) {
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

fn flap_figures(s: &Scenario, recorded: &monitor::Recorded, drifted: &[String]) {
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
