//! Microsoft Entra ID: the v2.0 token endpoint (client secret and federated client assertion),
//! an IMDS-style managed-identity endpoint, and the access tokens ARM accepts.
//!
//! Access tokens are JWTs signed with HS256 and a key private to this emulator instance (real
//! Entra uses RS256 and published keys; clients never verify access tokens, so this is invisible).
//! Client assertions are *not* signature-checked: the emulator has no access to the issuer's keys
//! (a Kubernetes API server's service-account signing key). It checks `aud`, `iss`, `sub`, `exp`
//! and `nbf` against the application's federated identity credentials.

use base64::Engine;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use chrono::Utc;
use http::{HeaderMap, StatusCode, header};
use ring::hmac;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::response::{ArmError, json_response};
use crate::state::Inner;
use axum::response::Response;

const B64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The client-assertion type workload identity sends.
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Claims of an access token issued by the emulator.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct AccessClaims {
    /// Audience (the resource).
    pub aud: String,
    /// Issuer, `https://sts.windows.net/{tenant}/`.
    pub iss: String,
    /// Issued at.
    pub iat: i64,
    /// Not before.
    pub nbf: i64,
    /// Expiry.
    pub exp: i64,
    /// Client id.
    pub appid: String,
    /// Object id of the service principal.
    pub oid: String,
    /// Subject (= oid for apps).
    pub sub: String,
    /// Tenant.
    pub tid: String,
    /// Identity type.
    pub idtyp: String,
    /// Token version.
    pub ver: String,
}

/// Sign claims as an HS256 JWT.
pub fn mint(key: &hmac::Key, claims: &AccessClaims) -> String {
    let header = B64.encode(br#"{"typ":"JWT","alg":"HS256","kid":"azureml-emulator"}"#);
    let payload = B64.encode(serde_json::to_vec(claims).unwrap_or_default());
    let signing_input = format!("{header}.{payload}");
    let sig = hmac::sign(key, signing_input.as_bytes());
    format!("{signing_input}.{}", B64.encode(sig.as_ref()))
}

/// Verify an access token's signature and decode its claims (expiry is checked by the caller).
pub fn verify(key: &hmac::Key, token: &str) -> Option<AccessClaims> {
    let (signing_input, sig) = token.rsplit_once('.')?;
    let sig = B64.decode(sig).ok()?;
    hmac::verify(key, signing_input.as_bytes(), &sig).ok()?;
    let (_, payload) = signing_input.split_once('.')?;
    serde_json::from_slice(&B64.decode(payload).ok()?).ok()
}

/// Decode a JWT's payload without checking its signature.
fn decode_unverified(jwt: &str) -> Option<serde_json::Map<String, Value>> {
    let mut parts = jwt.trim().split('.');
    let _header = parts.next()?;
    let payload = parts.next()?;
    let _sig = parts.next()?;
    if parts.next().is_some() {
        return None;
    }
    match serde_json::from_slice(&B64.decode(payload).ok()?).ok()? {
        Value::Object(m) => Some(m),
        _ => None,
    }
}

/// Normalize an audience for comparison: lower case, no trailing slash.
fn norm_aud(a: &str) -> String {
    a.trim_end_matches('/').to_ascii_lowercase()
}

/// Audiences (resources) ARM accepts: public ARM, the legacy management URI, this emulator
/// (by configured base URL and by the Host the client used) and configured extras.
pub fn arm_audience_ok(aud: &str, base_url: &str, host: Option<&str>, extra: &[String]) -> bool {
    let a = norm_aud(aud);
    a == "https://management.azure.com"
        || a == "https://management.core.windows.net"
        || a == norm_aud(base_url)
        || host.is_some_and(|h| a == norm_aud(&format!("https://{h}")))
        || extra.iter().any(|e| norm_aud(e) == a)
}

/// An Entra error response.
pub fn entra_error(status: StatusCode, error: &str, code: u32, description: &str) -> Response {
    let now = Utc::now();
    let trace = uuid::Uuid::new_v4();
    let corr = uuid::Uuid::new_v4();
    let ts = now.format("%Y-%m-%d %H:%M:%SZ").to_string();
    let body = json!({
        "error": error,
        "error_description": format!("AADSTS{code}: {description} Trace ID: {trace} Correlation ID: {corr} Timestamp: {ts}"),
        "error_codes": [code],
        "timestamp": ts,
        "trace_id": trace,
        "correlation_id": corr,
        "error_uri": format!("https://login.microsoftonline.com/error?code={code}"),
    });
    let mut resp = json_response(status, &body);
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store, no-cache"),
    );
    resp
}

