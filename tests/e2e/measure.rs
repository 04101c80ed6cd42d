//! Measurements from the emulator's request log (reported by the test output, `MEASURE`).

use std::time::{Duration, Instant};

use azureml_attach::api::BatchTarget;
use azureml_emulator::{EmulatorConfig, WorldResource};

use crate::harness::*;

const TARGETS: usize = 50;
const RESYNC_SECS: u64 = 5;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule2_and_rule7_fifty_ready_targets_write_nothing_and_list_once_per_resync() {
    let mut config = EmulatorConfig::default();
    for i in 0..TARGETS {
        config.resources.push(WorldResource {
            id: format!("/subscriptions/{SUB}/resourceGroups/ml-rg/providers/Microsoft.Batch/batchAccounts/acct{i}"),
            ..WorldResource::default()
        });
    }
    let w = World::with_config("e2e-fifty", config).await;
    let op = Operator::start(&w, &[&w.ns], &[], &format!("{RESYNC_SECS}s")).await;
    let yaml: Vec<String> = (0..TARGETS)
        .map(|i| {
            format!(
                "apiVersion: attach.azureml.io/v1alpha1\nkind: BatchTarget\nmetadata:\n  name: batch-{i}x\nspec:\n  workspaceRef: {{name: prod-workspace}}\n  resourceId: /subscriptions/{SUB}/resourceGroups/ml-rg/providers/Microsoft.Batch/batchAccounts/acct{i}\n"
            )
        })
        .collect();
    w.apply(&yaml.join("---\n")).await;
    let api = w.api::<BatchTarget>();
    let start = Instant::now();
    loop {
        let list = api.list(&Default::default()).await.unwrap();
        let ready = list
            .items
            .iter()
            .filter(|t| {
                t.status
                    .as_ref()
                    .and_then(|s| s.ready())
                    .is_some_and(|c| c.status == "True")
            })
            .count();
        if ready == TARGETS {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "{ready}/{TARGETS} Ready\n{}",
            tail(&op.logs())
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    eprintln!(
        "MEASURE {TARGETS} targets Ready in {:.1}s",
        start.elapsed().as_secs_f64()
    );
    // Let the last status writes settle, then watch three resync periods.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let versions = |list: kube::core::ObjectList<BatchTarget>| {
        list.items
            .into_iter()
            .map(|t| (t.metadata.name, t.metadata.resource_version))
            .collect::<std::collections::BTreeMap<_, _>>()
    };
    let before = versions(api.list(&Default::default()).await.unwrap());
    let status_writes = || op.logs().matches("writing status").count();
    let writes_before = status_writes();
    w.control.clear_requests().await.unwrap();
    tokio::time::sleep(Duration::from_secs(3 * RESYNC_SECS)).await;
    let after = versions(api.list(&Default::default()).await.unwrap());
    let rewritten = before
        .iter()
        .filter(|(k, v)| after.get(*k) != Some(v))
        .count();
    let applies = status_writes() - writes_before;
    eprintln!(
        "MEASURE steady state, {TARGETS} Ready targets, 3 resync periods: {applies} status applies sent, {rewritten} objects changed"
    );
    // An identical apply changes no resourceVersion but still costs the API server a request.
    assert_eq!(applies, 0, "an unchanged status is not sent again");
    assert_eq!(rewritten, 0);
    let reqs = w.arm_requests().await;
    let writes = reqs.iter().filter(|e| e.method != "GET").count();
    let lists = reqs
        .iter()
        .filter(|e| e.operation.starts_with("Compute_List"))
        .count();
    let reads = reqs.iter().filter(|e| e.method == "GET").count();
    eprintln!(
        "MEASURE steady state, {TARGETS} Ready targets, 3 resync periods of {RESYNC_SECS}s: writes={writes} reads={reads} (LIST={lists})"
    );
    assert_eq!(writes, 0, "rule 2: no writes in steady state");
    assert!(lists <= 4, "rule 7: one LIST per resync, got {lists}");
    assert_eq!(reads, lists, "no per-target GETs");
}
