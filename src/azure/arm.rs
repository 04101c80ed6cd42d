//! A small hand-written ARM client for `Microsoft.MachineLearningServices` computes.
//!
//! What it guarantees:
//! - **Detach only.** [`ArmClient::detach_compute`] always sends
//!   `underlyingResourceAction=Detach`; nothing in this API can send `Delete`.
//! - **The bearer token stays home.** Async-operation URLs and `nextLink`s are called only if
//!   their origin is the ARM endpoint's; redirects are never followed.
//! - **ARM is a shared budget.** Every request first takes a token from the client-side bucket
//!   of its subscription and class; every answer's `x-ms-ratelimit-remaining-*` count is fed
//!   back to that bucket; a 429 is logged (info), pauses the bucket for `Retry-After` and is
//!   returned as [`ArmError::Throttled`] so the controller requeues (no worker sleeps for long).
//! - **GETs retry once, quickly,** on connection errors and 5xx; writes never retry here.
//! - Logs (debug; a 429 at info) carry the operation, status and `x-ms-request-id`; never
//!   URLs, headers or bodies.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use azure_core::credentials::TokenCredential;
use backon::{ConstantBuilder, Retryable};
use reqwest::header::{self, HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use url::Url;

use super::cloud::{AzureConfig, CloudEndpoints};
use super::error::{ArmError, AzureFault};
use super::headers::{self, BudgetScope, header_str, remaining_reports};
use super::models::{
    ComputeResource, ComputeSecrets, OperationState, OperationStatus,
    PaginatedComputeResourcesList, Workspace,
};
use super::throttle::{OpClass, Throttle};
use crate::ops::metrics::Metrics;

/// Delay before the single retry of a failed GET.
const GET_RETRY_DELAY: Duration = Duration::from_millis(300);
/// Upper bound on pages followed by one LIST (a `nextLink` loop must end).
const MAX_PAGES: usize = 1000;

/// The query value that detaches. There is deliberately no constant for the other value.
const UNDERLYING_RESOURCE_ACTION_DETACH: &str = "Detach";

/// Operation names used in metrics, logs and errors (the spec's operationIds).
mod op {
    pub const WORKSPACE_GET: &str = "Workspaces_Get";
    pub const LIST: &str = "Compute_List";
    pub const GET: &str = "Compute_Get";
    pub const PUT: &str = "Compute_CreateOrUpdate";
    pub const DELETE: &str = "Compute_Delete";
    pub const LIST_KEYS: &str = "Compute_ListKeys";
    pub const POLL: &str = "OperationStatus_Get";
}

/// Identifies an Azure ML workspace.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct WorkspaceRef {
    /// Subscription id (GUID).
    pub subscription_id: String,
    /// Resource group name.
    pub resource_group: String,
    /// Workspace name.
    pub workspace_name: String,
}

impl WorkspaceRef {
    /// A workspace reference.
    pub fn new(
        subscription_id: impl Into<String>,
        resource_group: impl Into<String>,
        workspace_name: impl Into<String>,
    ) -> Self {
        Self {
            subscription_id: subscription_id.into(),
            resource_group: resource_group.into(),
            workspace_name: workspace_name.into(),
        }
    }

    /// The workspace's ARM id.
    pub fn arm_id(&self) -> String {
        format!(
            "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.MachineLearningServices/workspaces/{}",
            self.subscription_id, self.resource_group, self.workspace_name
        )
    }

    /// The ARM id of compute `name` in this workspace.
    pub fn compute_id(&self, name: &str) -> String {
        format!("{}/computes/{name}", self.arm_id())
    }

    fn segments(&self) -> [&str; 7] {
        [
            "subscriptions",
            &self.subscription_id,
            "resourceGroups",
            &self.resource_group,
            "providers",
            "Microsoft.MachineLearningServices",
            "workspaces",
        ]
    }
}

impl fmt::Display for WorkspaceRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}/{}",
            self.subscription_id, self.resource_group, self.workspace_name
        )
    }
}

