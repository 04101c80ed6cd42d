//! Shared helpers for the emulator's HTTP tests.
#![allow(dead_code)]

use azureml_emulator::{ControlClient, EmulatorConfig, EmulatorHandle, spawn};
use reqwest::{Client, Method, StatusCode, header::HeaderMap};
use serde_json::{Value, json};

pub const SUB: &str = "00000000-0000-0000-0000-000000000000";
pub const TENANT: &str = "11111111-1111-1111-1111-111111111111";
pub const V: &str = "2026-07-01";
pub const VM1: &str = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/ml-rg/providers/Microsoft.Compute/virtualMachines/dsvm-1";
pub const VM2: &str = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/ml-rg/providers/Microsoft.Compute/virtualMachines/dsvm-2";
pub const HDI: &str = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/ml-rg/providers/Microsoft.HDInsight/clusters/spark-1";
pub const BATCH: &str = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/ml-rg/providers/Microsoft.Batch/batchAccounts/batch1";
pub const DBW: &str = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/ml-rg/providers/Microsoft.Databricks/workspaces/dbw-1";
pub const ADLA: &str = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/ml-rg/providers/Microsoft.DataLakeAnalytics/accounts/adla1";
pub const ARC: &str = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/ml-rg/providers/Microsoft.Kubernetes/connectedClusters/arc-1";
pub const AKS: &str = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/ml-rg/providers/Microsoft.ContainerService/managedClusters/aks-1";
pub const SPARK_POOL: &str = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/ml-rg/providers/Microsoft.Synapse/workspaces/syn-1/bigDataPools/pool1";
pub const UAI: &str = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/ml-rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/ml-uai";

/// A running emulator plus an authenticated ARM client.
pub struct Env {
    pub emu: EmulatorHandle,
    pub http: Client,
    pub control: ControlClient,
    pub token: String,
}

/// An answer.
#[derive(Debug)]
pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }
}

pub async fn env_with(config: EmulatorConfig) -> Env {
    let emu = spawn(config).await.expect("spawn emulator");
    let http = emu.http_client().unwrap();
    let control = emu.control().unwrap();
    let token = control.default_token().await.unwrap();
    Env {
        emu,
        http,
        control,
        token,
    }
}

pub async fn env() -> Env {
    env_with(EmulatorConfig::fast()).await
}

pub fn ws_path() -> String {
    format!(
        "/subscriptions/{SUB}/resourceGroups/ml-rg/providers/Microsoft.MachineLearningServices/workspaces/prod-workspace"
    )
}

pub fn compute_path(name: &str) -> String {
    format!("{}/computes/{name}", ws_path())
}

pub async fn send(
    http: &Client,
    method: Method,
    url: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> Resp {
    let mut req = http.request(method, url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(b);
    }
    into_resp(req.send().await.expect("request")).await
}

pub async fn into_resp(r: reqwest::Response) -> Resp {
    let status = r.status();
    let headers = r.headers().clone();
    let text = r.text().await.unwrap_or_default();
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Resp {
        status,
        headers,
        body,
        text,
    }
}

impl Env {
    pub fn url(&self, path_and_query: &str) -> String {
        format!("{}{path_and_query}", self.emu.base_url())
    }
    pub async fn arm(&self, method: Method, path_and_query: &str, body: Option<&Value>) -> Resp {
        send(
            &self.http,
            method,
            &self.url(path_and_query),
            Some(&self.token),
            body,
        )
        .await
    }
    pub async fn get(&self, path: &str) -> Resp {
        self.arm(Method::GET, &with_version(path), None).await
    }
    pub async fn put(&self, path: &str, body: &Value) -> Resp {
        self.arm(Method::PUT, &with_version(path), Some(body)).await
    }
    /// Follow an absolute URL the emulator handed out.
    pub async fn follow(&self, url: &str) -> Resp {
        send(&self.http, Method::GET, url, Some(&self.token), None).await
    }
    /// Poll an Azure-AsyncOperation URL until it is terminal.
    pub async fn wait_op(&self, url: &str) -> Resp {
        for _ in 0..200 {
            let r = self.follow(url).await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.text);
            if r.body["status"] != "InProgress" {
                return r;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("operation never finished");
    }
}

pub fn with_version(path: &str) -> String {
    if path.contains("api-version=") {
        path.to_owned()
    } else if path.contains('?') {
        format!("{path}&api-version={V}")
    } else {
        format!("{path}?api-version={V}")
    }
}

pub fn vm_body(resource_id: &str, password: &str) -> Value {
    json!({
        "location": "westeurope",
        "properties": {
            "computeType": "VirtualMachine",
            "resourceId": resource_id,
            "properties": {
                "sshPort": 22,
                "administratorAccount": {"username": "azureuser", "password": password}
            }
        }
    })
}