/// Token request form fields (`application/x-www-form-urlencoded`).
#[derive(Debug, Default, Deserialize)]
struct TokenForm {
    grant_type: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    client_assertion: Option<String>,
    client_assertion_type: Option<String>,
    scope: Option<String>,
}

/// Where a request came from, for audiences.
pub struct Origin<'a> {
    /// Emulator base URL.
    pub base_url: &'a str,
    /// Host header.
    pub host: Option<&'a str>,
    /// HMAC key for access tokens.
    pub key: &'a hmac::Key,
    /// Configured extra ARM audiences.
    pub extra_audiences: &'a [String],
}

/// `POST /{tenant}/oauth2/v2.0/token`. Returns the response and the client id when issued.
pub fn token(
    inner: &Inner,
    origin: &Origin<'_>,
    tenant: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> (Response, Option<String>) {
    let bad = |error: &str, code: u32, desc: String| {
        (
            entra_error(StatusCode::BAD_REQUEST, error, code, &desc),
            None,
        )
    };
    if !tenant.eq_ignore_ascii_case(&inner.tenant_id) {
        return bad(
            "invalid_request",
            90002,
            format!(
                "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud."
            ),
        );
    }
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.to_ascii_lowercase()
                .starts_with("application/x-www-form-urlencoded")
        });
    // Entra reads only form bodies; anything else looks like a body without parameters.
    let form: TokenForm = if is_form {
        match serde_urlencoded::from_bytes(body) {
            Ok(f) => f,
            Err(_) => {
                return bad(
                    "invalid_request",
                    900144,
                    "The request body must contain the following parameter: 'grant_type'.".into(),
                );
            }
        }
    } else {
        TokenForm::default()
    };
    let Some(grant) = form.grant_type.as_deref() else {
        return bad(
            "invalid_request",
            900144,
            "The request body must contain the following parameter: 'grant_type'.".into(),
        );
    };
    if grant != "client_credentials" {
        return bad(
            "unsupported_grant_type",
            70003,
            format!("The app requested an unsupported grant type '{grant}'."),
        );
    }
    let Some(client_id) = form.client_id.as_deref() else {
        return bad(
            "invalid_request",
            900144,
            "The request body must contain the following parameter: 'client_id'.".into(),
        );
    };
    let Some(scope) = form.scope.as_deref() else {
        return bad(
            "invalid_request",
            900144,
            "The request body must contain the following parameter: 'scope'.".into(),
        );
    };
    let resource = match scope
        .split_whitespace()
        .next()
        .and_then(|s| s.strip_suffix(".default"))
    {
        Some(r) if !r.is_empty() => r.to_owned(),
        _ => {
            return bad(
                "invalid_scope",
                1002012,
                format!(
                    "The provided value for scope {scope} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI)."
                ),
            );
        }
    };
    if !arm_audience_ok(
        &resource,
        origin.base_url,
        origin.host,
        origin.extra_audiences,
    ) {
        return bad(
            "invalid_resource",
            500011,
            format!(
                "The resource principal named {resource} was not found in the tenant named {tenant}. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You might have sent your authentication request to the wrong tenant."
            ),
        );
    }
    let Some(app) = inner
        .applications
        .iter()
        .find(|a| a.client_id.eq_ignore_ascii_case(client_id))
    else {
        return bad(
            "unauthorized_client",
            700016,
            format!(
                "Application with identifier '{client_id}' was not found in the directory '{tenant}'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant."
            ),
        );
    };
    let unauthorized = |code: u32, desc: String| {
        (
            entra_error(StatusCode::UNAUTHORIZED, "invalid_client", code, &desc),
            None,
        )
    };
    match (&form.client_secret, &form.client_assertion) {
        (Some(secret), _) => {
            if !app.secrets.iter().any(|s| s == secret) {
                return unauthorized(
                    7000215,
                    format!(
                        "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{}'.",
                        app.client_id
                    ),
                );
            }
        }
        (None, Some(assertion)) => {
            if form.client_assertion_type.as_deref() != Some(JWT_BEARER) {
                return bad(
                    "invalid_request",
                    50027,
                    format!("Invalid client_assertion_type; expected '{JWT_BEARER}'."),
                );
            }
            if let Err(rejection) = check_assertion(app, assertion) {
                return (rejection.into_response(), None);
            }
        }
        (None, None) => {
            return unauthorized(
                7000218,
                "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.".into(),
            );
        }
    }
    let object_id = app
        .object_id
        .clone()
        .unwrap_or_else(|| derived_object_id(&app.client_id));
    let lifetime = inner.settings.token_lifetime_secs;
    let now = Utc::now().timestamp();
    let claims = AccessClaims {
        aud: resource,
        iss: format!("https://sts.windows.net/{}/", inner.tenant_id),
        iat: now,
        nbf: now,
        exp: now + i64::try_from(lifetime).unwrap_or(3600),
        appid: app.client_id.clone(),
        oid: object_id.clone(),
        sub: object_id,
        tid: inner.tenant_id.clone(),
        idtyp: "app".into(),
        ver: "1.0".into(),
    };
    let access_token = mint(origin.key, &claims);
    let body = json!({
        "token_type": "Bearer",
        "expires_in": lifetime,
        "ext_expires_in": lifetime,
        "access_token": access_token,
    });
    let mut resp = json_response(StatusCode::OK, &body);
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store, no-cache"),
    );
    (resp, Some(app.client_id.clone()))
}

