//! Control API, fault rules and throttling.

mod common;

use std::time::{Duration, Instant};

use azureml_emulator::config::{Bucket, ThrottlingPatch};
use azureml_emulator::{EmulatorConfig, FaultSpec, SettingsPatch, WorldResource};
use common::*;
use reqwest::{Method, StatusCode};
use serde_json::json;

#[tokio::test]
async fn default_world_state() {
    let e = env().await;
    let s = e.control.state().await.unwrap();
    assert!(s.computes.is_empty());
    let ids: Vec<&str> = s.resources.iter().map(|r| r.id.as_str()).collect();
    for id in [VM1, VM2, HDI, BATCH, DBW, ADLA] {
        assert!(ids.contains(&id), "missing {id}");
    }
    assert_eq!(s.resources.len(), 16);
    assert!(s.deleted_resources.is_empty());
    assert!(s.config.accept_batch);
    let vm2 = s.resources.iter().find(|r| r.id == VM2).unwrap();
    assert_eq!(vm2.address.as_deref(), Some("20.61.0.11"));
    // No secrets in the control view.
    let text = serde_json::to_string(&s).unwrap();
    assert!(!text.contains("Passw0rd") && !text.contains("dapi-"));
    let cfg = e.control.config().await.unwrap();
    assert_eq!(cfg.provisioning_delay_ms, 50);
}

#[tokio::test]
async fn request_log_counts_since_and_clear() {
    let e = env().await;
    e.get(&ws_path()).await;
    e.get(&compute_path("nothing")).await;
    e.get(&compute_path("nothing")).await;
    let log = e.control.requests(None).await.unwrap();
    assert_eq!(log.counts.get("Compute_Get 404").copied(), Some(2));
    assert_eq!(log.counts.get("Workspaces_Get 200").copied(), Some(1));
    assert_eq!(log.total, 4); // + the token request
    let last = log.entries.last().unwrap();
    assert_eq!(last.method, "GET");
    assert_eq!(last.operation, "Compute_Get");
    assert!(last.query.as_deref().unwrap().contains("api-version"));
    let since = e.control.requests(Some(last.seq - 1)).await.unwrap();
    assert_eq!(since.entries.len(), 1);
    e.control.clear_requests().await.unwrap();
    let log = e.control.requests(None).await.unwrap();
    assert_eq!((log.total, log.entries.len()), (0, 0));
    // Control calls are not logged.
    e.control.state().await.unwrap();
    assert_eq!(e.control.requests(None).await.unwrap().total, 0);
}

