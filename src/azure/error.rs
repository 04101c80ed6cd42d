//! Typed ARM errors. The kind decides the retry delay, the condition reason and the metric
//! label; nothing downstream branches on message text.
//!
//! Messages carry Azure's `code`/`message` (truncated) and never request headers, bodies we
//! sent, bearer tokens or signed operation URLs.

use std::time::Duration;

use super::models::ErrorResponse;

/// Longest Azure message kept in an error (status conditions have limited room, and a long
/// message is usually an echo of something we sent).
const MAX_MESSAGE_LEN: usize = 512;

/// Azure's error `code` and `message`, as returned in an `ErrorResponse`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AzureFault {
    /// ARM/RP error code (`ResourceNotFound`, `BadRequest`, …); empty if the body had none.
    pub code: String,
    /// Human-readable message, truncated.
    pub message: String,
}

impl AzureFault {
    /// Extracts code and message from a response body; tolerant of non-JSON bodies.
    pub fn from_body(body: &[u8]) -> Self {
        let parsed: Option<ErrorResponse> = serde_json::from_slice(body).ok();
        let detail = parsed.and_then(|r| r.error);
        match detail {
            Some(d) => Self {
                code: d.code.unwrap_or_default(),
                message: truncate(d.message.as_deref().unwrap_or_default()),
            },
            None => Self::default(),
        }
    }

    /// `code: message`, or a placeholder when Azure said nothing.
    fn describe(&self) -> String {
        match (self.code.is_empty(), self.message.is_empty()) {
            (true, true) => "no error details".to_string(),
            (false, true) => self.code.clone(),
            (true, false) => self.message.clone(),
            (false, false) => format!("{}: {}", self.code, self.message),
        }
    }
}

fn truncate(message: &str) -> String {
    if message.len() <= MAX_MESSAGE_LEN {
        return message.to_string();
    }
    let mut end = MAX_MESSAGE_LEN;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &message[..end])
}

/// The error kinds of the ARM layer; see [`ArmError::kind`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ArmErrorKind {
    /// 404.
    NotFound,
    /// 401: the token was refused.
    Unauthorized,
    /// 403: the principal lacks a role assignment.
    Forbidden,
    /// 400 and other 4xx: the request is wrong and retrying it will not help.
    BadRequest,
    /// 409: another operation is in progress on the resource.
    Conflict,
    /// 429 from ARM, or the client-side budget is exhausted.
    Throttled,
    /// 5xx.
    Server,
    /// Connection, TLS or timeout.
    Transport,
    /// A body we could not parse.
    Decode,
    /// No token could be obtained.
    Credential,
    /// A URL we refuse to call (a foreign origin, a malformed URL, a name that is not a path
    /// segment).
    InvalidOperationUrl,
}

/// An ARM call failed.
#[derive(Debug, thiserror::Error)]
pub enum ArmError {
    /// 404 (the compute, the workspace or its resource group does not exist).
    #[error("{operation}: not found ({})", .fault.describe())]
    NotFound {
        /// Operation name (`Compute_Get`, …).
        operation: &'static str,
        /// Azure's answer.
        fault: AzureFault,
    },
    /// 401.
    #[error("{operation}: unauthorized ({})", .fault.describe())]
    Unauthorized {
        /// Operation name.
        operation: &'static str,
        /// Azure's answer.
        fault: AzureFault,
    },
    /// 403.
    #[error("{operation}: forbidden ({})", .fault.describe())]
    Forbidden {
        /// Operation name.
        operation: &'static str,
        /// Azure's answer.
        fault: AzureFault,
    },
    /// 400, 422 and other 4xx not listed elsewhere: permanent until the input changes.
    #[error("{operation}: rejected with HTTP {status} ({})", .fault.describe())]
    BadRequest {
        /// Operation name.
        operation: &'static str,
        /// HTTP status.
        status: u16,
        /// Azure's answer.
        fault: AzureFault,
    },
    /// 409.
    #[error("{operation}: conflict ({})", .fault.describe())]
    Conflict {
        /// Operation name.
        operation: &'static str,
        /// Azure's answer.
        fault: AzureFault,
    },
    /// 429 from ARM (`client_side == false`) or the operator's own budget.
    #[error("{operation}: throttled, retry after {}s{}", .retry_after.as_secs_f64().ceil(), if *.client_side { " (client-side budget)" } else { "" })]
    Throttled {
        /// Operation name.
        operation: &'static str,
        /// How long to wait.
        retry_after: Duration,
        /// Whether the operator's own bucket refused before any request was sent.
        client_side: bool,
    },
    /// 5xx.
    #[error("{operation}: server error HTTP {status} ({})", .fault.describe())]
    Server {
        /// Operation name.
        operation: &'static str,
        /// HTTP status.
        status: u16,
        /// Azure's answer.
        fault: AzureFault,
        /// `Retry-After`, if sent.
        retry_after: Option<Duration>,
    },
    /// Connection, TLS, timeout.
    #[error("{operation}: transport error")]
    Transport {
        /// Operation name.
        operation: &'static str,
        /// The reqwest error, with its URL removed (operation URLs carry signatures).
        #[source]
        source: reqwest::Error,
    },
    /// An unparseable response.
    #[error("{operation}: cannot decode the response body")]
    Decode {
        /// Operation name.
        operation: &'static str,
        /// The serde error.
        #[source]
        source: serde_json::Error,
    },
    /// The credential could not produce a token.
    #[error("{operation}: cannot get an ARM token")]
    Credential {
        /// Operation name.
        operation: &'static str,
        /// The azure_identity error (its text names the credential and Entra's answer, never a secret).
        #[source]
        source: azure_core::Error,
    },
    /// A URL the client refuses to call: an operation URL or `nextLink` on a foreign origin or
    /// malformed, or a request URL whose names are not path segments (`..`).
    #[error("refusing URL: {reason}")]
    InvalidOperationUrl {
        /// Why (never the URL itself, it carries signatures).
        reason: String,
    },
}

