//! The ARM client against the in-process emulator, over real HTTPS: a client-secret token
//! from the emulator's Entra endpoint (custom authority host + extra CA file), then workspace
//! GET, compute LIST/GET/PUT/poll/listKeys/detach, throttling (including a restart after a
//! predecessor spent the budget), retries and URL safety.

use std::sync::Arc;
use std::time::{Duration, Instant};

use azureml_attach::azure::models::{
    AdministratorAccount, Compute, ComputeProperties, ComputeResource, ComputeType, InstanceType,
    InstanceTypeResources, KubernetesProperties, ManagedServiceIdentity, OperationState,
    ProvisioningState, VirtualMachineProperties,
};
use azureml_attach::azure::prerequisites::{
    hdinsight_check, kubernetes_check, synapse_pool_check, vm_check,
};
use azureml_attach::azure::throttle::arm_limits;
use azureml_attach::azure::{
    ArmClient, ArmError, AzureConfig, AzureOptions, Cloud, CredentialFactory, CredentialSpec,
    DetachOutcome, EndpointOverrides, Lro, OpClass, Throttle, ThrottleConfig, WorkspaceRef,
};
use azureml_attach::ops::Metrics;
use azureml_emulator::config::{DEFAULT_CLIENT_SECRET, DEFAULT_SECRET_CLIENT_ID, DEFAULT_TENANT};
use azureml_emulator::{ControlClient, EmulatorConfig, EmulatorHandle, FaultSpec, SettingsPatch};
use secrecy::SecretString;

const VM_ID: &str = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/ml-rg/providers/Microsoft.Compute/virtualMachines/dsvm-1";

struct Env {
    emulator: EmulatorHandle,
    control: ControlClient,
    arm: ArmClient,
    metrics: Arc<Metrics>,
    config: AzureConfig,
}

async fn env_with_secret(secret: &str) -> Env {
    let mut config = EmulatorConfig::default();
    config.settings.provisioning_delay_ms = 300;
    config.settings.deletion_delay_ms = 300;
    let emulator = azureml_emulator::spawn(config).await.unwrap();
    let control = emulator.control().unwrap();
    let options = AzureOptions {
        cloud: Cloud::Custom,
        overrides: EndpointOverrides {
            arm_endpoint: Some(emulator.base_url().to_string()),
            arm_audience: None,
            authority_host: Some(emulator.base_url().to_string()),
        },
        extra_ca_file: Some(emulator.ca_file().to_path_buf()),
        ..Default::default()
    };
    let config = AzureConfig::load(options).unwrap();
    assert_eq!(config.extra_root_count(), 1);
    let factory = CredentialFactory::with_env(&config, Default::default());
    let credential = factory
        .build(
            &CredentialSpec::ClientSecret {
                tenant_id: DEFAULT_TENANT.to_string(),
                client_id: DEFAULT_SECRET_CLIENT_ID.to_string(),
            },
            &config.endpoints,
            Some(SecretString::from(secret.to_string())),
        )
        .unwrap();
    let metrics = Arc::new(Metrics::new());
    let arm = ArmClient::new(
        &config,
        credential,
        Arc::new(Throttle::new(config.throttle)),
        Some(metrics.clone()),
    );
    Env {
        emulator,
        control,
        arm,
        metrics,
        config,
    }
}

async fn env() -> Env {
    env_with_secret(DEFAULT_CLIENT_SECRET).await
}

fn ws() -> WorkspaceRef {
    WorkspaceRef::new(
        "00000000-0000-0000-0000-000000000000",
        "ml-rg",
        "prod-workspace",
    )
}

fn vm_body() -> ComputeResource {
    let mut compute = Compute::new(ComputeType::VirtualMachine, Some(VM_ID.to_string()));
    compute.properties = Some(ComputeProperties::VirtualMachine(
        VirtualMachineProperties {
            ssh_port: Some(22),
            administrator_account: Some(AdministratorAccount {
                username: Some("azureuser".into()),
                password: Some(SecretString::from("Emulator-VM-Passw0rd")),
                ..Default::default()
            }),
            ..Default::default()
        },
    ));
    ComputeResource {
        location: Some("westeurope".into()),
        properties: Some(compute),
        ..Default::default()
    }
}

