//! ARM operations and their error paths, over HTTPS against `spawn`.

mod common;

use azureml_emulator::{EmulatorConfig, SettingsPatch};
use common::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

#[tokio::test]
async fn workspace_get() {
    let e = env().await;
    let r = e.get(&ws_path()).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["name"], "prod-workspace");
    assert_eq!(r.body["location"], "westeurope");
    assert_eq!(
        r.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    assert!(r.header("x-ms-request-id").is_some());
    assert_eq!(
        r.header("x-ms-ratelimit-remaining-subscription-reads"),
        Some("249")
    );
}

#[tokio::test]
async fn not_found_errors_are_arm_shaped() {
    let e = env().await;
    let r = e.get(&format!("/subscriptions/{SUB}/resourceGroups/ml-rg/providers/Microsoft.MachineLearningServices/workspaces/nope-ws")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.code(), "ResourceNotFound");
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("workspaces/nope-ws")
    );

    let r = e.get(&format!("/subscriptions/{SUB}/resourceGroups/other-rg/providers/Microsoft.MachineLearningServices/workspaces/prod-workspace")).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::NOT_FOUND, "ResourceGroupNotFound")
    );

    let r = e.get("/subscriptions/99999999-0000-0000-0000-000000000000/resourceGroups/ml-rg/providers/Microsoft.MachineLearningServices/workspaces/prod-workspace").await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::NOT_FOUND, "SubscriptionNotFound")
    );

    let r = e.get("/subscriptions/not-a-guid/resourceGroups/ml-rg/providers/Microsoft.MachineLearningServices/workspaces/prod-workspace").await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::BAD_REQUEST, "InvalidSubscriptionId")
    );

    let r = e.get(&compute_path("missing")).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::NOT_FOUND, "ResourceNotFound")
    );

    let r = e.get("/no/such/path").await;
    assert_eq!((r.status, r.code()), (StatusCode::NOT_FOUND, "NotFound"));
    let r = e.get(&format!("{}/computes/a/b/c/d", ws_path())).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = e
        .arm(
            Method::POST,
            &with_version(&format!("{}/bogus", compute_path("xyz"))),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn api_version_is_required_and_checked() {
    let e = env().await;
    let r = e.arm(Method::GET, &ws_path(), None).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::BAD_REQUEST, "MissingApiVersionParameter")
    );
    let r = e
        .get(&format!("{}?api-version=2099-01-01", ws_path()))
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::BAD_REQUEST, "InvalidApiVersionParameter")
    );
    for v in [
        "2025-12-01",
        "2026-07-01",
        "2024-04-01",
        "2022-10-01-preview",
    ] {
        let r = e.get(&format!("{}?api-version={v}", ws_path())).await;
        assert_eq!(r.status, StatusCode::OK, "{v}");
    }
}