impl ArmError {
    /// The kind, for retry policy and condition reasons.
    pub fn kind(&self) -> ArmErrorKind {
        match self {
            ArmError::NotFound { .. } => ArmErrorKind::NotFound,
            ArmError::Unauthorized { .. } => ArmErrorKind::Unauthorized,
            ArmError::Forbidden { .. } => ArmErrorKind::Forbidden,
            ArmError::BadRequest { .. } => ArmErrorKind::BadRequest,
            ArmError::Conflict { .. } => ArmErrorKind::Conflict,
            ArmError::Throttled { .. } => ArmErrorKind::Throttled,
            ArmError::Server { .. } => ArmErrorKind::Server,
            ArmError::Transport { .. } => ArmErrorKind::Transport,
            ArmError::Decode { .. } => ArmErrorKind::Decode,
            ArmError::Credential { .. } => ArmErrorKind::Credential,
            ArmError::InvalidOperationUrl { .. } => ArmErrorKind::InvalidOperationUrl,
        }
    }

    /// Builds the error for a non-success HTTP status.
    pub fn from_status(
        operation: &'static str,
        status: u16,
        body: &[u8],
        retry_after: Option<Duration>,
    ) -> Self {
        let fault = AzureFault::from_body(body);
        match status {
            401 => ArmError::Unauthorized { operation, fault },
            403 => ArmError::Forbidden { operation, fault },
            404 => ArmError::NotFound { operation, fault },
            409 => ArmError::Conflict { operation, fault },
            429 => ArmError::Throttled {
                operation,
                // ARM always sends Retry-After with 429; if it did not, wait a little.
                retry_after: retry_after.unwrap_or(DEFAULT_THROTTLE_WAIT),
                client_side: false,
            },
            500..=599 => ArmError::Server {
                operation,
                status,
                fault,
                retry_after,
            },
            _ => ArmError::BadRequest {
                operation,
                status,
                fault,
            },
        }
    }