/// Result of a PUT (attach/update).
#[derive(Debug)]
pub enum Lro {
    /// Finished: the body's provisioningState is terminal (or absent). Check it for `Failed`.
    Done(Box<ComputeResource>),
    /// Still provisioning. Poll `operation_url` with [`ArmClient::poll_operation`] after
    /// `retry_after`; when `operation_url` is `None` (Azure gave none), poll
    /// [`ArmClient::get_compute`] until provisioningState is terminal.
    InProgress {
        /// The `Azure-AsyncOperation` (or `Location`) URL; persist it to resume after a restart.
        operation_url: Option<String>,
        /// `Retry-After`, if Azure sent one (it usually does not: FINDINGS §3).
        retry_after: Option<Duration>,
        /// The 201 body (`provisioningState: Creating`), when present.
        resource: Option<Box<ComputeResource>>,
    },
}

/// Result of a detach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DetachOutcome {
    /// 200: detached.
    Done,
    /// 204: there was nothing to detach.
    Absent,
    /// 202: detaching. Poll `operation_url` (or, when `None`, GET until 404).
    InProgress {
        /// The `Azure-AsyncOperation` (or `Location`) URL.
        operation_url: Option<String>,
        /// `Retry-After`, if sent.
        retry_after: Option<Duration>,
    },
}

/// Cheap-to-clone ARM client bound to one set of endpoints and one credential.
#[derive(Clone)]
pub struct ArmClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    endpoints: CloudEndpoints,
    scope: String,
    api_version: String,
    credential: Arc<dyn TokenCredential>,
    throttle: Arc<Throttle>,
    metrics: Option<Arc<Metrics>>,
}

impl fmt::Debug for ArmClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ArmClient")
            .field("arm_endpoint", &self.inner.endpoints.arm_endpoint.as_str())
            .field("api_version", &self.inner.api_version)
            .finish_non_exhaustive()
    }
}

/// A response read in full.
pub(super) struct RawResponse {
    pub(super) status: StatusCode,
    pub(super) headers: HeaderMap,
    pub(super) body: bytes::Bytes,
}