#[tokio::test]
async fn path_parameters_are_validated() {
    let e = env().await;
    // workspaceName pattern.
    let r = e.get(&format!("/subscriptions/{SUB}/resourceGroups/ml-rg/providers/Microsoft.MachineLearningServices/workspaces/-x")).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::BAD_REQUEST, "InvalidParameter")
    );
    // computeName pattern only in 2026-07-01.
    let r = e.get(&compute_path("vm-1")).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::BAD_REQUEST, "InvalidParameter")
    );
    assert_eq!(r.body["error"]["target"], "computeName");
    let r = e
        .get(&format!("{}?api-version=2025-12-01", compute_path("vm-1")))
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn attach_vm_creating_then_succeeded() {
    let mut cfg = EmulatorConfig::fast();
    cfg.settings.provisioning_delay_ms = 600;
    let e = env_with(cfg).await;
    let r = e
        .put(
            &compute_path("vm-one"),
            &vm_body(VM1, "Emulator-VM-Passw0rd"),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["properties"]["provisioningState"], "Creating");
    assert_eq!(r.body["properties"]["isAttachedCompute"], true);
    assert_eq!(
        r.body["properties"]["properties"]["administratorAccount"],
        Value::Null
    );
    assert!(!r.text.contains("Emulator-VM-Passw0rd"));
    assert!(r.header("location").is_none());
    let op = r.header("azure-asyncoperation").unwrap().to_owned();
    let prefix = format!(
        "{}/subscriptions/{SUB}/providers/Microsoft.MachineLearningServices/locations/westeurope/computeOperationsStatus/",
        e.emu.base_url()
    );
    assert!(op.starts_with(&prefix), "{op}");
    assert!(
        op.ends_with(&format!("?api-version={V}&service=new")),
        "{op}"
    );
    let created = r.body["properties"]["createdOn"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        created.len(),
        "2025-11-20T05:23:56.5455174+00:00".len(),
        "{created}"
    );

    let first = e.follow(&op).await;
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(first.body, json!({"status": "InProgress"}));
    let done = e.wait_op(&op).await;
    assert_eq!(
        done.body,
        json!({"status": "Succeeded", "percentComplete": 100.0})
    );
    assert!(done.text.contains("100.0"));

    let r = e.get(&compute_path("vm-one")).await;
    assert_eq!(r.body["properties"]["provisioningState"], "Succeeded");
    assert_eq!(r.body["properties"]["properties"]["address"], "20.61.0.10");
    assert_ne!(
        r.body["properties"]["modifiedOn"],
        r.body["properties"]["createdOn"]
    );

    // PUT over an existing compute is 201 again and goes back to Creating.
    let r = e
        .put(
            &compute_path("vm-one"),
            &vm_body(VM1, "Emulator-VM-Passw0rd"),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(r.body["properties"]["provisioningState"], "Creating");
    assert_eq!(r.body["properties"]["createdOn"], created.as_str());
}

#[tokio::test]
async fn attach_fails_for_bad_credentials_or_missing_resource() {
    let e = env().await;
    let r = e.put(&compute_path("vm-bad"), &vm_body(VM1, "wrong")).await;
    assert_eq!(r.status, StatusCode::CREATED);
    let op = e.wait_op(r.header("azure-asyncoperation").unwrap()).await;
    assert_eq!(op.body["status"], "Failed");
    assert_eq!(op.body["error"]["code"], "InvalidCredentials");
    let g = e.get(&compute_path("vm-bad")).await;
    assert_eq!(g.body["properties"]["provisioningState"], "Failed");
    assert_eq!(
        g.body["properties"]["provisioningErrors"][0]["error"]["code"],
        "InvalidCredentials"
    );
    assert!(!g.text.contains("wrong\""));

    let missing = VM1.replace("dsvm-1", "dsvm-404");
    let r = e
        .put(
            &compute_path("vm-gone"),
            &vm_body(&missing, "Emulator-VM-Passw0rd"),
        )
        .await;
    let op = e.wait_op(r.header("azure-asyncoperation").unwrap()).await;
    assert_eq!(op.body["error"]["code"], "UnderlyingResourceNotFound");
}

#[tokio::test]
async fn attach_every_default_world_kind() {
    let e = env().await;
    let key = "-----BEGIN OPENSSH PRIVATE KEY-----\nemulator-dsvm-1-key\n-----END OPENSSH PRIVATE KEY-----\n";
    let bodies = [
        (
            "vm-key",
            json!({"properties":{"computeType":"VirtualMachine","resourceId":VM2,
            "properties":{"sshPort":22,"administratorAccount":{"username":"azureuser","privateKeyData":key}}}}),
        ),
        (
            "hdi-one",
            json!({"properties":{"computeType":"HDInsight","resourceId":HDI,
            "properties":{"address":"spark-1-ssh.azurehdinsight.net","sshPort":22,
            "administratorAccount":{"username":"sshuser","password":"Emulator-HDI-Passw0rd"}}}}),
        ),
        (
            "batch-one",
            json!({"location":"westeurope","properties":{"computeType":"Batch","resourceId":BATCH}}),
        ),
        (
            "dbw-one",
            json!({"properties":{"computeType":"Databricks","resourceId":DBW,
            "properties":{"databricksAccessToken":"dapi-emulator-0123456789abcdef","workspaceUrl":"adb-1234567890123456.7.azuredatabricks.net"}}}),
        ),
        (
            "adla-one",
            json!({"properties":{"computeType":"DataLakeAnalytics","resourceId":ADLA}}),
        ),
    ];
    let mut ops = Vec::new();
    for (name, body) in &bodies {
        let r = e.put(&compute_path(name), body).await;
        assert_eq!(r.status, StatusCode::CREATED, "{name}: {}", r.text);
        assert!(!r.text.contains("dapi-emulator"), "{name} echoed a secret");
        assert!(!r.text.contains("Passw0rd"), "{name} echoed a secret");
        ops.push(r.header("azure-asyncoperation").unwrap().to_owned());
    }
    for (op, (name, _)) in ops.iter().zip(&bodies) {
        let r = e.wait_op(op).await;
        assert_eq!(r.body["status"], "Succeeded", "{name}: {}", r.text);
    }
    let g = e.get(&compute_path("dbw-one")).await;
    assert_eq!(
        g.body["properties"]["properties"],
        json!({"databricksAccessToken": null, "workspaceUrl": "adb-1234567890123456.7.azuredatabricks.net"})
    );
    // Wrong Databricks token fails.
    let r = e
        .put(
            &compute_path("dbw-bad"),
            &json!({"properties":{"computeType":"Databricks","resourceId":DBW,
        "properties":{"databricksAccessToken":"nope"}}}),
        )
        .await;
    let op = e.wait_op(r.header("azure-asyncoperation").unwrap()).await;
    assert_eq!(op.body["status"], "Failed");

    // listKeys returns the secrets.
    let r = e
        .arm(
            Method::POST,
            &with_version(&format!("{}/listKeys", compute_path("dbw-one"))),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.body,
        json!({"computeType":"Databricks","databricksAccessToken":"dapi-emulator-0123456789abcdef"})
    );
    let r = e
        .arm(
            Method::POST,
            &with_version(&format!("{}/listKeys", compute_path("vm-key"))),
            None,
        )
        .await;
    assert_eq!(r.body["computeType"], "VirtualMachine");
    assert_eq!(r.body["administratorAccount"]["privateKeyData"], key);
    let r = e
        .arm(
            Method::POST,
            &with_version(&format!("{}/listKeys", compute_path("adla-one"))),
            None,
        )
        .await;
    assert_eq!(r.body, json!({"computeType":"DataLakeAnalytics"}));
    let r = e
        .arm(
            Method::POST,
            &with_version(&format!("{}/listKeys", compute_path("nothing"))),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn batch_can_be_refused() {
    let e = env().await;
    e.control
        .update_config(&SettingsPatch {
            accept_batch: Some(false),
            ..Default::default()
        })
        .await
        .unwrap();
    let r = e
        .put(
            &compute_path("batch-one"),
            &json!({"properties":{"computeType":"Batch","resourceId":BATCH}}),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::BAD_REQUEST, "UnsupportedComputeType")
    );
    assert_eq!(r.body["error"]["target"], "properties.computeType");
    let r = e
        .put(
            &compute_path("weird-one"),
            &json!({"properties":{"computeType":"Quantum"}}),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::BAD_REQUEST, "UnsupportedComputeType")
    );
}

#[tokio::test]
async fn bodies_are_validated_against_the_spec() {
    let e = env().await;
    let cases = [
        (
            json!({"properties":{"computeType":"VirtualMachine","properties":{"sshPort":"22"}}}),
            "properties.properties.sshPort",
        ),
        (
            json!({"properties":{"resourceId":VM1}}),
            "properties.computeType",
        ),
        (
            json!({"properties":{"computeType":"AKS","properties":{"agentCount":-1}}}),
            "properties.properties.agentCount",
        ),
        (
            json!({"tags":{"a":1},"properties":{"computeType":"AmlCompute"}}),
            "tags.a",
        ),
        (
            json!({"sku":{"tier":"Free"},"properties":{"computeType":"AmlCompute"}}),
            "sku.name",
        ),
        (
            json!({"properties":{"computeType":"VirtualMachine","disableLocalAuth":"yes"}}),
            "properties.disableLocalAuth",
        ),
        (json!({"properties":"x"}), "properties"),
    ];
    for (body, path) in cases {
        let r = e.put(&compute_path("val-one"), &body).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(r.code(), "InvalidRequestContent");
        assert_eq!(r.body["error"]["target"], path, "{}", r.text);
        assert!(r.body["error"]["message"].as_str().unwrap().contains(path));
    }
    // A body without properties.
    let r = e
        .put(&compute_path("val-one"), &json!({"location":"westeurope"}))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    // Nothing was created by the failures.
    assert!(e.control.state().await.unwrap().computes.is_empty());
    // Unknown properties are ignored by default, refused when configured.
    let body = json!({"properties":{"computeType":"VirtualMachine","resourceId":VM1,"properties":{"sshPort":22,
        "administratorAccount":{"username":"azureuser","password":"Emulator-VM-Passw0rd","passphrase":"x"}}}});
    assert_eq!(
        e.put(&compute_path("val-two"), &body).await.status,
        StatusCode::CREATED
    );
    e.control
        .update_config(&SettingsPatch {
            reject_unknown_properties: Some(true),
            ..Default::default()
        })
        .await
        .unwrap();
    let r = e.put(&compute_path("val-two"), &body).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        r.body["error"]["target"],
        "properties.properties.administratorAccount.passphrase"
    );
}

