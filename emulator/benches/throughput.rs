//! Requests per second for GET and PUT with 1,000 computes present (throttling off).
//!
//! Run: `cargo bench -p azureml-emulator --bench throughput` (env `BENCH_SECS`, `BENCH_CONCURRENCY`).
//! Client and server share the machine, so the figures include the client's cost.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use azureml_emulator::{EmulatorConfig, spawn};
use serde_json::json;

const WS: &str = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/ml-rg/providers/Microsoft.MachineLearningServices/workspaces/prod-workspace";

/// CPU seconds (user + system) used so far by a process (Linux, 100 ticks per second).
fn cpu_secs(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn run(
    label: &str,
    clients: &[reqwest::Client],
    token: &str,
    base: &str,
    concurrency: u64,
    secs: u64,
    put: bool,
) -> f64 {
    let server_pid = std::env::var("BENCH_SERVER_PID").ok();
    let cpu_before = server_pid.as_deref().and_then(cpu_secs);
    let done = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(secs);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..concurrency {
        let http = clients[(w as usize) % clients.len()].clone();
        let token = token.to_owned();
        let base = base.to_owned();
        let done = done.clone();
        let errors = errors.clone();
        tasks.push(tokio::spawn(async move {
            let mut i = w;
            let body = json!({"location":"westeurope","properties":{"computeType":"AmlCompute","properties":{"vmSize":"Standard_DS2_v2"}}});
            while Instant::now() < deadline {
                let url = format!("{base}{WS}/computes/compute{:04}?api-version=2026-07-01", i % 1000);
                let req = if put { http.put(&url).json(&body) } else { http.get(&url) };
                match req.bearer_auth(&token).send().await {
                    Ok(r) if r.status().is_success() => {
                        let _ = r.bytes().await;
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
                i += concurrency;
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let n = done.load(Ordering::Relaxed);
    let rate = n as f64 / elapsed;
    println!(
        "{label}: {n} requests in {elapsed:.2}s = {rate:.0} req/s (concurrency {concurrency}, errors {})",
        errors.load(Ordering::Relaxed)
    );
    if let (Some(pid), Some(before)) = (server_pid.as_deref(), cpu_before)
        && let Some(after) = cpu_secs(pid)
        && n > 0
    {
        let per_req_us = (after - before) * 1e6 / n as f64;
        println!(
            "{label}: server CPU {:.2}s = {per_req_us:.0} us/request => {:.0} req/s per server core",
            after - before,
            1e6 / per_req_us
        );
    }
    rate
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        // BENCH_URL + BENCH_CA_FILE: load an emulator running as its own process (so its CPU time
        // can be read from /proc); otherwise spawn one in this process.
        let external = std::env::var("BENCH_URL").ok().zip(std::env::var("BENCH_CA_FILE").ok());
        let mut _emu = None;
        let (base, ca_pem) = match external {
            Some((url, ca_file)) => (url, std::fs::read_to_string(ca_file).expect("ca file")),
            None => {
                let mut cfg = EmulatorConfig::default();
                cfg.settings.throttling.enabled = false;
                cfg.settings.provisioning_delay_ms = 0;
                let emu = spawn(cfg).await.expect("spawn");
                let pair = (emu.base_url().to_owned(), emu.ca_pem().to_owned());
                _emu = Some(emu);
                pair
            }
        };
        let control = azureml_emulator::ControlClient::new(&base, &ca_pem).expect("control");
        control
            .update_config(&azureml_emulator::SettingsPatch {
                provisioning_delay_ms: Some(0),
                throttling: Some(azureml_emulator::config::ThrottlingPatch {
                    enabled: Some(false),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await
            .expect("config");
        for i in 0..1000 {
            control
                .put_compute(
                    "prod-workspace",
                    &format!("compute{i:04}"),
                    &json!({"properties":{"computeType":"AmlCompute","properties":{"vmSize":"Standard_DS2_v2"}}}),
                )
                .await
                .expect("seed");
        }
        assert_eq!(control.computes().await.expect("computes").len(), 1000);
        let token = control.default_token().await.expect("token");
        let secs = env_num("BENCH_SECS", 5);
        let concurrency = env_num("BENCH_CONCURRENCY", 64);
        // HTTP/1.1 with a keep-alive pool (one connection per in-flight request) by default;
        // BENCH_HTTP2=1: four HTTP/2 connections.
        let http2 = std::env::var("BENCH_HTTP2").is_ok_and(|v| v == "1");
        let clients: Vec<reqwest::Client> = if http2 {
            (0..4)
                .map(|_| azureml_emulator::https_client(&ca_pem).expect("client"))
                .collect()
        } else {
            let cert = reqwest::Certificate::from_pem(ca_pem.as_bytes()).expect("ca");
            vec![reqwest::Client::builder()
                .tls_certs_only([cert])
                .http1_only()
                .pool_max_idle_per_host(256)
                .build()
                .expect("client")]
        };
        println!("protocol: {}", if http2 { "HTTP/2 (4 connections)" } else { "HTTP/1.1 (pooled)" });
        // Warm up connections.
        run("warm-up GET", &clients, &token, &base, concurrency, 1, false).await;
        control.clear_requests().await.expect("clear");
        let get = run("GET compute", &clients, &token, &base, concurrency, secs, false).await;
        let put = run("PUT compute", &clients, &token, &base, concurrency, secs, true).await;
        let log = control.requests(Some(u64::MAX)).await.expect("log");
        println!("server counted: {:?}", log.counts);
        println!("RESULT get_per_sec={get:.0} put_per_sec={put:.0}");
    });
}
