//! The operator waits out an API-server outage: it keeps running (live, not ready), a process
//! started during the outage waits instead of exiting, and both resume without a restart.
//! Runs on a private control plane, since it stops that control plane's kube-apiserver.

use std::time::{Duration, Instant};

use azureml_attach::api::RemoteVmTarget;
use testenv::TestEnv;

use crate::harness::*;

const T: Duration = Duration::from_secs(90);

async fn status(http: &reqwest::Client, addr: &str, path: &str) -> u16 {
    http.get(format!("http://{addr}{path}"))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

/// Polls `path` until it answers `code`, for at most `within`.
async fn wait_status(http: &reqwest::Client, addr: &str, path: &str, code: u16, within: Duration) {
    let start = Instant::now();
    let mut last = 0;
    while start.elapsed() < within {
        last = status(http, addr, path).await;
        if last == code {
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("{path}: expected {code} within {within:?}, last {last}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_waits_out_a_30s_apiserver_outage_and_resumes_without_a_restart() {
    azureml_attach::azure::install_crypto_provider();
    let env: &'static TestEnv =
        Box::leak(Box::new(TestEnv::start().expect("a private control plane")));
    let w = World::on_private(env, "e2e-outage").await;
    let json = [("LOG_FORMAT", "json")];
    let mut first = Operator::start(&w, &[&w.ns], &json, "3s").await;
    // Made now: minting a token needs the API server.
    let kubeconfig = env
        .service_account_kubeconfig(OPERATOR_NS, OPERATOR_SA)
        .await;
    let http = reqwest::Client::new();
    let addr = first.admin_addr().await;
    w.apply(&vm_yaml("before-outage", VM1, 22)).await;
    let api = w.api::<RemoteVmTarget>();
    wait_reason(&api, "before-outage", "Attached", T, &first).await;
    wait_status(&http, &addr, "/readyz", 200, T).await;

    let stopped = Instant::now();
    env.stop_apiserver();
    // Not ready, still live, still running.
    wait_status(&http, &addr, "/readyz", 503, Duration::from_secs(20)).await;
    assert_eq!(status(&http, &addr, "/healthz").await, 200);
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert!(
        first.running(),
        "exited during the outage:\n{}",
        tail(&first.logs())
    );
    assert_eq!(status(&http, &addr, "/healthz").await, 200);

    // A restart in the middle of the outage (a rolling update, a node drain): the new process
    // waits for the API server instead of exiting into CrashLoopBackOff.
    first.kill();
    let mut second = Operator::start_with(&w, &kubeconfig, &[&w.ns], &json, "3s");
    let addr2 = second.admin_addr().await;
    wait_status(&http, &addr2, "/healthz", 200, Duration::from_secs(10)).await;
    assert_eq!(status(&http, &addr2, "/readyz").await, 503);
    while stopped.elapsed() < Duration::from_secs(30) {
        assert!(
            second.running(),
            "exited during the outage:\n{}",
            tail(&second.logs())
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(second.running());

    env.start_apiserver().await;
    let back = Instant::now();
    wait_status(&http, &addr2, "/readyz", 200, T).await;
    let ready_after = back.elapsed();
    w.apply(&vm_yaml("after-outage", VM2, 22)).await;
    wait_reason(&api, "after-outage", "Attached", T, &second).await;
    wait_reason(&api, "before-outage", "Attached", T, &second).await;
    eprintln!(
        "MEASURE outage: kube-apiserver down {:.0?}; /readyz 200 {ready_after:.1?} after it answered; a new target Ready {:.1?} after",
        back - stopped,
        back.elapsed()
    );
    assert!(second.running());
    let logs = second.logs();
    assert!(!logs.contains("panicked"), "{}", tail(&logs));
}
