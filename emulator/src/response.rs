//! Response helpers: JSON bodies, ARM error bodies, response markers.

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use http::{HeaderValue, StatusCode, header};
use serde_json::{Value, json};

/// Content-Type of every JSON answer, as Azure sends it.
pub const JSON_CONTENT_TYPE: &str = "application/json; charset=utf-8";

/// A JSON response with Azure's content type.
pub fn json_response(status: StatusCode, body: &Value) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let mut resp = Response::new(Body::from(bytes));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(JSON_CONTENT_TYPE),
    );
    resp
}

/// An empty response.
pub fn empty_response(status: StatusCode) -> Response {
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = status;
    resp
}

/// Azure's timestamp format: 7 fractional digits and a `+00:00` offset.
pub fn arm_time(t: DateTime<Utc>) -> String {
    format!(
        "{}.{:07}+00:00",
        t.format("%Y-%m-%dT%H:%M:%S"),
        t.timestamp_subsec_nanos() / 100
    )
}

/// Marker extension: the connection must be closed without an answer.
#[derive(Clone, Copy, Debug)]
pub struct DropConnection;

/// Marker extension: who made the request (for the request log).
#[derive(Clone, Debug)]
pub struct Principal(pub String);

/// An error in ARM's shape: `{"error":{"code","message"[,"target"]}}`.
#[derive(Clone, Debug)]
pub struct ArmError {
    /// HTTP status.
    pub status: StatusCode,
    /// `error.code`.
    pub code: String,
    /// `error.message`.
    pub message: String,
    /// `error.target`.
    pub target: Option<String>,
    /// `Retry-After` seconds.
    pub retry_after: Option<u64>,
    /// `WWW-Authenticate` header.
    pub www_authenticate: Option<String>,
}

impl ArmError {
    /// An error with a status, code and message.
    pub fn new(status: StatusCode, code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            status,
            code: code.into(),
            message: message.into(),
            target: None,
            retry_after: None,
            www_authenticate: None,
        }
    }

    /// 400 with a code and message.
    pub fn bad_request(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// Set `error.target`.
    pub fn with_target(mut self, target: impl Into<String>) -> Self {
        self.target = Some(target.into());
        self
    }

    /// The JSON body.
    pub fn body(&self) -> Value {
        let mut err = json!({ "code": self.code, "message": self.message });
        if let (Some(t), Some(obj)) = (&self.target, err.as_object_mut()) {
            obj.insert("target".into(), Value::String(t.clone()));
        }
        json!({ "error": err })
    }
}

impl IntoResponse for ArmError {
    fn into_response(self) -> Response {
        let mut resp = json_response(self.status, &self.body());
        let h = resp.headers_mut();
        if let Some(s) = self.retry_after {
            h.insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        if let Some(w) = &self.www_authenticate
            && let Ok(v) = HeaderValue::from_str(w)
        {
            h.insert(header::WWW_AUTHENTICATE, v);
        }
        resp
    }
}

/// Default ARM error code for an injected status.
pub fn code_for_status(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "BadRequest",
        401 => "AuthenticationFailed",
        403 => "AuthorizationFailed",
        404 => "NotFound",
        409 => "Conflict",
        429 => "TooManyRequests",
        500 => "InternalServerError",
        502 => "BadGateway",
        503 => "ServiceUnavailable",
        504 => "GatewayTimeout",
        _ => "InjectedFault",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn seven_digit_fractions() {
        let t = Utc.timestamp_opt(1_700_000_000, 545_517_400).unwrap();
        assert_eq!(arm_time(t), "2023-11-14T22:13:20.5455174+00:00");
    }

    #[test]
    fn error_body_shape() {
        let e = ArmError::bad_request("X", "y").with_target("a.b");
        assert_eq!(
            e.body(),
            json!({"error":{"code":"X","message":"y","target":"a.b"}})
        );
    }
}
