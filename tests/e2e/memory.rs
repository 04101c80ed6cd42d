//! Rule 10: memory stays flat as the cluster grows. Secrets are watched by metadata only, so
//! Secret data the operator has no business with never reaches its memory, and unrelated Secret
//! churn costs no Azure call.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use azureml_attach::api::RemoteVmTarget;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{ObjectMeta, PostParams};

use crate::harness::*;

/// Unrelated Secrets created while the operator runs, and the size of each one's data.
const SECRETS: usize = 120;
const SECRET_BYTES: usize = 256 * 1024;

/// Resident set size of a process, from /proc (Linux).
fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS");
    kib * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule10_unrelated_secrets_do_not_grow_memory_or_cause_azure_calls() {
    let w = World::new("e2e-rule10").await;
    let op = Operator::start(&w, &[&w.ns], &[], "30s").await;
    w.apply(&vm_yaml("gpu-vm", VM1, 22)).await;
    let targets = w.api::<RemoteVmTarget>();
    wait_reason(&targets, "gpu-vm", "Attached", Duration::from_secs(60), &op).await;
    // Let the first resync's LIST and the connection setup settle before the baseline.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let pid = op.pid().expect("operator runs");
    let before = rss_bytes(pid);
    let arm_before = w.arm_requests().await.len();

    // 120 Secrets × 256 KiB = 30 MiB of Secret data in the watched namespace.
    let secrets = w.api::<Secret>();
    let payload = ByteString(vec![b'x'; SECRET_BYTES]);
    let started = Instant::now();
    futures::stream::iter(0..SECRETS)
        .map(|i| {
            let secrets = secrets.clone();
            let data = BTreeMap::from([("blob".to_owned(), payload.clone())]);
            async move {
                let s = Secret {
                    metadata: ObjectMeta {
                        name: Some(format!("unrelated-{i}")),
                        ..Default::default()
                    },
                    data: Some(data),
                    ..Default::default()
                };
                secrets.create(&PostParams::default(), &s).await.map(|_| ())
            }
        })
        .buffer_unordered(8)
        .try_collect::<Vec<()>>()
        .await
        .expect("create secrets");
    // Give the operator's watch time to see all of them (metadata events are small and fast).
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after = rss_bytes(pid);
    let arm_after = w.arm_requests().await.len();
    let total = (SECRETS * SECRET_BYTES) as u64;
    let growth = after.saturating_sub(before);
    eprintln!(
        "MEASURE rule10: {SECRETS} Secrets ({} MiB of data) created in {:.1}s; operator RSS {} MiB -> {} MiB (+{} KiB); ARM calls {}",
        total >> 20,
        started.elapsed().as_secs_f64(),
        before >> 20,
        after >> 20,
        growth >> 10,
        arm_after - arm_before
    );
    // A cache of Secret data would hold at least the 30 MiB; metadata costs a few KiB each.
    assert!(
        growth < total / 3,
        "operator RSS grew by {} KiB for {} KiB of unrelated Secret data",
        growth >> 10,
        total >> 10
    );
    assert_eq!(
        arm_after, arm_before,
        "unrelated Secrets must not cause Azure calls"
    );
    // The target is untouched.
    let (status, reason, _) = ready(&targets, "gpu-vm").await.expect("ready condition");
    assert_eq!((status.as_str(), reason.as_str()), ("True", "Attached"));
}
