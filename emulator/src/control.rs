//! The control API under `/_emulator/` (JSON, camelCase). Not authenticated, not logged,
//! not throttled, not subject to fault rules.

use std::collections::BTreeMap;

use axum::body::Body;
use axum::response::Response;
use chrono::Utc;
use http::request::Parts;
use http::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::app::App;
use crate::compute;
use crate::config::{ResourceKind, Settings, SettingsPatch, WorldResource};
use crate::faults::{FaultRule, FaultSpec};
use crate::response::{empty_response, json_response};
use crate::state::{DeletedResource, LogEntry};

/// A compute as shown by `GET /_emulator/state`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ComputeView {
    /// Workspace name.
    pub workspace: String,
    /// Compute name.
    pub name: String,
    /// `properties.computeType`.
    pub compute_type: String,
    /// Current `provisioningState`.
    pub provisioning_state: String,
    /// `properties.resourceId`.
    pub resource_id: Option<String>,
    /// The body a GET answers (no credentials).
    pub body: Value,
}

/// A world resource as shown by the control API (credentials reduced to flags).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ResourceView {
    /// ARM id.
    pub id: String,
    /// Kind derived from the id.
    pub kind: String,
    /// SSH address.
    pub address: Option<String>,
    /// Accepted SSH user.
    pub username: Option<String>,
    /// Databricks URL.
    pub workspace_url: Option<String>,
    /// A password is accepted.
    pub has_password: bool,
    /// A private key is accepted.
    pub has_private_key: bool,
    /// An access token is accepted.
    pub has_access_token: bool,
}

impl From<&WorldResource> for ResourceView {
    fn from(r: &WorldResource) -> Self {
        Self {
            id: r.id.clone(),
            kind: format!("{:?}", ResourceKind::of_id(&r.id)),
            address: r.address.clone(),
            username: r.username.clone(),
            workspace_url: r.workspace_url.clone(),
            has_password: r.password.is_some(),
            has_private_key: r.private_key.is_some(),
            has_access_token: r.access_token.is_some(),
        }
    }
}

/// `GET /_emulator/state`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StateView {
    /// All computes.
    pub computes: Vec<ComputeView>,
    /// Underlying resources that exist.
    pub resources: Vec<ResourceView>,
    /// Resources deleted through `underlyingResourceAction=Delete`.
    pub deleted_resources: Vec<DeletedResourceView>,
    /// Current settings.
    pub config: Settings,
}

/// A deletion record (see [`DeletedResource`]).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DeletedResourceView {
    /// ARM id of the deleted resource.
    pub id: String,
    /// When.
    pub deleted_at: String,
    /// The compute whose DELETE removed it.
    pub compute: String,
    /// The compute's workspace.
    pub workspace: String,
}

impl From<&DeletedResource> for DeletedResourceView {
    fn from(d: &DeletedResource) -> Self {
        Self {
            id: d.id.clone(),
            deleted_at: d.deleted_at.clone(),
            compute: d.compute.clone(),
            workspace: d.workspace.clone(),
        }
    }
}

/// `GET /_emulator/requests`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RequestsView {
    /// Requests logged since the last clear.
    pub total: u64,
    /// Counts by `"<operationId> <status>"`.
    pub counts: BTreeMap<String, u64>,
    /// Entries (after `since` when given).
    pub entries: Vec<LogEntry>,
}

/// A fault rule as listed by `GET /_emulator/faults`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FaultView {
    /// Rule id.
    pub id: u64,
    /// Remaining firings (None: unlimited).
    pub remaining: Option<u64>,
    /// The rule.
    pub rule: FaultSpec,
}

/// `PUT /_emulator/computes` body.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ComputeSeed {
    /// Workspace name or ARM id.
    pub workspace: String,
    /// Compute name.
    pub name: String,
    /// ComputeResource body.
    pub body: Value,
}

fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    json_response(
        status,
        &json!({"error": {"code": code, "message": message.into()}}),
    )
}

