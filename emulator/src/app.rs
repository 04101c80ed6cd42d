//! Request pipeline: routing, fault injection, body limits, request logging.

use std::sync::{Arc, Mutex, MutexGuard};

use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use http::request::Parts;
use http::{HeaderValue, Method, StatusCode};
use ring::hmac;

use crate::config::EmulatorConfig;
use crate::response::{ArmError, DropConnection, Principal, code_for_status, empty_response};
use crate::state::{Inner, LogEntry};
use crate::validate::Specs;
use crate::{arm, control, entra, faults};

/// Shared application state.
pub struct App {
    inner: Mutex<Inner>,
    /// The configuration the emulator started with (`reset` returns to it).
    pub initial: EmulatorConfig,
    /// Access-token signing key (stable across resets).
    pub key: hmac::Key,
    /// OpenAPI documents.
    pub specs: Specs,
    /// `https://host:port` of this emulator.
    pub base_url: String,
    /// CA certificate (PEM), served at `/_emulator/ca.pem`.
    pub ca_pem: String,
}

impl App {
    /// Build the state for a configuration.
    pub fn new(initial: EmulatorConfig, specs: Specs, base_url: String, ca_pem: String) -> Self {
        let rng = ring::rand::SystemRandom::new();
        let key = hmac::Key::generate(hmac::HMAC_SHA256, &rng)
            .unwrap_or_else(|_| hmac::Key::new(hmac::HMAC_SHA256, uuid::Uuid::new_v4().as_bytes()));
        let inner = Self::fresh_inner(&initial, &specs);
        Self {
            inner: Mutex::new(inner),
            initial,
            key,
            specs,
            base_url,
            ca_pem,
        }
    }

    /// The world of the initial configuration, with its seed computes.
    pub fn fresh_inner(cfg: &EmulatorConfig, specs: &Specs) -> Inner {
        let mut inner = Inner::new(cfg);
        let now = Utc::now();
        for seed in &cfg.computes {
            if let Err(e) = arm::seed_compute(
                &mut inner,
                specs,
                &seed.workspace,
                &seed.name,
                &seed.body,
                now,
            ) {
                tracing::warn!(compute = %seed.name, error = %e.message, "ignoring invalid seed compute");
            }
        }
        inner
    }

    /// Lock the world. A poisoned lock is recovered: every mutation keeps the state consistent
    /// before it could panic, and handlers do not panic.
    pub fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Where a request goes.
#[derive(Clone, Debug, PartialEq)]
pub enum Route {
    /// Entra token endpoint.
    Token {
        /// Tenant path segment.
        tenant: String,
    },
    /// IMDS-style managed identity endpoint.
    Imds,
    /// An ARM request.
    Arm(arm::ArmRoute),
    /// Nothing here.
    NotFound,
}

fn decode(seg: &str) -> String {
    percent_encoding::percent_decode_str(seg)
        .decode_utf8_lossy()
        .into_owned()
}

impl Route {
    /// Classify a request path (fixed segments are case-insensitive, like ARM).
    pub fn classify(path: &str) -> Self {
        let segs: Vec<String> = path.trim_matches('/').split('/').map(decode).collect();
        let s: Vec<&str> = segs.iter().map(String::as_str).collect();
        let eq = |a: &str, b: &str| a.eq_ignore_ascii_case(b);
        match s.as_slice() {
            [tenant, o, v, t] if eq(o, "oauth2") && eq(v, "v2.0") && eq(t, "token") => {
                Route::Token {
                    tenant: (*tenant).to_owned(),
                }
            }
            [m, i, o, t]
                if eq(m, "metadata") && eq(i, "identity") && eq(o, "oauth2") && eq(t, "token") =>
            {
                Route::Imds
            }
            [first, ..] if eq(first, "subscriptions") => arm::ArmRoute::classify(&s)
                .map(Route::Arm)
                .unwrap_or(Route::NotFound),
            _ => Route::NotFound,
        }
    }

    /// Operation id for logs and counts.
    pub fn operation(&self, method: &Method) -> &'static str {
        match self {
            Route::Token { .. } => "Token",
            Route::Imds => "ManagedIdentity_Token",
            Route::Arm(r) => r.operation(method),
            Route::NotFound => "NotFound",
        }
    }
}

