//! The process itself: admin endpoints, JSON logs via env fallbacks, clean SIGTERM shutdown.

use std::time::Duration;

use azureml_attach::api::RemoteVmTarget;

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_healthz_readyz_metrics_logs_json_and_stops_cleanly_on_sigterm() {
    azureml_attach::azure::install_crypto_provider();
    let w = World::new("e2e-ops").await;
    let mut op = Operator::start(&w, &[&w.ns], &[("LOG_FORMAT", "json")], "3s").await;
    // The admin address is in the first JSON log lines.
    let addr = op.admin_addr().await;
    w.apply(&vm_yaml("ops-vm", VM1, 22)).await;
    wait_reason(
        &w.api::<RemoteVmTarget>(),
        "ops-vm",
        "Attached",
        Duration::from_secs(60),
        &op,
    )
    .await;

    let http = reqwest::Client::new();
    for path in ["/healthz", "/readyz"] {
        let r = http
            .get(format!("http://{addr}{path}"))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{path}: {}", r.status());
    }
    let metrics = http
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("azureml_attach_arm_requests_total"),
        "{metrics}"
    );
    assert!(
        metrics.contains("azureml_attach_reconcile_total"),
        "{metrics}"
    );

    let status = op
        .terminate(Duration::from_secs(15))
        .expect("stopped within 15s of SIGTERM");
    assert!(
        status.success(),
        "exit status {status:?}\n{}",
        tail(&op.logs())
    );
    assert!(op.logs().contains("shutting down"), "{}", tail(&op.logs()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_election_one_replica_reconciles_and_a_standby_takes_over() {
    let w = World::new("e2e-leader").await;
    let mut first = Operator::start(
        &w,
        &[&w.ns],
        &[("LEADER_ELECT", "true"), ("POD_NAME", "replica-a")],
        "3s",
    )
    .await;
    let api = w.api::<RemoteVmTarget>();
    w.apply(&vm_yaml("leader-vm", VM1, 22)).await;
    wait_reason(
        &api,
        "leader-vm",
        "Attached",
        Duration::from_secs(60),
        &first,
    )
    .await;
    let second = Operator::start(
        &w,
        &[&w.ns],
        &[("LEADER_ELECT", "true"), ("POD_NAME", "replica-b")],
        "3s",
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        !second.logs().contains("\"leading\"") && !second.logs().contains(" leading"),
        "standby must wait"
    );
    first.kill();
    // The lease (15 s) expires, the standby takes over and reconciles new work.
    w.apply(&vm_yaml("after-failover", VM2, 22)).await;
    wait_reason(
        &api,
        "after-failover",
        "Attached",
        Duration::from_secs(60),
        &second,
    )
    .await;
    assert!(
        second.logs().contains("leading"),
        "{}",
        tail(&second.logs())
    );
}