fn query_param(parts: &Parts, name: &str) -> Option<String> {
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_str(parts.uri.query().unwrap_or("")).unwrap_or_default();
    pairs.into_iter().find(|(k, _)| k == name).map(|(_, v)| v)
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Box<Response>> {
    serde_json::from_slice(body).map_err(|e| {
        Box::new(error(
            StatusCode::BAD_REQUEST,
            "InvalidRequestContent",
            e.to_string(),
        ))
    })
}

/// Handle `/_emulator/*`.
pub async fn handle(app: &App, parts: &Parts, body: Body) -> Response {
    let bytes = match axum::body::to_bytes(body, 16 * 1024 * 1024).await {
        Ok(b) => b,
        Err(_) => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "RequestEntityTooLarge",
                "body too large",
            );
        }
    };
    let path = parts.uri.path().trim_end_matches('/');
    let sub = path.strip_prefix("/_emulator").unwrap_or("");
    match (&parts.method, sub) {
        (&Method::GET, "/state") => state(app),
        (&Method::GET, "/healthz") => json_response(StatusCode::OK, &json!({"status": "ok"})),
        (&Method::GET, "/ca.pem") => {
            let mut r = Response::new(Body::from(app.ca_pem.clone()));
            r.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/x-pem-file"),
            );
            r
        }
        (&Method::GET, "/requests") => requests(app, parts),
        (&Method::DELETE, "/requests") => {
            app.lock().log.clear();
            empty_response(StatusCode::NO_CONTENT)
        }
        (&Method::GET, "/faults") => {
            let inner = app.lock();
            let list: Vec<FaultView> = inner
                .faults
                .iter()
                .map(|f| FaultView {
                    id: f.id,
                    remaining: f.remaining(),
                    rule: f.spec.clone(),
                })
                .collect();
            json_response(StatusCode::OK, &json!(list))
        }
        (&Method::POST, "/faults") => add_fault(app, &bytes),
        (&Method::DELETE, "/faults") => {
            app.lock().faults.clear();
            empty_response(StatusCode::NO_CONTENT)
        }
        (&Method::DELETE, p) if p.starts_with("/faults/") => {
            let id = p.trim_start_matches("/faults/").parse::<u64>().ok();
            let mut inner = app.lock();
            let before = inner.faults.len();
            inner.faults.retain(|f| Some(f.id) != id);
            if inner.faults.len() == before {
                error(StatusCode::NOT_FOUND, "NotFound", "no such fault rule")
            } else {
                empty_response(StatusCode::NO_CONTENT)
            }
        }
        (&Method::GET, "/resources") => {
            let inner = app.lock();
            let list: Vec<ResourceView> =
                inner.resources.values().map(ResourceView::from).collect();
            json_response(StatusCode::OK, &json!(list))
        }
        (&Method::PUT, "/resources") => {
            let r: WorldResource = match parse(&bytes) {
                Ok(r) => r,
                Err(e) => return *e,
            };
            if !r.id.starts_with("/subscriptions/")
                || !r.id.to_ascii_lowercase().contains("/providers/")
            {
                return error(
                    StatusCode::BAD_REQUEST,
                    "InvalidResourceId",
                    "id must be an ARM resource id",
                );
            }
            let view = ResourceView::from(&r);
            app.lock().resources.insert(r.id.to_ascii_lowercase(), r);
            json_response(StatusCode::OK, &json!(view))
        }
        (&Method::DELETE, "/resources") => {
            let Some(id) = query_param(parts, "id") else {
                return error(
                    StatusCode::BAD_REQUEST,
                    "MissingParameter",
                    "query parameter 'id' is required",
                );
            };
            match app.lock().resources.remove(&id.to_ascii_lowercase()) {
                Some(_) => empty_response(StatusCode::NO_CONTENT),
                None => error(
                    StatusCode::NOT_FOUND,
                    "NotFound",
                    format!("no resource '{id}'"),
                ),
            }
        }
        (&Method::GET, "/computes") => json_response(StatusCode::OK, &json!(compute_views(app))),
        (&Method::PUT, "/computes") => {
            let seed: ComputeSeed = match parse(&bytes) {
                Ok(s) => s,
                Err(e) => return *e,
            };
            let mut inner = app.lock();
            match crate::arm::seed_compute(
                &mut inner,
                &app.specs,
                &seed.workspace,
                &seed.name,
                &seed.body,
                Utc::now(),
            ) {
                Ok(()) => empty_response(StatusCode::NO_CONTENT),
                Err(e) => json_response(e.status, &e.body()),
            }
        }
        (&Method::DELETE, "/computes") => {
            let (Some(ws), Some(name)) =
                (query_param(parts, "workspace"), query_param(parts, "name"))
            else {
                return error(
                    StatusCode::BAD_REQUEST,
                    "MissingParameter",
                    "query parameters 'workspace' and 'name' are required",
                );
            };
            let mut inner = app.lock();
            let Some(wi) = inner.workspace_by_ref(&ws) else {
                return error(
                    StatusCode::NOT_FOUND,
                    "NotFound",
                    format!("no workspace '{ws}'"),
                );
            };
            let key = inner.compute_key(wi, &name);
            inner.pending_deletes.retain(|k| *k != key);
            match inner.computes.remove(&key) {
                Some(_) => empty_response(StatusCode::NO_CONTENT),
                None => error(
                    StatusCode::NOT_FOUND,
                    "NotFound",
                    format!("no compute '{name}'"),
                ),
            }
        }
        (&Method::GET, "/config") => json_response(StatusCode::OK, &json!(app.lock().settings)),
        (&Method::PUT, "/config") => {
            let patch: SettingsPatch = match parse(&bytes) {
                Ok(p) => p,
                Err(e) => return *e,
            };
            let mut inner = app.lock();
            inner.settings.apply(&patch);
            if patch.throttling.is_some() {
                inner.throttle.reset();
            }
            json_response(StatusCode::OK, &json!(inner.settings))
        }
        (&Method::POST, "/reset") => {
            let fresh = App::fresh_inner(&app.initial, &app.specs);
            *app.lock() = fresh;
            empty_response(StatusCode::NO_CONTENT)
        }
        _ => error(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("no control endpoint {} {}", parts.method, parts.uri.path()),
        ),
    }
}