impl ArmClient {
    /// A client for `config`'s endpoints using `credential` for tokens.
    pub fn new(
        config: &AzureConfig,
        credential: Arc<dyn TokenCredential>,
        throttle: Arc<Throttle>,
        metrics: Option<Arc<Metrics>>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                http: config.http_client().clone(),
                endpoints: config.endpoints.clone(),
                scope: config.endpoints.arm_scope(),
                api_version: config.api_version.clone(),
                credential,
                throttle,
                metrics,
            }),
        }
    }

    /// The endpoints this client talks to.
    pub fn endpoints(&self) -> &CloudEndpoints {
        &self.inner.endpoints
    }

    /// The api-version sent.
    pub fn api_version(&self) -> &str {
        &self.inner.api_version
    }

    /// GET the workspace (404 → [`ArmError::NotFound`]).
    pub async fn get_workspace(&self, ws: &WorkspaceRef) -> Result<Workspace, ArmError> {
        let url = self.url(ws, &[], &[])?;
        let resp = self
            .execute(
                op::WORKSPACE_GET,
                Method::GET,
                url,
                &ws.subscription_id,
                None,
            )
            .await?;
        decode(op::WORKSPACE_GET, &resp.body)
    }

    /// LIST every compute of the workspace, following `nextLink`.
    pub async fn list_computes(&self, ws: &WorkspaceRef) -> Result<Vec<ComputeResource>, ArmError> {
        let mut url = self.url(ws, &["computes"], &[])?;
        let mut all = Vec::new();
        for _ in 0..MAX_PAGES {
            let resp = self
                .execute(op::LIST, Method::GET, url, &ws.subscription_id, None)
                .await?;
            let page: PaginatedComputeResourcesList = decode(op::LIST, &resp.body)?;
            all.extend(page.value);
            match page.next_link.filter(|l| !l.is_empty()) {
                Some(next) => url = self.same_origin_url(&next, true)?,
                None => return Ok(all),
            }
        }
        Err(ArmError::InvalidOperationUrl {
            reason: format!("{} returned more than {MAX_PAGES} pages", op::LIST),
        })
    }

    /// GET one compute; `None` on 404 (which ARM also answers when the workspace itself is
    /// gone: [`ArmClient::get_workspace`] tells the two apart).
    pub async fn get_compute(
        &self,
        ws: &WorkspaceRef,
        name: &str,
    ) -> Result<Option<ComputeResource>, ArmError> {
        let url = self.url(ws, &["computes", name], &[])?;
        match self
            .execute(op::GET, Method::GET, url, &ws.subscription_id, None)
            .await
        {
            Ok(resp) => decode(op::GET, &resp.body).map(Some),
            Err(ArmError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// PUT (attach or update) a compute. The body may carry secrets; it is never logged.
    pub async fn put_compute(
        &self,
        ws: &WorkspaceRef,
        name: &str,
        resource: &ComputeResource,
    ) -> Result<Lro, ArmError> {
        let url = self.url(ws, &["computes", name], &[])?;
        let body = serde_json::to_vec(resource).map_err(|source| ArmError::Decode {
            operation: op::PUT,
            source,
        })?;
        let resp = self
            .execute(op::PUT, Method::PUT, url, &ws.subscription_id, Some(body))
            .await?;
        let resource: Option<ComputeResource> = if resp.body.iter().all(u8::is_ascii_whitespace) {
            None
        } else {
            Some(decode(op::PUT, &resp.body)?)
        };
        let operation_url = self.operation_url(&resp.headers);
        let retry_after = retry_after(&resp.headers);
        let running = resource
            .as_ref()
            .and_then(|r| r.provisioning_state())
            .is_some_and(|s| !s.is_terminal());
        Ok(match resource {
            Some(resource) if operation_url.is_none() && !running => Lro::Done(Box::new(resource)),
            resource => Lro::InProgress {
                operation_url,
                retry_after,
                resource: resource.map(Box::new),
            },
        })
    }

    /// Detach a compute: `DELETE …?underlyingResourceAction=Detach`. The underlying resource
    /// is never deleted; there is no way to ask for that through this client.
    pub async fn detach_compute(
        &self,
        ws: &WorkspaceRef,
        name: &str,
    ) -> Result<DetachOutcome, ArmError> {
        let url = self.detach_url(ws, name)?;
        let resp = self
            .execute(op::DELETE, Method::DELETE, url, &ws.subscription_id, None)
            .await?;
        Ok(match resp.status {
            StatusCode::NO_CONTENT => DetachOutcome::Absent,
            StatusCode::ACCEPTED | StatusCode::CREATED => DetachOutcome::InProgress {
                operation_url: self.operation_url(&resp.headers),
                retry_after: retry_after(&resp.headers),
            },
            _ => DetachOutcome::Done,
        })
    }

    /// POST listKeys: the compute's secrets.
    pub async fn list_keys(
        &self,
        ws: &WorkspaceRef,
        name: &str,
    ) -> Result<ComputeSecrets, ArmError> {
        let url = self.url(ws, &["computes", name, "listKeys"], &[])?;
        let resp = self
            .execute(
                op::LIST_KEYS,
                Method::POST,
                url,
                &ws.subscription_id,
                Some(Vec::new()),
            )
            .await?;
        decode(op::LIST_KEYS, &resp.body)
    }

    /// GET an async-operation URL returned by a PUT or DELETE.
    ///
    /// Refuses URLs whose origin is not the ARM endpoint's (the bearer token would leak).
    /// Handles both styles: `Azure-AsyncOperation` (200 + status body) and `Location`
    /// (202 while running, 200/204 when done).
    pub async fn poll_operation(&self, operation_url: &str) -> Result<OperationStatus, ArmError> {
        let url = self.same_origin_url(operation_url, false)?;
        let subscription = subscription_of(&url).unwrap_or_default();
        let resp = self
            .execute(op::POLL, Method::GET, url, &subscription, None)
            .await?;
        let retry_after = retry_after(&resp.headers);
        let mut status = match resp.status {
            StatusCode::ACCEPTED => OperationStatus::with_state(OperationState::InProgress),
            StatusCode::NO_CONTENT => OperationStatus::with_state(OperationState::Succeeded),
            _ => parse_operation_body(&resp.body)?,
        };
        status.retry_after = retry_after;
        Ok(status)
    }

    /// The DELETE URL of a detach. The only place `underlyingResourceAction` is set.
    pub(super) fn detach_url(&self, ws: &WorkspaceRef, name: &str) -> Result<Url, ArmError> {
        self.url(
            ws,
            &["computes", name],
            &[(
                "underlyingResourceAction",
                UNDERLYING_RESOURCE_ACTION_DETACH,
            )],
        )
    }

    /// `{arm}/subscriptions/…/workspaces/{ws}/{extra…}?api-version=V&{query…}`.
    ///
    /// Names are percent-encoded, but `url` silently drops `.` and `..` segments and strips
    /// tabs and newlines (WHATWG URL rules), and an empty segment changes the path's shape:
    /// `computes/..` would address the workspace's compute list, `ws\t` the workspace `ws`.
    /// Such names are refused rather than sent somewhere else.
    fn url(
        &self,
        ws: &WorkspaceRef,
        extra: &[&str],
        query: &[(&str, &str)],
    ) -> Result<Url, ArmError> {
        let names = [
            ws.subscription_id.as_str(),
            &ws.resource_group,
            &ws.workspace_name,
        ];
        if let Some(bad) = names
            .into_iter()
            .chain(extra.iter().copied())
            .find(|s| matches!(*s, "" | "." | "..") || s.chars().any(char::is_control))
        {
            return Err(ArmError::InvalidOperationUrl {
                reason: format!("{bad:?} is not a valid name in an ARM resource path"),
            });
        }
        let mut url = self.inner.endpoints.arm_endpoint.clone();
        {
            // `arm_endpoint` is a validated https base URL, so it can be a base.
            if let Ok(mut segments) = url.path_segments_mut() {
                segments.pop_if_empty();
                segments.extend(ws.segments());
                segments.push(&ws.workspace_name);
                segments.extend(extra);
            }
        }
        {
            let mut pairs = url.query_pairs_mut();
            pairs.append_pair("api-version", &self.inner.api_version);
            for (k, v) in query {
                pairs.append_pair(k, v);
            }
        }
        Ok(url)
    }

    /// Parses a URL Azure gave us and checks it points at the ARM endpoint.
    pub(super) fn same_origin_url(
        &self,
        raw: &str,
        add_api_version: bool,
    ) -> Result<Url, ArmError> {
        let url = Url::parse(raw).map_err(|_| ArmError::InvalidOperationUrl {
            reason: "not a valid absolute URL".to_string(),
        })?;
        if url.origin() != self.inner.endpoints.arm_endpoint.origin() {
            return Err(ArmError::InvalidOperationUrl {
                reason: format!(
                    "origin {} differs from the ARM endpoint {}",
                    url.origin().ascii_serialization(),
                    self.inner
                        .endpoints
                        .arm_endpoint
                        .origin()
                        .ascii_serialization()
                ),
            });
        }
        let mut url = url;
        if add_api_version && !url.query_pairs().any(|(k, _)| k == "api-version") {
            url.query_pairs_mut()
                .append_pair("api-version", &self.inner.api_version);
        }
        Ok(url)
    }

    /// The async-operation URL of a 201/202: `Azure-AsyncOperation`, else `Location`; only if
    /// it is on the ARM endpoint (otherwise the caller falls back to polling with GET).
    fn operation_url(&self, headers: &HeaderMap) -> Option<String> {
        let raw = header_str(headers, "azure-asyncoperation")
            .or_else(|| header_str(headers, "location"))?;
        match self.same_origin_url(raw, false) {
            Ok(url) => Some(url.to_string()),
            Err(err) => {
                tracing::warn!(error = %err, "ignoring async-operation URL; falling back to GET polling");
                None
            }
        }
    }

    /// Sends one logical request: GETs get one quick retry on transport errors and 5xx.
    pub(super) async fn execute(
        &self,
        operation: &'static str,
        method: Method,
        url: Url,
        subscription: &str,
        body: Option<Vec<u8>>,
    ) -> Result<RawResponse, ArmError> {
        let class = match method {
            Method::GET | Method::HEAD => OpClass::Read,
            Method::DELETE => OpClass::Delete,
            _ => OpClass::Write,
        };
        if class == OpClass::Read {
            let attempt = || {
                self.send_once(
                    operation,
                    method.clone(),
                    url.clone(),
                    subscription,
                    class,
                    None,
                )
            };
            attempt
                .retry(
                    ConstantBuilder::new()
                        .with_delay(GET_RETRY_DELAY)
                        .with_max_times(1),
                )
                .when(|e: &ArmError| {
                    matches!(
                        e,
                        ArmError::Transport { .. }
                            | ArmError::Server {
                                retry_after: None,
                                ..
                            }
                    )
                })
                .await
        } else {
            self.send_once(operation, method, url, subscription, class, body)
                .await
        }
    }

    async fn send_once(
        &self,
        operation: &'static str,
        method: Method,
        url: Url,
        subscription: &str,
        class: OpClass,
        body: Option<Vec<u8>>,
    ) -> Result<RawResponse, ArmError> {
        let inner = &self.inner;
        // The ticket keeps this request counted as outstanding until its answer is in (or it
        // is dropped: transport error, cancelled reconcile), see `Throttle::admit_at`.
        let (waited, ticket) = match inner.throttle.admit(subscription, class) {
            Ok(admitted) => admitted,
            Err(wait) => {
                self.record_throttled(class);
                tracing::debug!(
                    operation,
                    %class,
                    subscription,
                    wait_ms = wait.as_millis() as u64,
                    "client-side ARM budget spent; not sending"
                );
                return Err(ArmError::Throttled {
                    operation,
                    retry_after: wait,
                    client_side: true,
                });
            }
        };
        if !waited.is_zero() {
            tokio::time::sleep(waited).await;
        }

        let token = inner
            .credential
            .get_token(&[inner.scope.as_str()], None)
            .await
            .map_err(|source| ArmError::Credential { operation, source })?;
        let mut auth =
            HeaderValue::from_str(&format!("Bearer {}", token.token.secret())).map_err(|_| {
                ArmError::Credential {
                    operation,
                    source: azure_core::Error::with_message(
                        azure_core::error::ErrorKind::Credential,
                        "the access token is not a valid header value",
                    ),
                }
            })?;
        auth.set_sensitive(true);

        let mut request = inner
            .http
            .request(method.clone(), url)
            .header(header::AUTHORIZATION, auth)
            .header(header::ACCEPT, "application/json");
        if let Some(body) = body {
            request = request
                .header(header::CONTENT_TYPE, "application/json")
                .body(body);
        }

        let started = Instant::now();
        let response = match request.send().await {
            Ok(r) => r,
            Err(e) => {
                self.record(operation, None, started.elapsed());
                // Strip the URL: signed operation URLs carry signatures.
                let e = e.without_url();
                tracing::debug!(operation, %method, error = %e, "ARM request failed");
                return Err(ArmError::Transport {
                    operation,
                    source: e,
                });
            }
        };
        let status = response.status();
        let headers = response.headers().clone();
        // ARM counts every answered request, errors included: feed its count back first.
        let reports = remaining_reports(&headers);
        self.record_remaining(&reports);
        ticket.answered(&reports);
        let body = match response.bytes().await {
            Ok(b) => b,
            Err(e) => {
                self.record(operation, Some(status.as_u16()), started.elapsed());
                return Err(ArmError::Transport {
                    operation,
                    source: e.without_url(),
                });
            }
        };
        let elapsed = started.elapsed();
        self.record(operation, Some(status.as_u16()), elapsed);
        tracing::debug!(
            operation,
            %method,
            status = status.as_u16(),
            request_id = header_str(&headers, "x-ms-request-id").unwrap_or("-"),
            correlation_id = header_str(&headers, "x-ms-correlation-request-id").unwrap_or("-"),
            elapsed_ms = elapsed.as_millis() as u64,
            "ARM call"
        );

        if status.is_success() {
            return Ok(RawResponse {
                status,
                headers,
                body,
            });
        }
        let retry_after = retry_after(&headers);
        let err = ArmError::from_status(operation, status.as_u16(), &body, retry_after);
        if let ArmError::Throttled { retry_after, .. } = &err {
            // Info, not debug: a 429 means our budget and ARM's disagree, which an operator
            // wants to see without turning on debug logs. No URL (signed) and no headers.
            tracing::info!(
                operation,
                %class,
                subscription,
                retry_after_secs = retry_after.as_secs_f64(),
                remaining = reports
                    .iter()
                    .find(|r| r.class == class && r.scope == BudgetScope::Principal)
                    .map(|r| r.remaining),
                // Some RPs use 429 for transient conflicts (CONTRACT §9): the code tells.
                code = %AzureFault::from_body(&body).code,
                "ARM throttled the request (429); pausing this subscription's {class} budget"
            );
            inner
                .throttle
                .on_throttled(subscription, class, *retry_after);
            self.record_throttled(class);
        }
        Err(err)
    }

    fn record(&self, operation: &str, status: Option<u16>, elapsed: Duration) {
        if let Some(m) = &self.inner.metrics {
            m.arm_request(operation, status, elapsed);
        }
    }

    fn record_remaining(&self, reports: &[headers::RemainingReport]) {
        if let Some(m) = &self.inner.metrics {
            for r in reports.iter().filter(|r| r.scope == BudgetScope::Principal) {
                m.arm_ratelimit_remaining(r.class.as_str(), r.remaining);
            }
        }
    }

    fn record_throttled(&self, class: OpClass) {
        if let Some(m) = &self.inner.metrics {
            m.arm_throttled(class.as_str());
        }
    }
}

pub(super) fn decode<T: DeserializeOwned>(
    operation: &'static str,
    body: &[u8],
) -> Result<T, ArmError> {
    serde_json::from_slice(body).map_err(|source| ArmError::Decode { operation, source })
}

/// An `Azure-AsyncOperation` body has `status`; a `Location` final result (the resource, or
/// nothing) does not, and means the operation finished.
pub(super) fn parse_operation_body(body: &[u8]) -> Result<OperationStatus, ArmError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(OperationStatus::with_state(OperationState::Succeeded));
    }
    let value: serde_json::Value = decode(op::POLL, body)?;
    if value.get("status").is_some_and(|s| s.is_string()) {
        serde_json::from_value(value).map_err(|source| ArmError::Decode {
            operation: op::POLL,
            source,
        })
    } else {
        Ok(OperationStatus::with_state(OperationState::Succeeded))
    }
}

