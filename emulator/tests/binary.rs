//! The real binary: start-up contract (`listening on <url>` first on stdout, CA file) and a
//! YAML config file.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use azureml_emulator::ControlClient;

struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(args: &[&str]) -> (Kill, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_azureml-emulator"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start binary");
    let stdout = child.stdout.take().unwrap();
    let mut first = String::new();
    BufReader::new(stdout).read_line(&mut first).unwrap();
    (Kill(child), first)
}

#[tokio::test]
async fn prints_listening_line_and_writes_ca() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    let (_child, first) = start(&["--listen", "127.0.0.1:0", "--ca-file", ca.to_str().unwrap()]);
    let url = first
        .trim_end()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("first line was {first:?}"))
        .to_owned();
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");
    let pem = std::fs::read_to_string(&ca).unwrap();
    let control = ControlClient::new(&url, &pem).unwrap();
    let state = control.state().await.unwrap();
    assert_eq!(state.resources.len(), 16);
    assert!(control.default_token().await.is_ok());
}

#[tokio::test]
async fn loads_a_yaml_world() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    let cfg = dir.path().join("world.yaml");
    std::fs::write(
        &cfg,
        r#"
tenantId: aaaaaaaa-1111-1111-1111-111111111111
applications:
  - clientId: bbbbbbbb-2222-2222-2222-222222222222
    secrets: [s3cret]
workspaces:
  - subscriptionId: cccccccc-0000-0000-0000-000000000000
    resourceGroup: rg1
    name: ws-one
    location: northeurope
resources:
  - id: /subscriptions/cccccccc-0000-0000-0000-000000000000/resourceGroups/rg1/providers/Microsoft.Compute/virtualMachines/vm9
    address: 10.0.0.9
    username: u
    password: p
computes:
  - workspace: ws-one
    name: pre-existing
    body: {properties: {computeType: AmlCompute}}
provisioningDelayMs: 10
acceptBatch: false
throttling:
  enabled: false
"#,
    )
    .unwrap();
    let (_child, first) = start(&[
        "--listen",
        "127.0.0.1:0",
        "--ca-file",
        ca.to_str().unwrap(),
        "--config",
        cfg.to_str().unwrap(),
    ]);
    let url = first
        .trim_end()
        .strip_prefix("listening on ")
        .unwrap()
        .to_owned();
    let pem = std::fs::read_to_string(&ca).unwrap();
    let control = ControlClient::new(&url, &pem).unwrap();
    let state = control.state().await.unwrap();
    assert_eq!(state.resources.len(), 1);
    assert_eq!(state.computes.len(), 1);
    assert!(!state.config.accept_batch);
    assert!(!state.config.throttling.enabled);
    assert_eq!(state.config.provisioning_delay_ms, 10);
    let token = control
        .token_with_secret(
            "aaaaaaaa-1111-1111-1111-111111111111",
            "bbbbbbbb-2222-2222-2222-222222222222",
            "s3cret",
            None,
        )
        .await
        .unwrap();
    let r = control
        .http()
        .get(format!("{url}/subscriptions/cccccccc-0000-0000-0000-000000000000/resourceGroups/rg1/providers/Microsoft.MachineLearningServices/workspaces/ws-one/computes/pre-existing?api-version=2025-12-01"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[test]
fn bad_config_exits_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.yaml");
    std::fs::write(&cfg, "workspaces: 5\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_azureml-emulator"))
        .args([
            "--ca-file",
            dir.path().join("ca.pem").to_str().unwrap(),
            "--config",
            cfg.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
}

#[test]
fn detached_emulator_outlives_test_runtimes() {
    let emu = azureml_emulator::spawn_detached(azureml_emulator::EmulatorConfig::fast()).unwrap();
    for _ in 0..2 {
        // Each iteration is like a separate #[tokio::test] with its own runtime.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let control = emu.control().unwrap();
            assert_eq!(control.state().await.unwrap().resources.len(), 16);
        });
    }
    drop(emu);
}