fn compute_views(app: &App) -> Vec<ComputeView> {
    let mut inner = app.lock();
    let now = Utc::now();
    inner.settle(now);
    inner
        .computes
        .values()
        .filter_map(|c| {
            let ws = inner.workspaces.get(c.workspace)?;
            Some(ComputeView {
                workspace: ws.name.clone(),
                name: c.name.clone(),
                compute_type: c.compute_type.clone(),
                provisioning_state: c.provisioning_state(now).to_owned(),
                resource_id: c.resource_id.clone(),
                body: compute::compute_body(c, ws, &inner.tenant_id, now),
            })
        })
        .collect()
}

fn state(app: &App) -> Response {
    let computes = compute_views(app);
    let inner = app.lock();
    let view = StateView {
        computes,
        resources: inner.resources.values().map(ResourceView::from).collect(),
        deleted_resources: inner
            .deleted_resources
            .iter()
            .map(DeletedResourceView::from)
            .collect(),
        config: inner.settings.clone(),
    };
    json_response(StatusCode::OK, &json!(view))
}

fn requests(app: &App, parts: &Parts) -> Response {
    let since = match query_param(parts, "since").map(|s| s.parse::<u64>()) {
        None => 0,
        Some(Ok(n)) => n,
        Some(Err(_)) => {
            return error(
                StatusCode::BAD_REQUEST,
                "InvalidParameter",
                "since must be a number",
            );
        }
    };
    let inner = app.lock();
    let view = RequestsView {
        total: inner.log.total,
        counts: inner.log.counts.clone(),
        entries: inner
            .log
            .entries
            .iter()
            .filter(|e| e.seq > since)
            .cloned()
            .collect(),
    };
    json_response(StatusCode::OK, &json!(view))
}

fn add_fault(app: &App, body: &[u8]) -> Response {
    let spec: FaultSpec = match parse(body) {
        Ok(s) => s,
        Err(e) => return *e,
    };
    let mut inner = app.lock();
    let id = inner.next_fault_id;
    match FaultRule::new(id, spec) {
        Ok(rule) => {
            inner.next_fault_id += 1;
            inner.faults.push(rule);
            json_response(StatusCode::CREATED, &json!({ "id": id }))
        }
        Err(e) => error(StatusCode::BAD_REQUEST, "InvalidFaultRule", e.to_string()),
    }
}
