//! Entra ID token endpoint and ARM authentication.

mod common;

use azureml_emulator::config::ManagedIdentity;
use azureml_emulator::{EmulatorConfig, SettingsPatch};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const FED_CLIENT: &str = "33333333-3333-3333-3333-333333333333";
const SECRET_CLIENT: &str = "22222222-2222-2222-2222-222222222222";
const SA_SUBJECT: &str = "system:serviceaccount:azureml-attach-system:azureml-attach";

fn jwt(claims: &Value) -> String {
    let h = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","kid":"k"}"#);
    let p = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap());
    format!("{h}.{p}.c2lnbmF0dXJl")
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn sa_claims() -> Value {
    json!({"iss":"https://kubernetes.default.svc","sub":SA_SUBJECT,"aud":["api://AzureADTokenExchange"],
        "exp": now() + 3600, "nbf": now() - 10, "iat": now() - 10})
}

async fn token(e: &Env, form: &[(&str, &str)]) -> Resp {
    into_resp(
        e.http
            .post(e.emu.token_url())
            .form(form)
            .send()
            .await
            .unwrap(),
    )
    .await
}

fn assert_entra_error(r: &Resp, status: StatusCode, error: &str, code: u64) {
    assert_eq!(r.status, status, "{}", r.text);
    assert_eq!(r.body["error"], error, "{}", r.text);
    assert_eq!(r.body["error_codes"], json!([code]));
    let desc = r.body["error_description"].as_str().unwrap();
    assert!(desc.starts_with(&format!("AADSTS{code}:")), "{desc}");
    for k in ["timestamp", "trace_id", "correlation_id"] {
        assert!(r.body[k].is_string(), "missing {k}");
    }
}

const SCOPE: &str = "https://management.azure.com/.default";

#[tokio::test]
async fn client_secret_grants_a_working_token() {
    let e = env().await;
    let r = token(
        &e,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", SECRET_CLIENT),
            ("client_secret", "emulator-client-secret"),
            ("scope", SCOPE),
        ],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["token_type"], "Bearer");
    assert!(r.body["expires_in"].as_u64().unwrap() > 0);
    let t = r.body["access_token"].as_str().unwrap();
    let ok = send(
        &e.http,
        Method::GET,
        &e.url(&with_version(&ws_path())),
        Some(t),
        None,
    )
    .await;
    assert_eq!(ok.status, StatusCode::OK);
    // The emulator's own base URL is an accepted scope too.
    let scope = format!("{}/.default", e.emu.base_url());
    let r = token(
        &e,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", SECRET_CLIENT),
            ("client_secret", "emulator-client-secret"),
            ("scope", &scope),
        ],
    )
    .await;
    let t = r.body["access_token"].as_str().unwrap();
    let ok = send(
        &e.http,
        Method::GET,
        &e.url(&with_version(&ws_path())),
        Some(t),
        None,
    )
    .await;
    assert_eq!(ok.status, StatusCode::OK);
    // Logged with the principal.
    let log = e.control.requests(None).await.unwrap();
    assert!(log.counts.get("Token 200").copied().unwrap_or(0) >= 2);
    assert!(
        log.entries
            .iter()
            .any(|x| x.operation == "Workspaces_Get"
                && x.principal.as_deref() == Some(SECRET_CLIENT))
    );
}