#[tokio::test]
async fn malformed_requests_get_clear_4xx() {
    let e = env().await;
    let url = e.url(&with_version(&compute_path("bad-one")));
    // Malformed JSON.
    let r = into_resp(
        e.http
            .put(&url)
            .bearer_auth(&e.token)
            .header("content-type", "application/json")
            .body("{not json")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::BAD_REQUEST, "InvalidRequestContent")
    );
    // Wrong content type.
    let r = into_resp(
        e.http
            .put(&url)
            .bearer_auth(&e.token)
            .header("content-type", "text/plain")
            .body("{}")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::UNSUPPORTED_MEDIA_TYPE, "UnsupportedMediaType")
    );
    // Empty body.
    let r = into_resp(
        e.http
            .put(&url)
            .bearer_auth(&e.token)
            .header("content-type", "application/json")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    // JSON that is not an object.
    let r = into_resp(
        e.http
            .put(&url)
            .bearer_auth(&e.token)
            .json(&json!([1, 2]))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = into_resp(
        e.http
            .put(&url)
            .bearer_auth(&e.token)
            .json(&Value::Null)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    // Oversized body.
    let big = format!("{{\"location\":\"{}\"}}", "x".repeat(1024 * 1024 + 10));
    let r = into_resp(
        e.http
            .put(&url)
            .bearer_auth(&e.token)
            .header("content-type", "application/json")
            .body(big)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::PAYLOAD_TOO_LARGE, "RequestEntityTooLarge")
    );
    // Deeply nested JSON must not crash the server.
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let r = into_resp(
        e.http
            .put(&url)
            .bearer_auth(&e.token)
            .header("content-type", "application/json")
            .body(deep)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    // Weird methods.
    let r = e
        .arm(Method::PUT, &with_version(&ws_path()), Some(&json!({})))
        .await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    // Still healthy and nothing was stored.
    assert_eq!(e.get(&ws_path()).await.status, StatusCode::OK);
    assert!(e.control.state().await.unwrap().computes.is_empty());
}

#[tokio::test]
async fn list_pages_with_next_link() {
    let mut cfg = EmulatorConfig::fast();
    cfg.settings.page_size = 3;
    let e = env_with(cfg).await;
    for i in 0..7 {
        let body = json!({"properties":{"computeType":"AmlCompute","properties":{"vmSize":"Standard_DS2_v2"}}});
        e.control
            .put_compute("prod-workspace", &format!("aml-{i:02}"), &body)
            .await
            .unwrap();
    }
    let mut names = Vec::new();
    let mut url = e.url(&with_version(&format!("{}/computes", ws_path())));
    let mut pages = 0;
    loop {
        let r = e.follow(&url).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        pages += 1;
        for v in r.body["value"].as_array().unwrap() {
            names.push(v["name"].as_str().unwrap().to_owned());
        }
        match r.body.get("nextLink") {
            Some(Value::String(next)) => {
                assert!(next.contains("$skip="), "{next}");
                assert!(next.contains(&format!("api-version={V}")));
                url = next.clone();
            }
            None => break,
            Some(other) => panic!("nextLink {other}"),
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(
        names,
        (0..7).map(|i| format!("aml-{i:02}")).collect::<Vec<_>>()
    );
    let r = e.get(&format!("{}/computes?$skip=%%%", ws_path())).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    // An empty workspace lists as {"value": []} with no nextLink key.
    e.control.reset().await.unwrap();
    let r = e.get(&format!("{}/computes", ws_path())).await;
    assert_eq!(r.body, json!({"value": []}));
}

#[tokio::test]
async fn delete_requires_action_and_detaches() {
    let e = env().await;
    let r = e
        .put(
            &compute_path("vm-one"),
            &vm_body(VM1, "Emulator-VM-Passw0rd"),
        )
        .await;
    e.wait_op(r.header("azure-asyncoperation").unwrap()).await;

    let r = e
        .arm(Method::DELETE, &with_version(&compute_path("vm-one")), None)
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.body["error"]["target"], "underlyingResourceAction");
    let r = e
        .arm(
            Method::DELETE,
            &with_version(&format!(
                "{}?underlyingResourceAction=Explode",
                compute_path("vm-one")
            )),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);

    let r = e
        .arm(
            Method::DELETE,
            &with_version(&format!(
                "{}?underlyingResourceAction=Detach",
                compute_path("vm-one")
            )),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    assert_eq!(r.text, "");
    let op = r.header("azure-asyncoperation").unwrap().to_owned();
    // Like Azure (FINDINGS §4): only Azure-AsyncOperation, no Location.
    assert!(r.header("location").is_none());
    let loc = format!("{op}&type=location");
    assert!(op.contains("/computeOperationsStatus/"));
    assert!(
        r.header("x-ms-ratelimit-remaining-subscription-deletes")
            .is_some()
    );
    // Deleting: still listed, state Deleting.
    let g = e.get(&compute_path("vm-one")).await;
    if g.status == StatusCode::OK {
        assert_eq!(g.body["properties"]["provisioningState"], "Deleting");
    }
    let l = e.follow(&loc).await;
    assert!(l.status == StatusCode::ACCEPTED || l.status == StatusCode::NO_CONTENT);
    let done = e.wait_op(&op).await;
    assert_eq!(done.body["status"], "Succeeded");
    assert_eq!(
        e.get(&compute_path("vm-one")).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(e.follow(&loc).await.status, StatusCode::NO_CONTENT);
    // The VM still exists; nothing recorded as deleted.
    let state = e.control.state().await.unwrap();
    assert!(state.resources.iter().any(|r| r.id == VM1));
    assert!(state.deleted_resources.is_empty());
    // Absent: 204. Lower-case action like azureml-core sends.
    let r = e
        .arm(
            Method::DELETE,
            &with_version(&format!(
                "{}?underlyingResourceAction=detach",
                compute_path("vm-one")
            )),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn delete_action_delete_removes_the_resource_and_records_it() {
    let e = env().await;
    let r = e
        .put(
            &compute_path("adla-one"),
            &json!({"properties":{"computeType":"DataLakeAnalytics","resourceId":ADLA}}),
        )
        .await;
    e.wait_op(r.header("azure-asyncoperation").unwrap()).await;
    let r = e
        .arm(
            Method::DELETE,
            &with_version(&format!(
                "{}?underlyingResourceAction=Delete",
                compute_path("adla-one")
            )),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    e.wait_op(r.header("azure-asyncoperation").unwrap()).await;
    let state = e.control.state().await.unwrap();
    assert!(!state.resources.iter().any(|r| r.id == ADLA));
    assert_eq!(state.deleted_resources.len(), 1);
    assert_eq!(state.deleted_resources[0].id, ADLA);
    assert_eq!(state.deleted_resources[0].compute, "adla-one");
    // Attaching it again now fails: the resource is gone.
    let r = e
        .put(
            &compute_path("adla-two"),
            &json!({"properties":{"computeType":"DataLakeAnalytics","resourceId":ADLA}}),
        )
        .await;
    let op = e.wait_op(r.header("azure-asyncoperation").unwrap()).await;
    assert_eq!(op.body["error"]["code"], "UnderlyingResourceNotFound");
}

#[tokio::test]
async fn put_during_delete_conflicts() {
    let mut cfg = EmulatorConfig::fast();
    cfg.settings.deletion_delay_ms = 5_000;
    let e = env_with(cfg).await;
    e.control
        .put_compute(
            "prod-workspace",
            "aml-one",
            &json!({"properties":{"computeType":"AmlCompute"}}),
        )
        .await
        .unwrap();
    let r = e
        .arm(
            Method::DELETE,
            &with_version(&format!(
                "{}?underlyingResourceAction=Detach",
                compute_path("aml-one")
            )),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let r = e
        .put(
            &compute_path("aml-one"),
            &json!({"properties":{"computeType":"AmlCompute"}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    let r = e.get(&compute_path("aml-one")).await;
    assert_eq!(r.body["properties"]["provisioningState"], "Deleting");
    // A second DELETE while deleting is accepted again.
    let r = e
        .arm(
            Method::DELETE,
            &with_version(&format!(
                "{}?underlyingResourceAction=Detach",
                compute_path("aml-one")
            )),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
}

#[tokio::test]
async fn operation_status_unknown_is_404() {
    let e = env().await;
    let r = e.get(&format!("/subscriptions/{SUB}/providers/Microsoft.MachineLearningServices/locations/westeurope/computeOperationsStatus/0b6f6bb4-0000-0000-0000-000000000000")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn patch_updates_aml_compute_only() {
    let e = env().await;
    e.control.put_compute("prod-workspace", "aml-one", &json!({"properties":{"computeType":"AmlCompute","properties":{"scaleSettings":{"maxNodeCount":1}}}})).await.unwrap();
    let patch = json!({"properties":{"properties":{"scaleSettings":{"maxNodeCount":4,"minNodeCount":0,"nodeIdleTimeBeforeScaleDown":"PT5M"}}}});
    let r = e
        .arm(
            Method::PATCH,
            &with_version(&compute_path("aml-one")),
            Some(&patch),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(
        r.body["properties"]["properties"]["scaleSettings"]["maxNodeCount"],
        4
    );
    let bad = json!({"properties":{"properties":{"scaleSettings":{"minNodeCount":0}}}});
    let r = e
        .arm(
            Method::PATCH,
            &with_version(&compute_path("aml-one")),
            Some(&bad),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        r.body["error"]["target"],
        "properties.properties.scaleSettings.maxNodeCount"
    );
}

#[tokio::test]
async fn names_are_case_insensitive() {
    let e = env().await;
    e.control
        .put_compute(
            "prod-workspace",
            "MixedCase",
            &json!({"properties":{"computeType":"AmlCompute"}}),
        )
        .await
        .unwrap();
    let path = format!(
        "/SUBSCRIPTIONS/{SUB}/resourcegroups/ML-RG/providers/microsoft.machinelearningservices/workspaces/PROD-WORKSPACE/computes/mixedcase"
    );
    let r = e.get(&path).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["name"], "MixedCase");
}

#[tokio::test]
async fn concurrent_puts_keep_state_consistent() {
    let e = env().await;
    let mut tasks = Vec::new();
    for i in 0..20 {
        let http = e.http.clone();
        let url = e.url(&with_version(&compute_path(&format!("aml{i:02}"))));
        let token = e.token.clone();
        tasks.push(tokio::spawn(async move {
            send(
                &http,
                Method::PUT,
                &url,
                Some(&token),
                Some(&json!({"properties":{"computeType":"AmlCompute"}})),
            )
            .await
            .status
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), StatusCode::CREATED);
    }
    assert_eq!(e.control.state().await.unwrap().computes.len(), 20);
}

/// Replace a random node of `v` with a value of a random JSON type.
fn mutate(v: &mut Value, rng: &mut fastrand::Rng) {
    let replacement = match rng.u8(0..7) {
        0 => Value::Null,
        1 => json!(rng.i64(..)),
        2 => json!(rng.f64()),
        3 => json!("x".repeat(rng.usize(0..40))),
        4 => json!([1, "a", null]),
        5 => json!({"unexpected": {"deep": [true]}}),
        _ => json!(rng.bool()),
    };
    match v {
        Value::Object(m) if !m.is_empty() && rng.u8(0..4) != 0 => {
            let keys: Vec<String> = m.keys().cloned().collect();
            let k = &keys[rng.usize(0..keys.len())];
            mutate(m.get_mut(k).unwrap(), rng);
        }
        Value::Array(a) if !a.is_empty() && rng.bool() => {
            let i = rng.usize(0..a.len());
            mutate(&mut a[i], rng);
        }
        other => *other = replacement,
    }
}

#[tokio::test]
async fn mutated_bodies_never_break_the_server() {
    let e = env().await;
    let mut rng = fastrand::Rng::with_seed(7);
    let base = vm_body(VM1, "Emulator-VM-Passw0rd");
    for i in 0..150 {
        let mut body = base.clone();
        for _ in 0..rng.usize(1..4) {
            mutate(&mut body, &mut rng);
        }
        let r = e.put(&compute_path(&format!("fuzz{}", i % 5)), &body).await;
        assert!(
            r.status == StatusCode::CREATED || r.status.is_client_error(),
            "{body} -> {} {}",
            r.status,
            r.text
        );
        if r.status.is_client_error() {
            assert!(r.body["error"]["code"].is_string(), "{}", r.text);
        }
    }
    // Still serving, and every stored compute renders.
    assert_eq!(e.get(&ws_path()).await.status, StatusCode::OK);
    let list = e.get(&format!("{}/computes", ws_path())).await;
    assert_eq!(list.status, StatusCode::OK);
    let state = e.control.state().await.unwrap();
    assert_eq!(
        state.computes.len(),
        list.body["value"].as_array().unwrap().len()
    );
}
