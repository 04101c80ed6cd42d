//! The operator's own identity (`credential.type: Default`) can be fenced to some namespaces.

use std::time::Duration;

use azureml_attach::api::MLWorkspace;

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_credential_is_refused_outside_the_allowed_namespaces_without_azure_calls() {
    let w = World::new("e2e-defcred").await;
    let op = Operator::start(
        &w,
        &[&w.ns],
        &[("DEFAULT_CREDENTIAL_NAMESPACES", "platform-team")],
        "3s",
    )
    .await;
    // The world's own client-secret workspace reaches Azure first; only then is the log cleared.
    let api = w.api::<MLWorkspace>();
    testenv::wait_for(
        "the world's workspace to be reached",
        Duration::from_secs(60),
        async || {
            let ws = api.get_opt("prod-workspace").await.ok()??;
            ws.status?
                .conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.reason == "Reached")
                .then_some(())
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", tail(&op.logs())));
    w.control.clear_requests().await.expect("clear log");
    w.apply(&format!(
        "apiVersion: attach.azureml.io/v1alpha1\nkind: MLWorkspace\nmetadata:\n  name: shared-identity\nspec:\n  subscriptionId: {SUB}\n  resourceGroup: ml-rg\n  workspaceName: prod-workspace\n  credential:\n    type: Default\n"
    ))
    .await;
    let (reason, message) = testenv::wait_for(
        "MLWorkspace shared-identity to report its credential",
        Duration::from_secs(60),
        async || {
            let ws = api.get_opt("shared-identity").await.ok()??;
            let ready = ws
                .status?
                .conditions
                .into_iter()
                .find(|c| c.type_ == "Ready")?;
            Some((ready.reason, ready.message))
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", tail(&op.logs())));
    assert_eq!(reason, "InvalidSpec", "{message}");
    assert!(
        message.contains("--default-credential-namespaces"),
        "the message tells what to do: {message}"
    );
    // Nothing reached Azure or Entra ID for it: no token request, no ARM call.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let log = w.control.requests(None).await.expect("requests");
    let calls: Vec<_> = log
        .entries
        .iter()
        .filter(|e| !e.path.starts_with("/_emulator"))
        .map(|e| format!("{} {}", e.method, e.path))
        .collect();
    assert!(calls.is_empty(), "no Azure calls expected, got {calls:?}");
}