#[tokio::test]
async fn token_errors_have_entra_shape() {
    let e = env().await;
    let r = token(
        &e,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", SECRET_CLIENT),
            ("client_secret", "wrong"),
            ("scope", SCOPE),
        ],
    )
    .await;
    assert_entra_error(&r, StatusCode::UNAUTHORIZED, "invalid_client", 7000215);
    let r = token(
        &e,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", "44444444-4444-4444-4444-444444444444"),
            ("client_secret", "x"),
            ("scope", SCOPE),
        ],
    )
    .await;
    assert_entra_error(&r, StatusCode::BAD_REQUEST, "unauthorized_client", 700016);
    let r = token(
        &e,
        &[
            ("client_id", SECRET_CLIENT),
            ("client_secret", "x"),
            ("scope", SCOPE),
        ],
    )
    .await;
    assert_entra_error(&r, StatusCode::BAD_REQUEST, "invalid_request", 900144);
    let r = token(
        &e,
        &[
            ("grant_type", "password"),
            ("client_id", SECRET_CLIENT),
            ("scope", SCOPE),
        ],
    )
    .await;
    assert_entra_error(&r, StatusCode::BAD_REQUEST, "unsupported_grant_type", 70003);
    let r = token(
        &e,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", SECRET_CLIENT),
            ("client_secret", "emulator-client-secret"),
            ("scope", "https://management.azure.com/user_impersonation"),
        ],
    )
    .await;
    assert_entra_error(&r, StatusCode::BAD_REQUEST, "invalid_scope", 1002012);
    let r = token(
        &e,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", SECRET_CLIENT),
            ("client_secret", "emulator-client-secret"),
            ("scope", "https://graph.microsoft.com/.default"),
        ],
    )
    .await;
    assert_entra_error(&r, StatusCode::BAD_REQUEST, "invalid_resource", 500011);
    let r = token(
        &e,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", SECRET_CLIENT),
            ("scope", SCOPE),
        ],
    )
    .await;
    assert_entra_error(&r, StatusCode::UNAUTHORIZED, "invalid_client", 7000218);
    // Unknown tenant.
    let url = format!(
        "{}/99999999-1111-1111-1111-111111111111/oauth2/v2.0/token",
        e.emu.base_url()
    );
    let r = into_resp(
        e.http
            .post(url)
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_entra_error(&r, StatusCode::BAD_REQUEST, "invalid_request", 90002);
    // JSON body instead of a form: Entra sees no parameters.
    let r = into_resp(
        e.http
            .post(e.emu.token_url())
            .json(&json!({"grant_type":"client_credentials"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_entra_error(&r, StatusCode::BAD_REQUEST, "invalid_request", 900144);
    // GET on the token endpoint.
    let r = into_resp(e.http.get(e.emu.token_url()).send().await.unwrap()).await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    let log = e.control.requests(None).await.unwrap();
    assert_eq!(log.counts.get("Token 401").copied(), Some(2));
}

#[tokio::test]
async fn federated_assertion() {
    let e = env().await;
    let jwt_type = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
    let ok = jwt(&sa_claims());
    let r = token(
        &e,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", FED_CLIENT),
            ("client_assertion_type", jwt_type),
            ("client_assertion", &ok),
            ("scope", SCOPE),
        ],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let t = r.body["access_token"].as_str().unwrap();
    assert_eq!(
        send(
            &e.http,
            Method::GET,
            &e.url(&with_version(&ws_path())),
            Some(t),
            None
        )
        .await
        .status,
        StatusCode::OK
    );

    let mut expired = sa_claims();
    expired["exp"] = json!(now() - 5);
    let r = token(
        &e,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", FED_CLIENT),
            ("client_assertion_type", jwt_type),
            ("client_assertion", &jwt(&expired)),
            ("scope", SCOPE),
        ],
    )
    .await;
    assert_entra_error(&r, StatusCode::BAD_REQUEST, "invalid_client", 700024);

    let mut wrong_sub = sa_claims();
    wrong_sub["sub"] = json!("system:serviceaccount:default:default");
    let r = token(
        &e,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", FED_CLIENT),
            ("client_assertion_type", jwt_type),
            ("client_assertion", &jwt(&wrong_sub)),
            ("scope", SCOPE),
        ],
    )
    .await;
    assert_entra_error(&r, StatusCode::BAD_REQUEST, "invalid_request", 70021);

    let mut wrong_iss = sa_claims();
    wrong_iss["iss"] = json!("https://evil.example");
    let r = token(
        &e,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", FED_CLIENT),
            ("client_assertion_type", jwt_type),
            ("client_assertion", &jwt(&wrong_iss)),
            ("scope", SCOPE),
        ],
    )
    .await;
    assert_entra_error(&r, StatusCode::BAD_REQUEST, "invalid_request", 70021);

    let mut wrong_aud = sa_claims();
    wrong_aud["aud"] = json!("https://kubernetes.default.svc");
    let r = token(
        &e,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", FED_CLIENT),
            ("client_assertion_type", jwt_type),
            ("client_assertion", &jwt(&wrong_aud)),
            ("scope", SCOPE),
        ],
    )
    .await;
    assert_entra_error(&r, StatusCode::BAD_REQUEST, "invalid_request", 700212);

    let r = token(
        &e,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", FED_CLIENT),
            ("client_assertion_type", jwt_type),
            ("client_assertion", "not-a-jwt"),
            ("scope", SCOPE),
        ],
    )
    .await;
    assert_entra_error(&r, StatusCode::BAD_REQUEST, "invalid_request", 50027);

    // The secret client has no federated credential.
    let r = token(
        &e,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", SECRET_CLIENT),
            ("client_assertion_type", jwt_type),
            ("client_assertion", &ok),
            ("scope", SCOPE),
        ],
    )
    .await;
    assert_entra_error(&r, StatusCode::BAD_REQUEST, "invalid_request", 70021);
}