/// Deterministic object id for an application without one.
pub fn derived_object_id(client_id: &str) -> String {
    uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_URL, client_id.as_bytes()).to_string()
}

/// Why Entra refused a request (turned into its error body by [`Rejection::into_response`]).
struct Rejection {
    status: StatusCode,
    error: &'static str,
    code: u32,
    description: String,
}

impl Rejection {
    fn into_response(self) -> Response {
        entra_error(self.status, self.error, self.code, &self.description)
    }
}

fn check_assertion(app: &crate::config::Application, assertion: &str) -> Result<(), Rejection> {
    let bad = |code: u32, description: String| {
        Err(Rejection {
            status: StatusCode::BAD_REQUEST,
            error: "invalid_request",
            code,
            description,
        })
    };
    let Some(claims) = decode_unverified(assertion) else {
        return bad(50027, "JWT token is invalid or malformed.".into());
    };
    let now = Utc::now().timestamp();
    let exp = claims.get("exp").and_then(Value::as_i64);
    let nbf = claims.get("nbf").and_then(Value::as_i64);
    match exp {
        None => {
            return bad(
                50027,
                "JWT token is invalid or malformed: no 'exp' claim.".into(),
            );
        }
        Some(e) if e <= now => {
            return Err(Rejection {
                status: StatusCode::BAD_REQUEST,
                error: "invalid_client",
                code: 700024,
                description: format!(
                    "Client assertion is not within its valid time range. Current time: {}, assertion valid from {}, expiry time of assertion {}. Review the documentation at https://docs.microsoft.com/azure/active-directory/develop/active-directory-certificate-credentials .",
                    fmt_ts(now),
                    nbf.map(fmt_ts).unwrap_or_default(),
                    fmt_ts(e)
                ),
            });
        }
        Some(_) => {}
    }
    if let Some(n) = nbf
        && n > now + 300
    {
        return Err(Rejection {
            status: StatusCode::BAD_REQUEST,
            error: "invalid_client",
            code: 700024,
            description: format!(
                "Client assertion is not within its valid time range. Current time: {}, assertion valid from {}.",
                fmt_ts(now),
                fmt_ts(n)
            ),
        });
    }
    let iss = claims.get("iss").and_then(Value::as_str).unwrap_or("");
    let sub = claims.get("sub").and_then(Value::as_str).unwrap_or("");
    let auds: Vec<&str> = match claims.get("aud") {
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let by_subject: Vec<_> = app
        .federated_credentials
        .iter()
        .filter(|f| f.issuer == iss && f.subject == sub)
        .collect();
    if by_subject.is_empty() {
        return bad(
            70021,
            format!(
                "No matching federated identity record found for presented assertion. Assertion Issuer: '{iss}'. Assertion Subject: '{sub}'. Assertion Audience: '{}'.",
                auds.join(",")
            ),
        );
    }
    if !by_subject
        .iter()
        .any(|f| f.audiences.iter().any(|a| auds.contains(&a.as_str())))
    {
        return bad(
            700212,
            format!(
                "No matching federated identity record found for presented assertion audience '{}'.",
                auds.join(",")
            ),
        );
    }
    Ok(())
}

fn fmt_ts(t: i64) -> String {
    chrono::DateTime::from_timestamp(t, 0)
        .map(|d| d.format("%m/%d/%Y %H:%M:%S").to_string())
        .unwrap_or_default()
}

/// IMDS-style managed identity token (`GET /metadata/identity/oauth2/token`).
pub fn imds_token(
    inner: &Inner,
    origin: &Origin<'_>,
    headers: &HeaderMap,
    query: Option<&str>,
) -> (Response, Option<String>) {
    #[derive(Deserialize, Default)]
    struct Q {
        resource: Option<String>,
        client_id: Option<String>,
    }
    let err = |desc: &str| {
        (
            json_response(
                StatusCode::BAD_REQUEST,
                &json!({"error": "invalid_request", "error_description": desc}),
            ),
            None,
        )
    };
    if headers
        .get("metadata")
        .and_then(|v| v.to_str().ok())
        .is_none_or(|v| !v.eq_ignore_ascii_case("true"))
    {
        return err("Required metadata header not specified");
    }
    let q: Q = serde_urlencoded::from_str(query.unwrap_or("")).unwrap_or_default();
    let Some(resource) = q.resource else {
        return err("Required query variable 'resource' is missing");
    };
    let identity = match &q.client_id {
        Some(id) => inner
            .managed_identities
            .iter()
            .find(|m| m.client_id.eq_ignore_ascii_case(id)),
        None => inner.managed_identities.first(),
    };
    let Some(identity) = identity else {
        return err("Identity not found");
    };
    if !arm_audience_ok(
        &resource,
        origin.base_url,
        origin.host,
        origin.extra_audiences,
    ) {
        return err("Invalid resource");
    }
    let now = Utc::now().timestamp();
    let lifetime = inner.settings.token_lifetime_secs;
    let exp = now + i64::try_from(lifetime).unwrap_or(3600);
    let oid = derived_object_id(&identity.client_id);
    let claims = AccessClaims {
        aud: resource.clone(),
        iss: format!("https://sts.windows.net/{}/", inner.tenant_id),
        iat: now,
        nbf: now,
        exp,
        appid: identity.client_id.clone(),
        oid: oid.clone(),
        sub: oid,
        tid: inner.tenant_id.clone(),
        idtyp: "app".into(),
        ver: "1.0".into(),
    };
    let body = json!({
        "access_token": mint(origin.key, &claims),
        "client_id": identity.client_id,
        "expires_in": lifetime.to_string(),
        "expires_on": exp.to_string(),
        "ext_expires_in": lifetime.to_string(),
        "not_before": now.to_string(),
        "resource": resource,
        "token_type": "Bearer",
    });
    (
        json_response(StatusCode::OK, &body),
        Some(identity.client_id.clone()),
    )
}

/// Check an ARM request's bearer token; returns the caller's claims.
pub fn authenticate(
    inner: &Inner,
    origin: &Origin<'_>,
    headers: &HeaderMap,
) -> Result<AccessClaims, ArmError> {
    let challenge = |desc: &str| {
        format!(
            "Bearer authorization_uri=\"{}/{}\", error=\"invalid_token\", error_description=\"{desc}\"",
            origin.base_url.trim_end_matches('/'),
            inner.tenant_id
        )
    };
    let fail = |code: &str, message: String, desc: &str| {
        let mut e = ArmError::new(StatusCode::UNAUTHORIZED, code, message);
        e.www_authenticate = Some(challenge(desc));
        e
    };
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(fail(
            "AuthenticationFailed",
            "Authentication failed. The 'Authorization' header is missing.".into(),
            "The authentication failed because of missing 'Authorization' header.",
        ));
    };
    let token = value
        .to_str()
        .ok()
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    let Some(token) = token.filter(|t| !t.is_empty()) else {
        return Err(fail(
            "AuthenticationFailed",
            "Authentication failed. The 'Authorization' header is provided in an invalid format."
                .into(),
            "The authentication failed because of malformed 'Authorization' header.",
        ));
    };
    let Some(claims) = verify(origin.key, token) else {
        return Err(fail(
            "InvalidAuthenticationToken",
            "The access token is invalid.".into(),
            "The access token is invalid.",
        ));
    };
    let now = Utc::now();
    if claims.exp <= now.timestamp() {
        let exp = chrono::DateTime::from_timestamp(claims.exp, 0).unwrap_or(now);
        return Err(fail(
            "ExpiredAuthenticationToken",
            format!(
                "The access token expiry UTC time '{}' is earlier than current UTC time '{}'.",
                exp.format("%-m/%-d/%Y %-I:%M:%S %p"),
                now.format("%-m/%-d/%Y %-I:%M:%S %p")
            ),
            "The access token has expired.",
        ));
    }
    if !arm_audience_ok(
        &claims.aud,
        origin.base_url,
        origin.host,
        origin.extra_audiences,
    ) {
        return Err(fail(
            "InvalidAuthenticationTokenAudience",
            format!(
                "The access token has been obtained for wrong audience or resource '{}'. It should exactly match with one of the allowed audiences 'https://management.core.windows.net/','https://management.core.windows.net','https://management.azure.com/','https://management.azure.com'.",
                claims.aud
            ),
            "The access token has been obtained for wrong audience or resource.",
        ));
    }
    if !claims.tid.eq_ignore_ascii_case(&inner.tenant_id) {
        return Err(fail(
            "InvalidAuthenticationTokenTenant",
            format!(
                "The access token is from the wrong issuer '{}'. It must match the tenant 'https://sts.windows.net/{}/' associated with this subscription. Please use the authority (URL) 'https://login.windows.net/{}' to get the token.",
                claims.iss, inner.tenant_id, inner.tenant_id
            ),
            "The access token is from the wrong issuer.",
        ));
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mint_verify_roundtrip() {
        let key = hmac::Key::new(hmac::HMAC_SHA256, b"k");
        let c = AccessClaims {
            aud: "https://management.azure.com/".into(),
            iss: "i".into(),
            iat: 1,
            nbf: 1,
            exp: 2,
            appid: "a".into(),
            oid: "o".into(),
            sub: "o".into(),
            tid: "t".into(),
            idtyp: "app".into(),
            ver: "1.0".into(),
        };
        let t = mint(&key, &c);
        assert_eq!(verify(&key, &t), Some(c));
        let other = hmac::Key::new(hmac::HMAC_SHA256, b"other");
        assert_eq!(verify(&other, &t), None);
        assert_eq!(verify(&key, "garbage"), None);
    }

    #[test]
    fn audiences() {
        let b = "https://127.0.0.1:8443";
        assert!(arm_audience_ok(
            "https://management.azure.com/",
            b,
            None,
            &[]
        ));
        assert!(arm_audience_ok("https://127.0.0.1:8443/", b, None, &[]));
        assert!(arm_audience_ok(
            "https://emu.svc:443",
            b,
            Some("emu.svc:443"),
            &[]
        ));
        assert!(!arm_audience_ok(
            "https://graph.microsoft.com",
            b,
            None,
            &[]
        ));
    }
}