    /// How long Azure asked us to wait, if it did.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ArmError::Throttled { retry_after, .. } => Some(*retry_after),
            ArmError::Server { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// True when retrying the same request cannot succeed until something changes (the spec,
    /// the Secret, the role assignment): the controller backs off slowly instead of hot-looping.
    pub fn is_permanent(&self) -> bool {
        matches!(
            self.kind(),
            ArmErrorKind::BadRequest | ArmErrorKind::InvalidOperationUrl
        )
    }

    /// True for errors about who we are (token refused, missing role, no token).
    pub fn is_credential_problem(&self) -> bool {
        matches!(
            self.kind(),
            ArmErrorKind::Unauthorized | ArmErrorKind::Forbidden | ArmErrorKind::Credential
        )
    }

    /// Azure's error code and message, when Azure sent them.
    pub fn fault(&self) -> Option<&AzureFault> {
        match self {
            ArmError::NotFound { fault, .. }
            | ArmError::Unauthorized { fault, .. }
            | ArmError::Forbidden { fault, .. }
            | ArmError::BadRequest { fault, .. }
            | ArmError::Conflict { fault, .. }
            | ArmError::Server { fault, .. } => Some(fault),
            _ => None,
        }
    }

    /// Azure's error code (`InvalidPropertyValue`, …), if any.
    pub fn code(&self) -> Option<&str> {
        self.fault()
            .map(|f| f.code.as_str())
            .filter(|c| !c.is_empty())
    }

    /// HTTP status, when the error came from a response.
    pub fn status(&self) -> Option<u16> {
        match self {
            ArmError::NotFound { .. } => Some(404),
            ArmError::Unauthorized { .. } => Some(401),
            ArmError::Forbidden { .. } => Some(403),
            ArmError::Conflict { .. } => Some(409),
            ArmError::Throttled {
                client_side: false, ..
            } => Some(429),
            ArmError::BadRequest { status, .. } | ArmError::Server { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Low-cardinality label for `reconcile_errors_total{reason}` and friends.
    pub fn metric_label(&self) -> &'static str {
        self.kind().metric_label()
    }
}

impl ArmErrorKind {
    /// Low-cardinality metric label.
    pub fn metric_label(self) -> &'static str {
        match self {
            ArmErrorKind::NotFound => "not_found",
            ArmErrorKind::Unauthorized => "unauthorized",
            ArmErrorKind::Forbidden => "forbidden",
            ArmErrorKind::BadRequest => "bad_request",
            ArmErrorKind::Conflict => "conflict",
            ArmErrorKind::Throttled => "throttled",
            ArmErrorKind::Server => "server_error",
            ArmErrorKind::Transport => "transport",
            ArmErrorKind::Decode => "decode",
            ArmErrorKind::Credential => "credential",
            ArmErrorKind::InvalidOperationUrl => "invalid_operation_url",
        }
    }
}

/// Wait used when a 429 arrives without `Retry-After`.
pub const DEFAULT_THROTTLE_WAIT: Duration = Duration::from_secs(10);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_kinds() {
        let cases = [
            (400, ArmErrorKind::BadRequest),
            (401, ArmErrorKind::Unauthorized),
            (403, ArmErrorKind::Forbidden),
            (404, ArmErrorKind::NotFound),
            (409, ArmErrorKind::Conflict),
            (422, ArmErrorKind::BadRequest),
            (429, ArmErrorKind::Throttled),
            (500, ArmErrorKind::Server),
            (503, ArmErrorKind::Server),
        ];
        for (status, kind) in cases {
            let err = ArmError::from_status("Compute_Get", status, b"", None);
            assert_eq!(err.kind(), kind, "{status}");
        }
    }

    #[test]
    fn azure_code_and_message_are_kept() {
        let body = br#"{"error":{"code":"ResourceNotFound","message":"The Resource 'x' was not found.","details":null}}"#;
        let err = ArmError::from_status("Workspaces_Get", 404, body, None);
        assert_eq!(err.code(), Some("ResourceNotFound"));
        assert_eq!(err.status(), Some(404));
        assert_eq!(
            err.to_string(),
            "Workspaces_Get: not found (ResourceNotFound: The Resource 'x' was not found.)"
        );
        assert!(!err.is_permanent());
        assert_eq!(err.metric_label(), "not_found");
    }

    #[test]
    fn retry_policy_inputs() {
        let throttled =
            ArmError::from_status("Compute_List", 429, b"{}", Some(Duration::from_secs(17)));
        assert_eq!(throttled.retry_after(), Some(Duration::from_secs(17)));
        assert!(!throttled.is_permanent());
        let no_header = ArmError::from_status("Compute_List", 429, b"", None);
        assert_eq!(no_header.retry_after(), Some(DEFAULT_THROTTLE_WAIT));
        let server =
            ArmError::from_status("Compute_Get", 503, b"oops", Some(Duration::from_secs(3)));
        assert_eq!(server.retry_after(), Some(Duration::from_secs(3)));
        let bad = ArmError::from_status(
            "Compute_CreateOrUpdate",
            400,
            br#"{"error":{"code":"BadRequest","message":"Compute type Batch is not supported"}}"#,
            None,
        );
        assert!(bad.is_permanent());
        assert_eq!(bad.code(), Some("BadRequest"));
        assert!(ArmError::from_status("x", 403, b"", None).is_credential_problem());
    }

    #[test]
    fn long_and_non_json_bodies_are_handled() {
        let long = format!(
            r#"{{"error":{{"code":"X","message":"{}"}}}}"#,
            "é".repeat(1000)
        );
        let err = ArmError::from_status("x", 400, long.as_bytes(), None);
        assert!(err.fault().unwrap().message.len() <= MAX_MESSAGE_LEN + 4);
        let err = ArmError::from_status("x", 502, b"<html>bad gateway</html>", None);
        assert_eq!(
            err.to_string(),
            "x: server error HTTP 502 (no error details)"
        );
    }
}