/// Polls an operation URL (or GET when there is none) until it is terminal.
async fn wait_put(arm: &ArmClient, lro: Lro, name: &str) -> ComputeResource {
    match lro {
        Lro::Done(resource) => *resource,
        Lro::InProgress { operation_url, .. } => {
            let deadline = Instant::now() + Duration::from_secs(20);
            if let Some(url) = operation_url {
                loop {
                    let status = arm.poll_operation(&url).await.unwrap();
                    if status.status.is_terminal() {
                        assert_eq!(status.status, OperationState::Succeeded, "{status:?}");
                        break;
                    }
                    assert!(Instant::now() < deadline, "operation never finished");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            loop {
                let compute = arm.get_compute(&ws(), name).await.unwrap().unwrap();
                if compute
                    .provisioning_state()
                    .is_some_and(|s| s.is_terminal())
                {
                    return compute;
                }
                assert!(Instant::now() < deadline, "provisioning never finished");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

#[tokio::test]
async fn attach_lifecycle_detaches_and_never_deletes() {
    let env = env().await;
    let arm = &env.arm;

    let workspace = arm.get_workspace(&ws()).await.unwrap();
    assert_eq!(workspace.location.as_deref(), Some("westeurope"));
    assert_eq!(workspace.id.as_deref(), Some(ws().arm_id().as_str()));

    assert!(arm.get_compute(&ws(), "gpu-dsvm").await.unwrap().is_none());
    let before = arm.list_computes(&ws()).await.unwrap();
    assert!(before.iter().all(|c| c.name.as_deref() != Some("gpu-dsvm")));

    let lro = arm
        .put_compute(&ws(), "gpu-dsvm", &vm_body())
        .await
        .unwrap();
    assert!(matches!(lro, Lro::InProgress { .. }), "{lro:?}");
    let compute = wait_put(arm, lro, "gpu-dsvm").await;
    assert_eq!(
        compute.provisioning_state(),
        Some(&ProvisioningState::Succeeded)
    );
    assert_eq!(compute.resource_id(), Some(VM_ID));
    assert_eq!(
        compute.properties.as_ref().unwrap().is_attached_compute,
        Some(true)
    );

    let listed = arm.list_computes(&ws()).await.unwrap();
    assert!(listed.iter().any(|c| c.name.as_deref() == Some("gpu-dsvm")));

    let keys = arm.list_keys(&ws(), "gpu-dsvm").await.unwrap();
    assert!(!format!("{keys:?}").contains("Emulator-VM-Passw0rd"));

    // Detach, wait, and detach again: the second answers 204 (nothing to detach).
    match arm.detach_compute(&ws(), "gpu-dsvm").await.unwrap() {
        DetachOutcome::InProgress {
            operation_url: Some(url),
            ..
        } => {
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                let status = arm.poll_operation(&url).await.unwrap();
                if status.status.is_terminal() {
                    assert_eq!(status.status, OperationState::Succeeded);
                    break;
                }
                assert!(Instant::now() < deadline);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        // Like Azure, the 202 carries only Azure-AsyncOperation (no Location): the client
        // must find the operation URL there.
        other => panic!("a 202 with an Azure-AsyncOperation URL, got {other:?}"),
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while arm.get_compute(&ws(), "gpu-dsvm").await.unwrap().is_some() {
        assert!(Instant::now() < deadline, "compute never went away");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        arm.detach_compute(&ws(), "gpu-dsvm").await.unwrap(),
        DetachOutcome::Absent
    );

    // The emulator's own records: every DELETE said Detach, nothing underlying was deleted,
    // and every ARM call was made by the client-secret principal.
    let log = env.control.requests(None).await.unwrap();
    let deletes: Vec<_> = log
        .entries
        .iter()
        .filter(|e| e.method == "DELETE")
        .collect();
    assert_eq!(deletes.len(), 2);
    for entry in &deletes {
        let query = entry.query.clone().unwrap_or_default();
        assert!(query.contains("underlyingResourceAction=Detach"), "{query}");
        assert!(!query.contains("Delete"), "{query}");
    }
    let state = env.control.state().await.unwrap();
    assert!(state.deleted_resources.is_empty());
    assert!(
        log.entries
            .iter()
            .filter(|e| e.operation.starts_with("Compute_"))
            .all(|e| e.principal.as_deref() == Some(DEFAULT_SECRET_CLIENT_ID)),
        "{:?}",
        log.entries
    );

    let text = env.metrics.encode().unwrap();
    assert!(
        text.contains(
            r#"azureml_attach_arm_requests_total{operation="Compute_Delete",status="204"} 1"#
        ),
        "{text}"
    );
}

#[tokio::test]
async fn a_429_is_returned_with_retry_after_and_pauses_the_bucket() {
    let env = env().await;
    // Warm the token so the timing below measures ARM calls only.
    env.arm.get_workspace(&ws()).await.unwrap();
    env.control
        .add_fault(&FaultSpec {
            method: Some("GET".into()),
            path_pattern: "/computes$".into(),
            status: Some(429),
            retry_after: Some(2),
            count: Some(1),
            ..Default::default()
        })
        .await
        .unwrap();
    env.control.clear_requests().await.unwrap();

    let err = env.arm.list_computes(&ws()).await.unwrap_err();
    match &err {
        ArmError::Throttled {
            retry_after,
            client_side,
            ..
        } => {
            assert_eq!(*retry_after, Duration::from_secs(2));
            assert!(!client_side);
        }
        other => panic!("expected Throttled, got {other:?}"),
    }
    assert_eq!(err.retry_after(), Some(Duration::from_secs(2)));
    assert!(!err.is_permanent());

    // The read bucket is paused: the next read waits out Retry-After before it is sent.
    let started = Instant::now();
    env.arm.list_computes(&ws()).await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(1800),
        "{:?}",
        started.elapsed()
    );
    let log = env.control.requests(None).await.unwrap();
    assert_eq!(log.total, 2, "{:?}", log.entries);
    let text = env.metrics.encode().unwrap();
    assert!(
        text.contains(r#"azureml_attach_arm_throttled_total{class="read"} 1"#),
        "{text}"
    );
}

/// Another process on the same emulator, as the same principal, with its own throttle.
fn process(env: &Env, throttle: ThrottleConfig) -> (ArmClient, Arc<Throttle>, Arc<Metrics>) {
    let credential = CredentialFactory::with_env(&env.config, Default::default())
        .build(
            &CredentialSpec::ClientSecret {
                tenant_id: DEFAULT_TENANT.to_string(),
                client_id: DEFAULT_SECRET_CLIENT_ID.to_string(),
            },
            &env.config.endpoints,
            Some(SecretString::from(DEFAULT_CLIENT_SECRET.to_string())),
        )
        .unwrap();
    let throttle = Arc::new(Throttle::new(throttle));
    let metrics = Arc::new(Metrics::new());
    let arm = ArmClient::new(
        &env.config,
        credential,
        throttle.clone(),
        Some(metrics.clone()),
    );
    (arm, throttle, metrics)
}

/// The last `x-ms-ratelimit-remaining-subscription-writes` a client saw, from its metrics.
fn writes_remaining(metrics: &Metrics) -> Option<i64> {
    let text = metrics.encode().unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(r#"azureml_attach_arm_ratelimit_remaining{class="write"} "#))
        .and_then(|v| v.trim().parse().ok())
}

/// A client as generous as ARM itself and with no start-up caution: the behaviour before
/// issue 8, and a predecessor that spends as fast as it can.
fn as_generous_as_arm() -> ThrottleConfig {
    ThrottleConfig {
        reads: arm_limits::READS,
        writes: arm_limits::WRITES,
        deletes: arm_limits::DELETES,
        initial_fraction: 1.0,
        margin_fraction: 0.0,
        ..ThrottleConfig::default()
    }
}

/// A previous process spends the emulator's write bucket (ARM's 200 / 10 per s) down to a few
/// tokens, then a fresh process with `fresh` sends a burst of concurrent PUTs. Returns how
/// many of them ARM answered 429, per the emulator's own log, and the fresh process's parts.
async fn restart_burst(fresh: ThrottleConfig) -> (usize, Arc<Throttle>, Arc<Metrics>) {
    const BURST: usize = 24;
    let env = env().await;
    let (previous, _, previous_metrics) = process(&env, as_generous_as_arm());
    // listKeys is a POST, so a write; on a compute that does not exist it is a cheap 404,
    // which ARM counts (and reports) all the same.
    loop {
        let err = previous.list_keys(&ws(), "nothing-here").await.unwrap_err();
        assert!(matches!(err, ArmError::NotFound { .. }), "{err:?}");
        let left = writes_remaining(&previous_metrics).expect("every answer reports writes");
        if left <= 6 {
            break;
        }
    }
    env.control.clear_requests().await.unwrap();

    let (arm, throttle, metrics) = process(&env, fresh);
    let puts = (0..BURST).map(|i| {
        let arm = arm.clone();
        async move {
            let body = ComputeResource {
                location: Some("westeurope".into()),
                properties: Some(Compute::new(
                    ComputeType::DataLakeAnalytics,
                    Some("/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/ml-rg/providers/Microsoft.DataLakeAnalytics/accounts/adla1".into()),
                )),
                ..Default::default()
            };
            arm.put_compute(&ws(), &format!("burst{i}x"), &body).await
        }
    });
    let results = futures::future::join_all(puts).await;
    let log = env.control.requests(None).await.unwrap();
    let sent: Vec<_> = log
        .entries
        .iter()
        .filter(|e| e.operation == "Compute_CreateOrUpdate")
        .collect();
    let throttled = sent.iter().filter(|e| e.status == 429).count();
    let refused_here = results
        .iter()
        .filter(|r| {
            matches!(
                r,
                Err(ArmError::Throttled {
                    client_side: true,
                    ..
                })
            )
        })
        .count();
    assert_eq!(
        sent.len() + refused_here,
        BURST,
        "every PUT was sent or refused client-side: {:?}",
        log.counts
    );
    (throttled, throttle, metrics)
}

#[tokio::test]
async fn a_fresh_process_after_a_spent_budget_gets_no_429() {
    let (throttled, throttle, metrics) = restart_burst(ThrottleConfig::default()).await;
    assert_eq!(throttled, 0, "the fresh process got 429s");
    // It read ARM's count and its bucket is below it by at least the margin.
    let reported = writes_remaining(&metrics).unwrap();
    assert!(reported < 20, "{reported}");
    let margin = ThrottleConfig::default().margin(OpClass::Write);
    let available = throttle.available_at(
        "00000000-0000-0000-0000-000000000000",
        OpClass::Write,
        Instant::now(),
    );
    assert!(
        available <= reported as f64 - margin,
        "{available} > {reported} - {margin}"
    );
    let text = metrics.encode().unwrap();
    assert!(
        !text.contains("azureml_attach_arm_throttled_total"),
        "nothing throttled, not even client-side: {text}"
    );
}

#[tokio::test]
async fn without_start_up_caution_the_same_burst_is_throttled() {
    // The control experiment: the burst above is big enough to matter.
    let (throttled, _, metrics) = restart_burst(as_generous_as_arm()).await;
    assert!(throttled > 0, "expected 429s from a full-burst start");
    let text = metrics.encode().unwrap();
    assert!(
        text.contains(r#"azureml_attach_arm_throttled_total{class="write"}"#),
        "{text}"
    );
}

#[tokio::test]
async fn gets_retry_once_on_5xx_and_writes_do_not() {
    let env = env().await;
    env.arm.get_workspace(&ws()).await.unwrap();
    env.control
        .add_fault(&FaultSpec {
            method: Some("GET".into()),
            path_pattern: "/computes/gpu-dsvm$".into(),
            status: Some(503),
            count: Some(1),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(
        env.arm
            .get_compute(&ws(), "gpu-dsvm")
            .await
            .unwrap()
            .is_none()
    );

    env.control
        .add_fault(&FaultSpec {
            method: Some("PUT".into()),
            path_pattern: "/computes/gpu-dsvm$".into(),
            status: Some(500),
            count: Some(1),
            ..Default::default()
        })
        .await
        .unwrap();
    let err = env
        .arm
        .put_compute(&ws(), "gpu-dsvm", &vm_body())
        .await
        .unwrap_err();
    assert!(
        matches!(err, ArmError::Server { status: 500, .. }),
        "{err:?}"
    );
    let log = env.control.requests(None).await.unwrap();
    let count = |key: &str| log.counts.get(key).copied().unwrap_or_default();
    assert_eq!(count("Compute_Get 503"), 1, "{:?}", log.counts);
    assert_eq!(count("Compute_Get 404"), 1, "{:?}", log.counts);
    assert_eq!(count("Compute_CreateOrUpdate 500"), 1, "{:?}", log.counts);
    assert_eq!(log.entries.iter().filter(|e| e.method == "PUT").count(), 1);
}

#[tokio::test]
async fn list_follows_next_links() {
    let env = env().await;
    env.control
        .update_config(&SettingsPatch {
            page_size: Some(2),
            ..Default::default()
        })
        .await
        .unwrap();
    for i in 0..5 {
        let body = serde_json::json!({
            "location": "westeurope",
            "properties": {"computeType": "DataLakeAnalytics",
                "resourceId": format!("/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/ml-rg/providers/Microsoft.DataLakeAnalytics/accounts/adla{i}")}
        });
        env.control
            .put_compute("prod-workspace", &format!("adla-{i}x"), &body)
            .await
            .unwrap();
    }
    env.control.clear_requests().await.unwrap();
    let all = env.arm.list_computes(&ws()).await.unwrap();
    assert_eq!(all.len(), 5, "{all:?}");
    let log = env.control.requests(None).await.unwrap();
    let pages = log
        .entries
        .iter()
        .filter(|e| e.operation == "Compute_List")
        .count();
    assert_eq!(pages, 3, "{:?}", log.entries);
}

#[tokio::test]
async fn foreign_operation_urls_are_never_called() {
    let env = env().await;
    env.control.clear_requests().await.unwrap();
    let foreign = "https://example.invalid/subscriptions/00000000-0000-0000-0000-000000000000/providers/Microsoft.MachineLearningServices/locations/westeurope/computeOperationsStatus/1";
    let err = env.arm.poll_operation(foreign).await.unwrap_err();
    assert!(
        matches!(err, ArmError::InvalidOperationUrl { .. }),
        "{err:?}"
    );
    assert!(!err.to_string().contains("computeOperationsStatus"));
    assert_eq!(env.control.requests(None).await.unwrap().total, 0);
    // Keep the emulator alive until here.
    drop(env.emulator);
    let _ = env.config;
}

#[tokio::test]
async fn a_wrong_client_secret_is_a_credential_error() {
    let env = env_with_secret("not-the-secret").await;
    let err = env.arm.get_workspace(&ws()).await.unwrap_err();
    assert!(err.is_credential_problem(), "{err:?}");
    assert_eq!(err.metric_label(), "credential");
    assert!(!format!("{err:?}").contains("not-the-secret"));
}

/// Minimal base64url (no padding) for building an unsigned test assertion.
fn b64url(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

#[tokio::test]
async fn workload_identity_token_through_the_custom_authority() {
    use azureml_attach::azure::credential::WorkloadIdentityEnv;
    use azureml_emulator::config::{
        DEFAULT_FEDERATED_AUDIENCE, DEFAULT_FEDERATED_CLIENT_ID, DEFAULT_FEDERATED_ISSUER,
        DEFAULT_FEDERATED_SUBJECT,
    };

    let env = env().await;
    // The emulator checks the assertion's claims, not its signature (it has no issuer keys).
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = serde_json::json!({
        "iss": DEFAULT_FEDERATED_ISSUER, "sub": DEFAULT_FEDERATED_SUBJECT,
        "aud": [DEFAULT_FEDERATED_AUDIENCE], "iat": now, "nbf": now, "exp": now + 3600,
    });
    let jwt = format!(
        "{}.{}.{}",
        b64url(br#"{"alg":"RS256","typ":"JWT"}"#),
        b64url(claims.to_string().as_bytes()),
        b64url(b"not-a-signature")
    );
    let dir = std::env::temp_dir().join(format!("arm-client-wi-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let token_file = dir.join("azure-identity-token");
    std::fs::write(&token_file, jwt).unwrap();

    let factory = CredentialFactory::with_env(
        &env.config,
        WorkloadIdentityEnv {
            client_id: Some(DEFAULT_FEDERATED_CLIENT_ID.to_string()),
            tenant_id: Some(DEFAULT_TENANT.to_string()),
            token_file: Some(token_file.clone()),
        },
    );
    let credential = factory
        .build(
            &CredentialSpec::OperatorDefault,
            &env.config.endpoints,
            None,
        )
        .unwrap();
    let arm = ArmClient::new(&env.config, credential, Arc::new(Throttle::default()), None);
    env.control.clear_requests().await.unwrap();
    arm.get_workspace(&ws()).await.unwrap();
    let log = env.control.requests(None).await.unwrap();
    let ws_get = log
        .entries
        .iter()
        .find(|e| e.operation == "Workspaces_Get")
        .unwrap();
    assert_eq!(
        ws_get.principal.as_deref(),
        Some(DEFAULT_FEDERATED_CLIENT_ID)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn rid(provider_path: &str) -> String {
    format!(
        "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/ml-rg/providers/{provider_path}"
    )
}

/// Each preflight read against the emulator's world, and the pure checks on what it answered:
/// one passing and one failing fixture per check; a missing resource is `None`.
#[tokio::test]
async fn preflight_reads_and_checks() {
    let env = env().await;
    let arm = &env.arm;

    let vm = |name: &str| rid(&format!("Microsoft.Compute/virtualMachines/{name}"));
    let view = arm.get_vm_with_network(VM_ID).await.unwrap().unwrap();
    assert_eq!(
        view.public_ip
            .as_ref()
            .and_then(|ip| ip.properties.ip_address.as_deref()),
        Some("20.61.0.10")
    );
    assert_eq!(
        vm_check(&view.vm, view.nic.as_ref(), view.public_ip.as_ref()),
        Ok(())
    );
    for (name, fact) in [
        ("win-vm", "runs Windows"),
        ("rhel-vm", "not Ubuntu"),
        ("private-vm", "no public IP address"),
    ] {
        let view = arm.get_vm_with_network(&vm(name)).await.unwrap().unwrap();
        let unmet = vm_check(&view.vm, view.nic.as_ref(), view.public_ip.as_ref()).expect_err(name);
        assert!(unmet.fact.contains(fact), "{name}: {unmet:?}");
    }
    assert!(
        arm.get_virtual_machine(&vm("nope"))
            .await
            .unwrap()
            .is_none()
    );
    let nic = arm
        .get_network_interface(&rid("Microsoft.Network/networkInterfaces/dsvm-1-nic"))
        .await
        .unwrap()
        .unwrap();
    assert!(nic.public_ip_id().is_some());
    assert!(
        arm.get_public_ip(&rid("Microsoft.Network/publicIPAddresses/private-vm-ip"))
            .await
            .unwrap()
            .is_none()
    );

    let hdi = |name: &str| rid(&format!("Microsoft.HDInsight/clusters/{name}"));
    let ok = arm
        .get_hdinsight_cluster(&hdi("spark-1"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(hdinsight_check(&ok), Ok(()));
    for (name, fact) in [
        ("spark-stopped", "is Error"),
        ("spark-private", "no public SSH endpoint"),
    ] {
        let c = arm
            .get_hdinsight_cluster(&hdi(name))
            .await
            .unwrap()
            .unwrap();
        assert!(hdinsight_check(&c).expect_err(name).fact.contains(fact));
    }

    let aks = rid("Microsoft.ContainerService/managedClusters/aks-1");
    let arc = rid("Microsoft.Kubernetes/connectedClusters/arc-1");
    assert!(arm.get_managed_cluster(&aks).await.unwrap().is_some());
    let connected = arm.get_kubernetes_cluster(&arc).await.unwrap().unwrap();
    assert_eq!(
        connected.properties.connectivity_status.as_deref(),
        Some("Connected")
    );
    for cluster in [&aks, &arc] {
        let exts = arm.list_cluster_extensions(cluster).await.unwrap().unwrap();
        assert_eq!(kubernetes_check(cluster, &exts), Ok(()), "{cluster}");
    }
    let noext = rid("Microsoft.ContainerService/managedClusters/aks-noext");
    let exts = arm.list_cluster_extensions(&noext).await.unwrap().unwrap();
    let unmet = kubernetes_check(&noext, &exts).expect_err("no extension");
    assert!(
        unmet.remedy.contains("az k8s-extension create"),
        "{unmet:?}"
    );
    let failed = rid("Microsoft.Kubernetes/connectedClusters/arc-failed");
    let exts = arm.list_cluster_extensions(&failed).await.unwrap().unwrap();
    assert!(
        kubernetes_check(&failed, &exts)
            .expect_err("failed")
            .fact
            .ends_with("is Failed")
    );
    let gone = rid("Microsoft.ContainerService/managedClusters/gone");
    assert!(arm.list_cluster_extensions(&gone).await.unwrap().is_none());
    assert!(arm.get_managed_cluster(&gone).await.unwrap().is_none());

    let pool = rid("Microsoft.Synapse/workspaces/syn-1/bigDataPools/pool1");
    let p = arm.get_synapse_pool(&pool).await.unwrap().unwrap();
    assert_eq!(synapse_pool_check(&p), Ok(()));
    assert!(
        arm.get_synapse_pool(&rid("Microsoft.Synapse/workspaces/syn-1/bigDataPools/nope"))
            .await
            .unwrap()
            .is_none()
    );

    // Not an ARM id: refused before anything is sent.
    assert!(matches!(
        arm.get_virtual_machine("https://evil.example/x").await,
        Err(ArmError::InvalidOperationUrl { .. })
    ));
    assert!(matches!(
        arm.get_virtual_machine(&format!("{VM_ID}/../../x")).await,
        Err(ArmError::InvalidOperationUrl { .. })
    ));

    // Every read was a GET with its own service's api-version, in the reads bucket.
    let log = env.control.requests(None).await.unwrap();
    let reads: Vec<_> = log
        .entries
        .iter()
        .filter(|e| !e.operation.starts_with("Compute_") && e.operation != "Token")
        .collect();
    assert!(reads.len() >= 20, "{reads:?}");
    for e in &reads {
        assert_eq!(e.method, "GET");
        assert!(matches!(e.status, 200 | 404), "{e:?}");
        assert!(
            !e.query
                .as_deref()
                .unwrap_or_default()
                .contains("2026-07-01"),
            "{e:?}"
        );
    }
    let text = env.metrics.encode().unwrap();
    assert!(
        text.contains(r#"operation="VirtualMachines_Get",status="200""#),
        "{text}"
    );
}

/// Typed Kubernetes and SynapseSpark bodies attach through the client.
#[tokio::test]
async fn kubernetes_and_synapse_attach_with_typed_bodies() {
    let env = env().await;
    let arm = &env.arm;
    let mut k8s = Compute::new(
        ComputeType::Kubernetes,
        Some(rid("Microsoft.ContainerService/managedClusters/aks-1")),
    );
    k8s.properties = Some(ComputeProperties::Kubernetes(KubernetesProperties {
        namespace: Some("ml".into()),
        default_instance_type: Some("cpu".into()),
        instance_types: Some(
            [(
                "cpu".to_owned(),
                InstanceType {
                    node_selector: Some([("pool".to_owned(), "cpu".to_owned())].into()),
                    resources: Some(InstanceTypeResources {
                        requests: Some([("cpu".to_owned(), "1".to_owned())].into()),
                        limits: Some([("memory".to_owned(), "4Gi".to_owned())].into()),
                    }),
                },
            )]
            .into(),
        ),
        ..Default::default()
    }));
    let body = ComputeResource {
        location: Some("westeurope".into()),
        identity: Some(ManagedServiceIdentity::user_assigned([rid(
            "Microsoft.ManagedIdentity/userAssignedIdentities/ml-uai",
        )])),
        properties: Some(k8s),
        ..Default::default()
    };
    let lro = arm.put_compute(&ws(), "k8s-one", &body).await.unwrap();
    let compute = wait_put(arm, lro, "k8s-one").await;
    assert_eq!(
        compute.provisioning_state(),
        Some(&ProvisioningState::Succeeded)
    );
    match compute
        .properties
        .as_ref()
        .and_then(|p| p.properties.as_ref())
    {
        Some(ComputeProperties::Kubernetes(k)) => {
            assert_eq!(k.namespace.as_deref(), Some("ml"));
            assert_eq!(
                k.extension_instance_release_train.as_deref(),
                Some("stable")
            );
            let cpu = &k.instance_types.as_ref().unwrap()["cpu"];
            assert_eq!(
                cpu.resources.as_ref().unwrap().requests.as_ref().unwrap()["cpu"],
                "1"
            );
        }
        other => panic!("Kubernetes properties, got {other:?}"),
    }

    let syn = Compute::new(
        ComputeType::SynapseSpark,
        Some(rid("Microsoft.Synapse/workspaces/syn-1/bigDataPools/pool1")),
    );
    let body = ComputeResource {
        location: Some("westeurope".into()),
        identity: Some(ManagedServiceIdentity::system_assigned()),
        properties: Some(syn),
        ..Default::default()
    };
    let lro = arm.put_compute(&ws(), "syn-one", &body).await.unwrap();
    let compute = wait_put(arm, lro, "syn-one").await;
    match compute
        .properties
        .as_ref()
        .and_then(|p| p.properties.as_ref())
    {
        Some(ComputeProperties::SynapseSpark(s)) => {
            assert_eq!(s.pool_name.as_deref(), Some("pool1"));
        }
        other => panic!("SynapseSpark properties, got {other:?}"),
    }
    assert!(
        compute
            .identity
            .as_ref()
            .is_some_and(|i| i.principal_id.is_some())
    );
}