#[tokio::test]
async fn resources_and_computes_at_run_time() {
    let e = env().await;
    let id = VM1.replace("dsvm-1", "dsvm-9");
    e.control
        .put_resource(&WorldResource {
            id: id.clone(),
            address: Some("20.61.0.99".into()),
            username: Some("ops".into()),
            password: Some("S3cret!".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let r = e
        .put(
            &compute_path("vm-nine"),
            &json!({"properties":{"computeType":"VirtualMachine","resourceId":id,
        "properties":{"administratorAccount":{"username":"ops","password":"S3cret!"}}}}),
        )
        .await;
    let op = e.wait_op(r.header("azure-asyncoperation").unwrap()).await;
    assert_eq!(op.body["status"], "Succeeded");
    e.control.delete_resource(&id).await.unwrap();
    assert!(e.control.delete_resource(&id).await.is_err());
    // Bad resource id.
    assert!(
        e.control
            .put_resource(&WorldResource {
                id: "nope".into(),
                ..Default::default()
            })
            .await
            .is_err()
    );

    // A pre-existing compute (attached outside Kubernetes) is Succeeded at once.
    e.control
        .put_compute("prod-workspace", "outside", &vm_body(VM2, "whatever"))
        .await
        .unwrap();
    let g = e.get(&compute_path("outside")).await;
    assert_eq!(g.body["properties"]["provisioningState"], "Succeeded");
    let views = e.control.computes().await.unwrap();
    assert_eq!(views.len(), 2);
    // Removed as if in the portal: no underlying deletion recorded.
    e.control
        .delete_compute("prod-workspace", "outside")
        .await
        .unwrap();
    assert_eq!(
        e.get(&compute_path("outside")).await.status,
        StatusCode::NOT_FOUND
    );
    assert!(
        e.control
            .state()
            .await
            .unwrap()
            .deleted_resources
            .is_empty()
    );
    assert!(
        e.control
            .delete_compute("prod-workspace", "outside")
            .await
            .is_err()
    );
    // Invalid seed bodies are refused.
    assert!(
        e.control
            .put_compute("prod-workspace", "bad", &json!({"properties":{}}))
            .await
            .is_err()
    );
    assert!(
        e.control
            .put_compute(
                "no-such-ws",
                "bad",
                &json!({"properties":{"computeType":"AmlCompute"}})
            )
            .await
            .is_err()
    );

    // Reset returns to the initial world.
    e.control.reset().await.unwrap();
    let s = e.control.state().await.unwrap();
    assert!(s.computes.is_empty());
    assert_eq!(s.resources.len(), 16);
}

#[tokio::test]
async fn config_seeds_computes_and_reset_keeps_them() {
    let mut cfg = EmulatorConfig::fast();
    cfg.computes.push(azureml_emulator::config::SeedCompute {
        workspace: "prod-workspace".into(),
        name: "seeded".into(),
        body: json!({"properties":{"computeType":"AmlCompute"}}),
    });
    let e = env_with(cfg).await;
    assert_eq!(e.get(&compute_path("seeded")).await.status, StatusCode::OK);
    e.control.reset().await.unwrap();
    assert_eq!(e.get(&compute_path("seeded")).await.status, StatusCode::OK);
}

#[tokio::test]
async fn fault_status_with_retry_after_and_count() {
    let e = env().await;
    let id = e
        .control
        .add_fault(&FaultSpec {
            method: Some("GET".into()),
            path_pattern: "/computes/flaky$".into(),
            status: Some(503),
            retry_after: Some(2),
            count: Some(2),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(id > 0);
    assert_eq!(e.control.faults().await.unwrap().len(), 1);
    for _ in 0..2 {
        let r = e.get(&compute_path("flaky")).await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable")
        );
        assert_eq!(r.header("retry-after"), Some("2"));
    }
    assert_eq!(
        e.get(&compute_path("flaky")).await.status,
        StatusCode::NOT_FOUND
    );
    assert!(e.control.faults().await.unwrap().is_empty());
    let log = e.control.requests(None).await.unwrap();
    assert_eq!(log.counts.get("Compute_Get 503").copied(), Some(2));
    // The log names the rule that answered; the emulator's own answer carries none.
    let faults: Vec<(u16, Option<u64>)> = log
        .entries
        .iter()
        .filter(|x| x.operation == "Compute_Get")
        .map(|x| (x.status, x.fault))
        .collect();
    assert_eq!(faults, [(503, Some(id)), (503, Some(id)), (404, None)]);
    // Invalid rules are refused.
    let bad = FaultSpec {
        path_pattern: "(".into(),
        ..Default::default()
    };
    assert!(e.control.add_fault(&bad).await.is_err());
}

#[tokio::test]
async fn fault_drop_latency_probability() {
    let e = env().await;
    let id = e
        .control
        .add_fault(&FaultSpec {
            path_pattern: "/workspaces/prod-workspace$".into(),
            drop: true,
            ..Default::default()
        })
        .await
        .unwrap();
    let err = e
        .http
        .get(e.url(&with_version(&ws_path())))
        .bearer_auth(&e.token)
        .send()
        .await;
    assert!(
        err.is_err(),
        "dropped HTTP/2 stream must be an error: {err:?}"
    );
    let cert = reqwest::Certificate::from_pem(e.emu.ca_pem().as_bytes()).unwrap();
    let h1 = reqwest::Client::builder()
        .tls_certs_only([cert])
        .http1_only()
        .build()
        .unwrap();
    let err = h1
        .get(e.url(&with_version(&ws_path())))
        .bearer_auth(&e.token)
        .send()
        .await;
    assert!(
        err.is_err(),
        "dropped HTTP/1.1 connection must be an error: {err:?}"
    );
    e.control.delete_fault(id).await.unwrap();
    assert!(e.control.delete_fault(id).await.is_err());
    assert_eq!(e.get(&ws_path()).await.status, StatusCode::OK);
    let log = e.control.requests(None).await.unwrap();
    assert_eq!(log.counts.get("Workspaces_Get 0").copied(), Some(2));

    e.control
        .add_fault(&FaultSpec {
            path_pattern: "/workspaces/".into(),
            latency_ms: Some(300),
            ..Default::default()
        })
        .await
        .unwrap();
    let t0 = Instant::now();
    assert_eq!(e.get(&ws_path()).await.status, StatusCode::OK);
    assert!(t0.elapsed() >= Duration::from_millis(300));
    e.control.clear_faults().await.unwrap();

    e.control
        .add_fault(&FaultSpec {
            path_pattern: ".".into(),
            status: Some(500),
            probability: Some(0.0),
            ..Default::default()
        })
        .await
        .unwrap();
    for _ in 0..5 {
        assert_eq!(e.get(&ws_path()).await.status, StatusCode::OK);
    }
    // Faults also apply to the token endpoint.
    e.control
        .add_fault(&FaultSpec {
            path_pattern: "/oauth2/".into(),
            status: Some(500),
            count: Some(1),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(e.control.default_token().await.is_err());
    assert!(e.control.default_token().await.is_ok());
}

#[tokio::test]
async fn throttling_like_arm() {
    let mut cfg = EmulatorConfig::fast();
    cfg.settings.throttling.reads = Bucket {
        burst: 3,
        per_second: 0.5,
    };
    let e = env_with(cfg).await;
    let remaining: Vec<String> = {
        let mut v = Vec::new();
        for _ in 0..3 {
            let r = e.get(&ws_path()).await;
            assert_eq!(r.status, StatusCode::OK);
            v.push(
                r.header("x-ms-ratelimit-remaining-subscription-reads")
                    .unwrap()
                    .to_owned(),
            );
        }
        v
    };
    assert_eq!(remaining, ["2", "1", "0"]);
    let r = e.get(&ws_path()).await;
    assert_eq!(
        (r.status, r.code()),
        (
            StatusCode::TOO_MANY_REQUESTS,
            "SubscriptionRequestsThrottled"
        )
    );
    assert!(
        matches!(r.header("retry-after"), Some("1" | "2")),
        "{:?}",
        r.header("retry-after")
    );
    // A throttled answer is the emulator's own, not a fault rule's.
    let log = e.control.requests(None).await.unwrap();
    let throttled = log.entries.iter().find(|x| x.status == 429).unwrap();
    assert_eq!(throttled.fault, None);
    // Writes have their own bucket.
    let w = e
        .put(
            &compute_path("aml-one"),
            &json!({"properties":{"computeType":"AmlCompute"}}),
        )
        .await;
    assert_eq!(w.status, StatusCode::CREATED);
    assert_eq!(
        w.header("x-ms-ratelimit-remaining-subscription-writes"),
        Some("199")
    );
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(e.get(&ws_path()).await.status, StatusCode::OK);
    // Off.
    e.control
        .update_config(&SettingsPatch {
            throttling: Some(ThrottlingPatch {
                enabled: Some(false),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    for _ in 0..10 {
        assert_eq!(e.get(&ws_path()).await.status, StatusCode::OK);
    }
    let log = e.control.requests(None).await.unwrap();
    assert_eq!(log.counts.get("Workspaces_Get 429").copied(), Some(1));
}

/// Like ARM (FINDINGS §7-§8: RP answers, 404s included, carry the counter), every answer to an
/// authenticated ARM request reports the class's remaining budget: successes, client errors
/// and the 429 itself. The operator's throttle relies on it to learn ARM's count quickly.
#[tokio::test]
async fn every_arm_answer_reports_the_remaining_budget() {
    let mut cfg = EmulatorConfig::fast();
    cfg.settings.throttling.deletes = Bucket {
        burst: 2,
        per_second: 0.01,
    };
    let e = env_with(cfg).await;
    let reads = "x-ms-ratelimit-remaining-subscription-reads";
    let writes = "x-ms-ratelimit-remaining-subscription-writes";
    let deletes = "x-ms-ratelimit-remaining-subscription-deletes";
    let cases = [
        // 404: no such compute.
        (
            Method::GET,
            with_version(&compute_path("nope")),
            None,
            reads,
        ),
        // 400: no api-version.
        (Method::GET, ws_path(), None, reads),
        // 400: invalid body.
        (
            Method::PUT,
            with_version(&compute_path("bad-body")),
            Some(json!({"properties": {"resourceId": "/x"}})),
            writes,
        ),
        // 404 from POST listKeys (a write).
        (
            Method::POST,
            with_version(&format!("{}/listKeys", compute_path("nope"))),
            None,
            writes,
        ),
        // 405.
        (Method::DELETE, with_version(&ws_path()), None, deletes),
    ];
    for (method, path, body, header) in cases {
        let r = e.arm(method.clone(), &path, body.as_ref()).await;
        assert!(r.status.is_client_error(), "{method} {path}: {}", r.status);
        let remaining = r.header(header).unwrap_or_default();
        assert!(
            remaining.parse::<u32>().is_ok(),
            "{method} {path} ({}): {header} = {remaining:?}",
            r.status
        );
    }
    // Two deletes spent the bucket (the 405 above and this 204); the 429 reports 0.
    let path = with_version(&format!(
        "{}?underlyingResourceAction=Detach",
        compute_path("nope")
    ));
    let r = e.arm(Method::DELETE, &path, None).await;
    assert_eq!(r.header(deletes), Some("0"), "{}", r.status);
    let r = e.arm(Method::DELETE, &path, None).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.header(deletes), Some("0"));
    assert!(r.header("retry-after").is_some());
}

#[tokio::test]
async fn unknown_control_paths_and_bad_bodies() {
    let e = env().await;
    let r = send(&e.http, Method::GET, &e.url("/_emulator/nope"), None, None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = into_resp(
        e.http
            .put(e.url("/_emulator/config"))
            .body("{")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = into_resp(
        e.http
            .put(e.url("/_emulator/config"))
            .json(&json!({"bogus": 1}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = into_resp(
        e.http
            .get(e.url("/_emulator/requests?since=x"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = into_resp(e.http.get(e.url("/_emulator/ca.pem")).send().await.unwrap()).await;
    assert!(r.text.starts_with("-----BEGIN CERTIFICATE-----"));
    assert_eq!(r.text, e.emu.ca_pem());
    assert_eq!(
        std::fs::read_to_string(e.emu.ca_file()).unwrap(),
        e.emu.ca_pem()
    );
}