/// The single axum handler: everything but `/_emulator/*` goes through faults, limits and the log.
pub async fn handle(State(app): State<Arc<App>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_owned();
    if path == "/_emulator" || path.starts_with("/_emulator/") {
        return control::handle(&app, &parts, body).await;
    }
    let route = Route::classify(&path);
    let operation = route.operation(&parts.method);
    let fault = {
        let mut inner = app.lock();
        faults::trigger(
            &mut inner.faults,
            parts.method.as_str(),
            &path,
            fastrand::f64,
        )
    };
    let mut injected = None;
    let mut resp = 'answer: {
        if let Some(f) = fault {
            if let Some(ms) = f.latency_ms {
                tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
            }
            if f.drop {
                injected = Some(f.rule);
                let mut r = empty_response(StatusCode::OK);
                r.extensions_mut().insert(DropConnection);
                break 'answer r;
            }
            if let Some(status) = f.status {
                injected = Some(f.rule);
                let status =
                    StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                let code = f.code.unwrap_or_else(|| code_for_status(status).to_owned());
                let mut e = ArmError::new(status, code, "Injected by an emulator fault rule.");
                e.retry_after = f.retry_after;
                break 'answer e.into_response();
            }
        }
        let limit = app.lock().settings.max_body_bytes;
        let bytes = match axum::body::to_bytes(body, limit).await {
            Ok(b) => b,
            Err(_) => {
                break 'answer ArmError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "RequestEntityTooLarge",
                    format!("The request body is larger than the limit of {limit} bytes."),
                )
                .into_response();
            }
        };
        process(&app, &parts, &route, &bytes)
    };
    finish(&app, &parts, operation, injected, &mut resp);
    resp
}

fn process(app: &App, parts: &Parts, route: &Route, body: &[u8]) -> Response {
    let host = host_of(parts);
    let inner = app.lock();
    let origin = entra::Origin {
        base_url: &app.base_url,
        host: host.as_deref(),
        key: &app.key,
        extra_audiences: &app.initial.arm_audiences,
    };
    match route {
        Route::Token { tenant } => {
            if parts.method != Method::POST {
                return entra::entra_error(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "invalid_request",
                    900561,
                    "The endpoint only accepts POST requests.",
                );
            }
            let (mut resp, principal) = entra::token(&inner, &origin, tenant, &parts.headers, body);
            if let Some(p) = principal {
                resp.extensions_mut().insert(Principal(p));
            }
            resp
        }
        Route::Imds => {
            let (mut resp, principal) =
                entra::imds_token(&inner, &origin, &parts.headers, parts.uri.query());
            if let Some(p) = principal {
                resp.extensions_mut().insert(Principal(p));
            }
            resp
        }
        Route::Arm(r) => arm::handle(app, inner, &origin, parts, r, body),
        Route::NotFound => ArmError::new(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("The requested path '{}' was not found.", parts.uri.path()),
        )
        .into_response(),
    }
}

/// Host (with port) the client addressed: `Host` header or the HTTP/2 authority.
pub fn host_of(parts: &Parts) -> Option<String> {
    parts
        .headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
        .or_else(|| parts.uri.authority().map(|a| a.as_str().to_owned()))
}

/// Add the headers every Azure answer carries and log the request.
fn finish(app: &App, parts: &Parts, operation: &str, fault: Option<u64>, resp: &mut Response) {
    let dropped = resp.extensions().get::<DropConnection>().is_some();
    if !dropped {
        let h = resp.headers_mut();
        let request_id = uuid::Uuid::new_v4().to_string();
        let correlation = parts
            .headers
            .get("x-ms-correlation-request-id")
            .cloned()
            .unwrap_or_else(|| {
                HeaderValue::from_str(&request_id).unwrap_or(HeaderValue::from_static("0"))
            });
        if let Ok(v) = HeaderValue::from_str(&request_id) {
            h.insert("x-ms-request-id", v.clone());
            h.insert("x-ms-routing-request-id", v);
        }
        h.insert("x-ms-correlation-request-id", correlation);
        if let Some(v) = parts.headers.get("x-ms-client-request-id") {
            h.insert("x-ms-client-request-id", v.clone());
        }
        h.insert("cache-control", HeaderValue::from_static("no-cache"));
        h.insert("pragma", HeaderValue::from_static("no-cache"));
        h.insert("expires", HeaderValue::from_static("-1"));
        h.insert(
            "x-content-type-options",
            HeaderValue::from_static("nosniff"),
        );
        h.insert(
            "strict-transport-security",
            HeaderValue::from_static("max-age=31536000; includeSubDomains"),
        );
    }
    let principal = resp.extensions().get::<Principal>().map(|p| p.0.clone());
    let entry = LogEntry {
        seq: 0,
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().map(str::to_owned),
        operation: operation.to_owned(),
        status: if dropped { 0 } else { resp.status().as_u16() },
        principal,
        fault,
        timestamp: crate::response::arm_time(Utc::now()),
    };
    tracing::debug!(method = %entry.method, path = %entry.path, status = entry.status, "request");
    app.lock().log.push(entry);
}
