//! `ControlClient`: a typed async client for the control API, plus helpers tests need
//! (an HTTPS client trusting the emulator's CA, getting tokens).

use reqwest::{Certificate, Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::config::{Settings, SettingsPatch, WorldResource};
use crate::control::{ComputeSeed, ComputeView, FaultView, RequestsView, ResourceView, StateView};
use crate::faults::FaultSpec;

/// Errors of [`ControlClient`].
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The CA PEM could not be parsed.
    #[error("invalid CA certificate")]
    Certificate(#[source] reqwest::Error),
    /// Transport or decoding error.
    #[error("request to the emulator failed")]
    Http(#[from] reqwest::Error),
    /// The emulator answered with an unexpected status.
    #[error("emulator answered {status}: {body}")]
    Status {
        /// Status.
        status: StatusCode,
        /// Body text.
        body: String,
    },
}

/// A reqwest client that trusts only the given CA (installs the ring provider first).
pub fn https_client(ca_pem: &str) -> Result<reqwest::Client, ClientError> {
    crate::tls::install_ring_provider();
    let cert = Certificate::from_pem(ca_pem.as_bytes()).map_err(ClientError::Certificate)?;
    Ok(reqwest::Client::builder()
        .tls_certs_only([cert])
        .no_proxy()
        .build()?)
}

/// Typed async client for `/_emulator/*`.
#[derive(Clone, Debug)]
pub struct ControlClient {
    http: reqwest::Client,
    base: String,
}

impl ControlClient {
    /// A client for the emulator at `base_url` whose CA is `ca_pem`.
    pub fn new(base_url: &str, ca_pem: &str) -> Result<Self, ClientError> {
        Ok(Self {
            http: https_client(ca_pem)?,
            base: base_url.trim_end_matches('/').to_owned(),
        })
    }

    /// The underlying HTTP client (trusts the emulator's CA).
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    async fn call<B: Serialize + ?Sized>(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&B>,
    ) -> Result<reqwest::Response, ClientError> {
        let mut req = self
            .http
            .request(method, format!("{}/_emulator{path}", self.base))
            .query(query);
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await?;
        if resp.status().is_success() {
            Ok(resp)
        } else {
            let status = resp.status();
            let body = resp.text().await.unwrap_or_default();
            Err(ClientError::Status { status, body })
        }
    }

    async fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, &str)],
    ) -> Result<T, ClientError> {
        Ok(self
            .call::<()>(Method::GET, path, query, None)
            .await?
            .json()
            .await?)
    }

    /// `GET /_emulator/state`.
    pub async fn state(&self) -> Result<StateView, ClientError> {
        self.get("/state", &[]).await
    }

    /// `GET /_emulator/requests[?since=SEQ]`.
    pub async fn requests(&self, since: Option<u64>) -> Result<RequestsView, ClientError> {
        match since {
            Some(s) => self.get("/requests", &[("since", &s.to_string())]).await,
            None => self.get("/requests", &[]).await,
        }
    }

    /// `DELETE /_emulator/requests`.
    pub async fn clear_requests(&self) -> Result<(), ClientError> {
        self.call::<()>(Method::DELETE, "/requests", &[], None)
            .await?;
        Ok(())
    }

    /// `POST /_emulator/faults`; returns the rule id.
    pub async fn add_fault(&self, rule: &FaultSpec) -> Result<u64, ClientError> {
        let v: Value = self
            .call(Method::POST, "/faults", &[], Some(rule))
            .await?
            .json()
            .await?;
        Ok(v.get("id").and_then(Value::as_u64).unwrap_or_default())
    }

    /// `GET /_emulator/faults`.
    pub async fn faults(&self) -> Result<Vec<FaultView>, ClientError> {
        self.get("/faults", &[]).await
    }

    /// `DELETE /_emulator/faults/{id}`.
    pub async fn delete_fault(&self, id: u64) -> Result<(), ClientError> {
        self.call::<()>(Method::DELETE, &format!("/faults/{id}"), &[], None)
            .await?;
        Ok(())
    }

    /// `DELETE /_emulator/faults`.
    pub async fn clear_faults(&self) -> Result<(), ClientError> {
        self.call::<()>(Method::DELETE, "/faults", &[], None)
            .await?;
        Ok(())
    }

    /// `GET /_emulator/resources`.
    pub async fn resources(&self) -> Result<Vec<ResourceView>, ClientError> {
        self.get("/resources", &[]).await
    }

    /// `PUT /_emulator/resources`: add or replace an underlying resource.
    pub async fn put_resource(&self, resource: &WorldResource) -> Result<(), ClientError> {
        self.call(Method::PUT, "/resources", &[], Some(resource))
            .await?;
        Ok(())
    }

    /// `DELETE /_emulator/resources?id=ARMID`.
    pub async fn delete_resource(&self, id: &str) -> Result<(), ClientError> {
        self.call::<()>(Method::DELETE, "/resources", &[("id", id)], None)
            .await?;
        Ok(())
    }

    /// `GET /_emulator/computes`.
    pub async fn computes(&self) -> Result<Vec<ComputeView>, ClientError> {
        self.get("/computes", &[]).await
    }

    /// `PUT /_emulator/computes`: a compute attached outside Kubernetes (Succeeded).
    pub async fn put_compute(
        &self,
        workspace: &str,
        name: &str,
        body: &Value,
    ) -> Result<(), ClientError> {
        let seed = ComputeSeed {
            workspace: workspace.to_owned(),
            name: name.to_owned(),
            body: body.clone(),
        };
        self.call(Method::PUT, "/computes", &[], Some(&seed))
            .await?;
        Ok(())
    }

    /// `DELETE /_emulator/computes?workspace=W&name=N` (as if removed in the portal).
    pub async fn delete_compute(&self, workspace: &str, name: &str) -> Result<(), ClientError> {
        self.call::<()>(
            Method::DELETE,
            "/computes",
            &[("workspace", workspace), ("name", name)],
            None,
        )
        .await?;
        Ok(())
    }

    /// `GET /_emulator/config`.
    pub async fn config(&self) -> Result<Settings, ClientError> {
        self.get("/config", &[]).await
    }

    /// `PUT /_emulator/config` (partial update); returns the new settings.
    pub async fn update_config(&self, patch: &SettingsPatch) -> Result<Settings, ClientError> {
        Ok(self
            .call(Method::PUT, "/config", &[], Some(patch))
            .await?
            .json()
            .await?)
    }

    /// `POST /_emulator/reset`.
    pub async fn reset(&self) -> Result<(), ClientError> {
        self.call::<()>(Method::POST, "/reset", &[], None).await?;
        Ok(())
    }

    /// Get an ARM access token with a client secret (`scope` defaults to ARM's `.default`).
    pub async fn token_with_secret(
        &self,
        tenant: &str,
        client_id: &str,
        secret: &str,
        scope: Option<&str>,
    ) -> Result<String, ClientError> {
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", client_id),
            ("client_secret", secret),
            (
                "scope",
                scope.unwrap_or("https://management.azure.com/.default"),
            ),
        ];
        let resp = self
            .http
            .post(format!("{}/{tenant}/oauth2/v2.0/token", self.base))
            .form(&form)
            .send()
            .await?;
        let status = resp.status();
        let v: Value = resp.json().await?;
        match v.get("access_token").and_then(Value::as_str) {
            Some(t) if status.is_success() => Ok(t.to_owned()),
            _ => Err(ClientError::Status {
                status,
                body: v.to_string(),
            }),
        }
    }

    /// A token for the default world's secret client.
    pub async fn default_token(&self) -> Result<String, ClientError> {
        self.token_with_secret(
            crate::config::DEFAULT_TENANT,
            crate::config::DEFAULT_SECRET_CLIENT_ID,
            crate::config::DEFAULT_CLIENT_SECRET,
            None,
        )
        .await
    }
}