#[tokio::test]
async fn arm_rejects_missing_or_bad_tokens() {
    let e = env().await;
    let url = e.url(&with_version(&ws_path()));
    let r = send(&e.http, Method::GET, &url, None, None).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::UNAUTHORIZED, "AuthenticationFailed")
    );
    let challenge = r.header("www-authenticate").unwrap();
    assert!(
        challenge.starts_with("Bearer authorization_uri="),
        "{challenge}"
    );
    assert!(challenge.contains("error=\"invalid_token\""));

    let r = send(&e.http, Method::GET, &url, Some("garbage"), None).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::UNAUTHORIZED, "InvalidAuthenticationToken")
    );
    assert!(r.header("www-authenticate").is_some());

    let r = into_resp(
        e.http
            .get(&url)
            .header("authorization", "Basic abc")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::UNAUTHORIZED, "AuthenticationFailed")
    );

    // A token from another emulator instance (different signing key).
    let other = env().await;
    let r = send(&e.http, Method::GET, &url, Some(&other.token), None).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::UNAUTHORIZED, "InvalidAuthenticationToken")
    );

    // An expired token.
    e.control
        .update_config(&SettingsPatch {
            token_lifetime_secs: Some(0),
            ..Default::default()
        })
        .await
        .unwrap();
    let stale = e.control.default_token().await.unwrap();
    let r = send(&e.http, Method::GET, &url, Some(&stale), None).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::UNAUTHORIZED, "ExpiredAuthenticationToken")
    );
    let log = e.control.requests(None).await.unwrap();
    assert_eq!(log.counts.get("Workspaces_Get 401").copied(), Some(5));
}

#[tokio::test]
async fn managed_identity_endpoint() {
    let mut cfg = EmulatorConfig::fast();
    cfg.managed_identities = vec![ManagedIdentity {
        client_id: "55555555-5555-5555-5555-555555555555".into(),
    }];
    let e = env_with(cfg).await;
    let url = format!(
        "{}/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https://management.azure.com/",
        e.emu.base_url()
    );
    let r = into_resp(e.http.get(&url).send().await.unwrap()).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = into_resp(
        e.http
            .get(&url)
            .header("Metadata", "true")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["client_id"], "55555555-5555-5555-5555-555555555555");
    let t = r.body["access_token"].as_str().unwrap();
    assert_eq!(
        send(
            &e.http,
            Method::GET,
            &e.url(&with_version(&ws_path())),
            Some(t),
            None
        )
        .await
        .status,
        StatusCode::OK
    );
    // Default world: no managed identity.
    let d = env().await;
    let url = format!(
        "{}/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https://management.azure.com/",
        d.emu.base_url()
    );
    let r = into_resp(
        d.http
            .get(&url)
            .header("Metadata", "true")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}