/// `Retry-After` of a response, relative to the wall clock (the HTTP-date form needs it).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers::retry_after(headers, SystemTime::now())
}

/// The subscription id in an ARM URL path (`/subscriptions/{id}/…`), for the throttle key.
fn subscription_of(url: &Url) -> Option<String> {
    let mut segments = url.path_segments()?;
    while let Some(segment) = segments.next() {
        if segment.eq_ignore_ascii_case("subscriptions") {
            return segments.next().map(str::to_string);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::azure::cloud::{AzureOptions, Cloud, EndpointOverrides};
    use azure_core::credentials::{AccessToken, TokenRequestOptions};

    #[derive(Debug)]
    struct NoCredential;

    #[async_trait::async_trait]
    impl TokenCredential for NoCredential {
        async fn get_token(
            &self,
            _: &[&str],
            _: Option<TokenRequestOptions<'_>>,
        ) -> azure_core::Result<AccessToken> {
            Err(azure_core::Error::with_message(
                azure_core::error::ErrorKind::Credential,
                "none",
            ))
        }
    }

    fn client(arm: &str) -> ArmClient {
        let config = AzureConfig::from_parts(
            AzureOptions {
                cloud: Cloud::Custom,
                overrides: EndpointOverrides {
                    arm_endpoint: Some(arm.into()),
                    arm_audience: None,
                    authority_host: Some("https://login.example".into()),
                },
                ..Default::default()
            },
            None,
        )
        .unwrap();
        ArmClient::new(
            &config,
            Arc::new(NoCredential),
            Arc::new(Throttle::default()),
            None,
        )
    }

    fn ws() -> WorkspaceRef {
        WorkspaceRef::new(
            "00000000-0000-0000-0000-000000000000",
            "ml-rg",
            "prod-workspace",
        )
    }

    #[test]
    fn urls_are_built_from_the_endpoint() {
        let c = client("https://127.0.0.1:8443");
        let url = c.detach_url(&ws(), "gpu-dsvm").unwrap();
        assert_eq!(
            url.as_str(),
            "https://127.0.0.1:8443/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/ml-rg/providers/Microsoft.MachineLearningServices/workspaces/prod-workspace/computes/gpu-dsvm?api-version=2026-07-01&underlyingResourceAction=Detach"
        );
        // A path prefix on the endpoint (Azure Stack, proxies) is kept; odd names are escaped.
        let c = client("https://arm.local/prefix/");
        let url = c.url(&ws(), &["computes", "a/b"], &[]).unwrap();
        assert!(url.path().starts_with("/prefix/subscriptions/"), "{url}");
        assert!(url.path().ends_with("/computes/a%2Fb"), "{url}");
        assert_eq!(
            ws().compute_id("x"),
            format!("{}/computes/x", ws().arm_id())
        );
        // `url` would drop these segments and address something else: refused.
        for bad in ["", ".", ".."] {
            let err = c.detach_url(&ws(), bad).unwrap_err();
            assert!(err.is_permanent(), "{bad:?}");
            let mut odd = ws();
            odd.workspace_name = bad.into();
            assert!(c.url(&odd, &[], &[]).is_err(), "{bad:?}");
        }
        assert!(c.detach_url(&ws(), "tab\there").is_err());
        assert!(c.url(&ws(), &["computes", "..."], &[]).is_ok());
    }

    #[test]
    fn foreign_operation_urls_are_refused() {
        let c = client("https://127.0.0.1:8443");
        for bad in [
            "https://evil.example/subscriptions/x/op",
            "http://127.0.0.1:8443/subscriptions/x/op",
            "https://127.0.0.1:9999/subscriptions/x/op",
            "/relative/path",
        ] {
            let err = c.same_origin_url(bad, false).unwrap_err();
            assert!(matches!(err, ArmError::InvalidOperationUrl { .. }), "{bad}");
            assert!(err.is_permanent());
        }
        let ok = c
            .same_origin_url("https://127.0.0.1:8443/subscriptions/s/providers/p/computeOperationsStatus/1?api-version=v&t=1", false)
            .unwrap();
        assert_eq!(subscription_of(&ok).as_deref(), Some("s"));
        // nextLinks without an api-version get ours.
        let next = c
            .same_origin_url("https://127.0.0.1:8443/x?$skip=abc", true)
            .unwrap();
        assert!(next.query().unwrap().contains("api-version=2026-07-01"));
    }

    #[test]
    fn operation_urls_prefer_azure_async_operation() {
        let c = client("https://127.0.0.1:8443");
        let mut headers = HeaderMap::new();
        headers.insert(
            "location",
            HeaderValue::from_static("https://127.0.0.1:8443/loc"),
        );
        assert_eq!(
            c.operation_url(&headers).as_deref(),
            Some("https://127.0.0.1:8443/loc")
        );
        headers.insert(
            "azure-asyncoperation",
            HeaderValue::from_static("https://127.0.0.1:8443/async"),
        );
        assert_eq!(
            c.operation_url(&headers).as_deref(),
            Some("https://127.0.0.1:8443/async")
        );
        headers.insert(
            "azure-asyncoperation",
            HeaderValue::from_static("https://elsewhere/async"),
        );
        assert_eq!(c.operation_url(&headers), None);
    }

    #[test]
    fn operation_bodies() {
        assert_eq!(
            parse_operation_body(b"").unwrap().status,
            OperationState::Succeeded
        );
        assert_eq!(
            parse_operation_body(br#"{"status":"InProgress"}"#)
                .unwrap()
                .status,
            OperationState::InProgress
        );
        assert_eq!(
            parse_operation_body(br#"{"id":"x","properties":{"computeType":"VirtualMachine"}}"#)
                .unwrap()
                .status,
            OperationState::Succeeded
        );
        assert!(parse_operation_body(b"<html>").is_err());
    }

    #[tokio::test]
    async fn credential_failures_are_typed_and_send_nothing() {
        let c = client("https://127.0.0.1:1");
        let err = c.get_compute(&ws(), "x").await.unwrap_err();
        assert!(err.is_credential_problem(), "{err}");
        assert_eq!(err.metric_label(), "credential");
    }
}
