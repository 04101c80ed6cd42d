//! Property tests of everything in `azure` that reads what ARM sends (response bodies, error
//! bodies, headers, URLs) and of the throttle under arbitrary event sequences.
//!
//! The rule for input from the network: `Ok` or a typed error, never a panic. Where a type
//! serializes, what we write must read back the same. Case counts are bounded so that
//! `cargo test` stays fast.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use azure_core::credentials::{AccessToken, TokenCredential, TokenRequestOptions};
use proptest::prelude::*;
use proptest::sample::select;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use secrecy::SecretString;
use serde_json::{Map, Value, json};

use super::arm::{ArmClient, WorkspaceRef, parse_operation_body};
use super::cloud::{AzureConfig, AzureOptions, Cloud, EndpointOverrides};
use super::error::{ArmError, ArmErrorKind, AzureFault};
use super::headers::{
    BudgetScope, MAX_RETRY_AFTER, RemainingReport, parse_remaining, parse_retry_after,
    remaining_reports,
};
use super::models::{
    AdministratorAccount, Compute, ComputeProperties, ComputeResource, ComputeSecrets, ComputeType,
    DataLakeAnalyticsProperties, DatabricksProperties, ErrorAdditionalInfo, ErrorDetail,
    ErrorResponse, HdInsightProperties, ManagedServiceIdentity, OpaqueProperties, OperationState,
    PaginatedComputeResourcesList, Sku, VirtualMachineProperties, Workspace,
};
use super::throttle::{BucketConfig, OpClass, Throttle, ThrottleConfig, Ticket};

/// Planted in every generated secret: no `Debug` output may contain it.
const SECRET_MARK: &str = "S3CR3T";

/// Field names of the bodies ARM sends, so generated JSON reaches the typed paths.
const KEYS: &[&str] = &[
    "id",
    "name",
    "type",
    "location",
    "tags",
    "identity",
    "sku",
    "tier",
    "properties",
    "computeType",
    "resourceId",
    "description",
    "computeLocation",
    "disableLocalAuth",
    "provisioningState",
    "provisioningErrors",
    "isAttachedCompute",
    "createdOn",
    "modifiedOn",
    "virtualMachineSize",
    "sshPort",
    "notebookServerPort",
    "address",
    "administratorAccount",
    "username",
    "password",
    "publicKeyData",
    "privateKeyData",
    "isNotebookInstanceCompute",
    "databricksAccessToken",
    "workspaceUrl",
    "dataLakeStoreAccountName",
    "value",
    "nextLink",
    "status",
    "percentComplete",
    "startTime",
    "endTime",
    "error",
    "code",
    "message",
    "target",
    "details",
    "additionalInfo",
    "info",
    "principalId",
    "tenantId",
    "userAssignedIdentities",
    "workspaceId",
    "friendlyName",
    "discoveryUrl",
    "userKubeConfig",
    "adminKubeConfig",
    "imagePullSecretName",
];

/// String values with meaning somewhere (discriminators, states, casing variants).
const WORDS: &[&str] = &[
    "VirtualMachine",
    "virtualmachine",
    "HDInsight",
    "Databricks",
    "DataLakeAnalytics",
    "Batch",
    "AKS",
    "AmlCompute",
    "Kubernetes",
    "Succeeded",
    "Failed",
    "Canceled",
    "InProgress",
    "Creating",
    "Deleting",
    "SystemAssigned",
    "",
];

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => select(KEYS).prop_map(str::to_owned),
        1 => "[a-zA-Z]{0,8}",
    ]
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => select(WORDS).prop_map(str::to_owned),
        2 => ".{0,24}",
        // Long enough to exercise message truncation at 512 bytes, with multi-byte chars.
        1 => "[é€a]{500,600}",
    ]
}

fn number() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<i32>().prop_map(Value::from),
        (-1000i64..1000).prop_map(Value::from),
        any::<f64>().prop_filter_map("JSON has no NaN or infinity", |f| {
            serde_json::Number::from_f64(f).map(Value::Number)
        }),
        Just(json!(i64::from(i32::MAX) + 1)),
        Just(json!(1e300)),
    ]
}

/// Arbitrary JSON, biased towards ARM's field names.
fn arb_json() -> BoxedStrategy<Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        number(),
        text().prop_map(Value::String),
    ];
    leaf.prop_recursive(5, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::vec((key(), inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
    .boxed()
}

/// A secret value: marked, so `Debug` output can be searched for it.
fn secret_text() -> impl Strategy<Value = String> {
    ".{0,8}".prop_map(|s| format!("{SECRET_MARK}{s}"))
}

/// A compute body's skeleton with arbitrary parts, so the discriminator path is always taken,
/// and secrets where the VirtualMachine, HDInsight and Databricks shapes keep them.
fn compute_shaped() -> impl Strategy<Value = Value> {
    (
        select(WORDS),
        arb_json(),
        arb_json(),
        arb_json(),
        any::<bool>(),
        (secret_text(), secret_text(), any::<bool>()),
    )
        .prop_map(
            |(ty, props, resource_id, errors, wrap, (password, token, plant))| {
                let mut props = props;
                if plant {
                    if !props.is_object() {
                        props = json!({});
                    }
                    if let Value::Object(map) = &mut props {
                        map.insert(
                            "administratorAccount".into(),
                            json!({"username": "u", "password": password, "privateKeyData": token}),
                        );
                        map.insert("databricksAccessToken".into(), Value::String(token));
                    }
                }
                let compute = json!({
                    "computeType": ty,
                    "resourceId": resource_id,
                    "provisioningErrors": errors,
                    "properties": props,
                });
                if wrap {
                    json!({"id": "/x", "name": "c", "properties": compute})
                } else {
                    json!({"value": [{"properties": compute}], "nextLink": ty})
                }
            },
        )
}

fn any_body() -> impl Strategy<Value = Value> {
    prop_oneof![arb_json(), compute_shaped()]
}

/// Serialized bytes of arbitrary JSON, sometimes cut or with a byte changed, or plain noise.
fn any_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..64),
        (
            any_body(),
            any::<prop::sample::Index>(),
            any::<u8>(),
            any::<bool>()
        )
            .prop_map(|(v, at, byte, cut)| {
                let mut bytes = serde_json::to_vec(&v).unwrap_or_default();
                if !bytes.is_empty() {
                    let i = at.index(bytes.len());
                    if cut {
                        bytes.truncate(i);
                    } else {
                        bytes[i] = byte;
                    }
                }
                bytes
            }),
    ]
}

fn json_of<T: serde::Serialize>(value: &T) -> Value {
    serde_json::to_value(value).expect("our types serialize")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Compute bodies: parse or a serde error; what parses writes and reads back stably.
    #[test]
    fn compute_bodies_never_panic(v in any_body()) {
        if let Ok(compute) = serde_json::from_value::<ComputeResource>(v.clone()) {
            let written = json_of(&compute);
            let again: ComputeResource = serde_json::from_value(written.clone())
                .expect("what we write reads back");
            prop_assert_eq!(json_of(&again), written);
            let shown = format!("{compute:?}");
            prop_assert!(!shown.contains(SECRET_MARK), "{}", shown);
            let _ = (compute.compute_type(), compute.resource_id(), compute.provisioning_state());
        }
        if let Ok(page) = serde_json::from_value::<PaginatedComputeResourcesList>(v.clone()) {
            for c in &page.value {
                let _ = json_of(c);
            }
        }
        let _ = serde_json::from_value::<Workspace>(v.clone());
        let _ = serde_json::from_value::<ComputeSecrets>(v);
    }

    /// listKeys answers: read tolerantly, and no secret ever shows in `Debug`.
    #[test]
    fn list_keys_answers_never_show_secrets(
        ty in select(WORDS),
        account in prop_oneof![
            (text(), secret_text(), secret_text()).prop_map(|(u, p, k)| {
                json!({"username": u, "password": p, "privateKeyData": k, "publicKeyData": k})
            }),
            arb_json(),
        ],
        token in secret_text(),
        kube in secret_text(),
        extra in arb_json(),
    ) {
        let body = json!({
            "computeType": ty,
            "administratorAccount": account,
            "databricksAccessToken": token,
            "userKubeConfig": kube,
            "adminKubeConfig": kube,
            "imagePullSecretName": "pull",
            "extra": extra,
        });
        if let Ok(secrets) = serde_json::from_value::<ComputeSecrets>(body) {
            let shown = format!("{secrets:?}");
            prop_assert!(!shown.contains(SECRET_MARK), "{}", shown);
        }
    }

    #[test]
    fn bodies_from_bytes_never_panic(bytes in any_bytes()) {
        let _ = serde_json::from_slice::<ComputeResource>(&bytes);
        let _ = serde_json::from_slice::<PaginatedComputeResourcesList>(&bytes);
        let _ = serde_json::from_slice::<Workspace>(&bytes);
        let _ = serde_json::from_slice::<ComputeSecrets>(&bytes);
        let _ = AzureFault::from_body(&bytes);
        match parse_operation_body(&bytes) {
            Ok(_) => {}
            Err(e) => prop_assert_eq!(e.kind(), ArmErrorKind::Decode),
        }
    }

    /// Async-operation polls: a `status` string is read as that state, a body without one is a
    /// finished `Location` poll, and anything else is a typed decode error.
    #[test]
    fn operation_bodies(v in any_body(), status in text()) {
        let mut v = v;
        let with_status = match &mut v {
            Value::Object(map) => {
                map.insert("status".into(), Value::String(status.clone()));
                true
            }
            _ => false,
        };
        let bytes = serde_json::to_vec(&v).expect("serializes");
        match parse_operation_body(&bytes) {
            Ok(op) if with_status => {
                prop_assert_eq!(op.status, OperationState::from(status.as_str()));
            }
            Ok(_) => {}
            Err(e) => prop_assert_eq!(e.kind(), ArmErrorKind::Decode),
        }
    }

    /// Error answers: the status decides the kind, Azure's message is kept but bounded.
    #[test]
    fn error_answers(status in 400u16..600, body in prop_oneof![any_bytes(), any_body().prop_map(|v| {
        serde_json::to_vec(&json!({"error": v})).unwrap_or_default()
    })], retry in prop::option::of(0u64..100_000)) {
        let retry_after = retry.map(Duration::from_secs);
        let err = ArmError::from_status("Compute_Get", status, &body, retry_after);
        prop_assert_eq!(err.status(), Some(status));
        let expected = match status {
            401 => ArmErrorKind::Unauthorized,
            403 => ArmErrorKind::Forbidden,
            404 => ArmErrorKind::NotFound,
            409 => ArmErrorKind::Conflict,
            429 => ArmErrorKind::Throttled,
            500..=599 => ArmErrorKind::Server,
            _ => ArmErrorKind::BadRequest,
        };
        prop_assert_eq!(err.kind(), expected);
        if status == 429 {
            prop_assert!(err.retry_after().is_some());
        }
        let fault = AzureFault::from_body(&body);
        prop_assert!(fault.message.len() <= 512 + '…'.len_utf8(), "{}", fault.message.len());
        let _ = (err.to_string(), err.metric_label(), err.is_permanent(), err.code());
    }

    #[test]
    fn error_responses_round_trip(e in arb_error_response()) {
        let back: ErrorResponse = serde_json::from_value(json_of(&e)).expect("reads back");
        prop_assert_eq!(back, e);
    }

    /// Bodies the operator builds (typed, consistent computeType and properties) survive a
    /// write and a read unchanged.
    #[test]
    fn compute_resources_round_trip(c in arb_compute_resource()) {
        let written = json_of(&c);
        let back: ComputeResource = serde_json::from_value(written.clone()).expect("reads back");
        prop_assert_eq!(json_of(&back), written);
        prop_assert_eq!(back.compute_type(), c.compute_type());
        prop_assert_eq!(back.resource_id(), c.resource_id());
        let shown = format!("{back:?}");
        prop_assert!(!shown.contains(SECRET_MARK), "{}", shown);
    }

    /// `Retry-After`: any text gives no delay or one of at most an hour.
    #[test]
    fn retry_after_any_text(value in ".{0,40}", now in 0u64..1 << 35) {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(now);
        if let Some(d) = parse_retry_after(&value, now) {
            prop_assert!(d <= MAX_RETRY_AFTER);
        }
    }

    #[test]
    fn retry_after_seconds(n in 0u64..1_000_000, frac in prop::option::of(0u32..1000)) {
        let now = SystemTime::UNIX_EPOCH;
        let capped = Duration::from_secs(n).min(MAX_RETRY_AFTER);
        prop_assert_eq!(parse_retry_after(&n.to_string(), now), Some(capped));
        if let Some(ms) = frac {
            let d = parse_retry_after(&format!("{n}.{ms:03}"), now).expect("a decimal");
            prop_assert!(d <= MAX_RETRY_AFTER);
        }
    }

    /// The HTTP-date form, written by the reference formatter, reads back as the same delay.
    #[test]
    fn retry_after_http_dates(now in 0u64..253_402_200_000, delay in 0u64..7200) {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(now);
        let date = httpdate::fmt_http_date(now + Duration::from_secs(delay));
        prop_assert_eq!(
            parse_retry_after(&date, now),
            Some(Duration::from_secs(delay).min(MAX_RETRY_AFTER))
        );
    }

    #[test]
    fn remaining_counts(n in any::<u32>(), pad in "[ \t]{0,2}", junk in ".{0,12}") {
        prop_assert_eq!(parse_remaining(&format!("{pad}{n}{pad}")), Some(n));
        if let Some(m) = parse_remaining(&junk) {
            prop_assert!(junk.trim().bytes().all(|b| b.is_ascii_digit()), "{} -> {}", junk, m);
        }
        let digits = format!("{n}{n}{n}");
        let expected = digits.parse::<u64>().map_or(u32::MAX, |v| u32::try_from(v).unwrap_or(u32::MAX));
        prop_assert_eq!(parse_remaining(&digits), Some(expected));
    }

    /// Any set of headers: every report comes from a known header whose value is a count.
    #[test]
    fn remaining_headers(headers in arb_headers()) {
        let reports = remaining_reports(&headers);
        prop_assert!(reports.len() <= 6);
        for r in &reports {
            let scope = match r.scope {
                BudgetScope::Principal => "",
                BudgetScope::Global => "global-",
            };
            let name = format!("x-ms-ratelimit-remaining-subscription-{scope}{}s", r.class);
            let value = headers.get(&name).and_then(|v| v.to_str().ok()).unwrap_or_default();
            prop_assert_eq!(parse_remaining(value), Some(r.remaining), "{}", name);
        }
    }

    /// Whatever the names, a detach URL says Detach exactly once, never anything else, and
    /// stays on the ARM endpoint; names that are not path segments are refused.
    #[test]
    fn detach_urls(sub in name(), rg in name(), ws in name(), compute in name()) {
        let client = client();
        let workspace = WorkspaceRef::new(sub.clone(), rg.clone(), ws.clone());
        match client.detach_url(&workspace, &compute) {
            Ok(url) => {
                prop_assert_eq!(url.origin(), client.endpoints().arm_endpoint.origin());
                let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
                let actions: Vec<&(String, String)> = pairs
                    .iter()
                    .filter(|(k, _)| k.eq_ignore_ascii_case("underlyingResourceAction"))
                    .collect();
                prop_assert_eq!(actions.len(), 1, "{}", url);
                prop_assert_eq!(actions[0].1.as_str(), "Detach");
                prop_assert_eq!(pairs.iter().filter(|(k, _)| k == "api-version").count(), 1);
                let segments: Vec<String> = url
                    .path_segments()
                    .expect("a base URL")
                    .map(percent_decode)
                    .collect();
                let expected = [
                    "subscriptions", &sub, "resourceGroups", &rg, "providers",
                    "Microsoft.MachineLearningServices", "workspaces", &ws, "computes", &compute,
                ];
                prop_assert_eq!(segments, expected);
            }
            Err(e) => {
                prop_assert_eq!(e.kind(), ArmErrorKind::InvalidOperationUrl);
                let refused = [&sub, &rg, &ws, &compute].iter().any(|s| {
                    matches!(s.as_str(), "" | "." | "..") || s.chars().any(char::is_control)
                });
                prop_assert!(refused, "{}", e);
            }
        }
    }

    /// URLs from Azure (operation URLs, nextLinks) are only accepted on the ARM endpoint.
    #[test]
    fn operation_urls(raw in prop_oneof![
        ".{0,40}",
        "https://127\\.0\\.0\\.1:8443/[a-z/?=&.%]{0,30}",
        "(https?|ftp)://[a-z0-9.:@]{1,20}/[a-z]{0,5}",
    ], add_version in any::<bool>()) {
        let client = client();
        if let Ok(url) = client.same_origin_url(&raw, add_version) {
            prop_assert_eq!(url.origin(), client.endpoints().arm_endpoint.origin());
            if add_version {
                prop_assert!(url.query_pairs().any(|(k, _)| k == "api-version"));
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// The throttle under arbitrary interleavings of spending, answers, reports, 429s and time:
    /// no panic, never more than the burst, outstanding counts exact, and every report caps
    /// the bucket at `remaining − outstanding − margin`; a report after ARM's first word never
    /// raises it.
    #[test]
    fn throttle_event_sequences(config in arb_throttle_config(), events in prop::collection::vec(arb_event(), 1..48)) {
        let t0 = Instant::now();
        let mut now = t0;
        let throttle = Throttle::new(config);
        let mut open: Vec<(OpClass, Ticket<'_>)> = Vec::new();
        let mut reported = std::collections::HashSet::new();
        const S: &str = "sub";
        for event in events {
            match event {
                Event::Advance(ms) => now += Duration::from_millis(ms),
                Event::Take(class) => {
                    let _ = throttle.try_acquire_at(S, class, now);
                }
                Event::Admit(class) => {
                    if let Ok((wait, ticket)) = throttle.admit_at(S, class, config.max_wait, now) {
                        prop_assert!(wait <= config.max_wait);
                        open.push((class, ticket));
                    }
                }
                Event::Answer(i, reports) => {
                    if !open.is_empty() {
                        let (_, ticket) = open.remove(i.index(open.len()));
                        ticket.answered_at(&reports, now);
                        for r in reports.iter().filter(|r| r.scope == BudgetScope::Principal) {
                            reported.insert(r.class);
                        }
                    }
                }
                Event::Drop(i) => {
                    if !open.is_empty() {
                        drop(open.remove(i.index(open.len())));
                    }
                }
                Event::Report(report) => {
                    let class = report.class;
                    let before = throttle.available_at(S, class, now);
                    throttle.report_at(S, report, now);
                    let after = throttle.available_at(S, class, now);
                    let outstanding = throttle.outstanding(S, class);
                    let ceiling = f64::from(report.remaining) - f64::from(outstanding)
                        - config.margin(class);
                    prop_assert!(after <= ceiling, "{after} > {ceiling}");
                    if reported.contains(&class) || report.scope == BudgetScope::Global {
                        prop_assert!(after <= before, "raised from {before} to {after}");
                    }
                    if report.scope == BudgetScope::Principal {
                        reported.insert(class);
                    }
                }
                Event::Throttled(class, ms) => {
                    throttle.on_throttled_at(S, class, Duration::from_millis(ms), now);
                    reported.insert(class);
                    prop_assert!(throttle.available_at(S, class, now) <= 0.0);
                }
            }
            for class in [OpClass::Read, OpClass::Write, OpClass::Delete] {
                let burst = f64::from(config.bucket(class).burst);
                let available = throttle.available_at(S, class, now);
                prop_assert!(available <= burst && !available.is_nan(), "{available}");
                let expected = open.iter().filter(|(c, _)| *c == class).count();
                prop_assert_eq!(throttle.outstanding(S, class) as usize, expected);
            }
        }
        drop(open);
        for class in [OpClass::Read, OpClass::Write, OpClass::Delete] {
            prop_assert_eq!(throttle.outstanding(S, class), 0);
        }
    }
}

#[derive(Clone, Debug)]
enum Event {
    Advance(u64),
    Take(OpClass),
    Admit(OpClass),
    Answer(prop::sample::Index, Vec<RemainingReport>),
    Drop(prop::sample::Index),
    Report(RemainingReport),
    Throttled(OpClass, u64),
}

fn arb_class() -> impl Strategy<Value = OpClass> {
    prop_oneof![
        Just(OpClass::Read),
        Just(OpClass::Write),
        Just(OpClass::Delete)
    ]
}

fn arb_report() -> impl Strategy<Value = RemainingReport> {
    (
        arb_class(),
        prop_oneof![Just(BudgetScope::Principal), Just(BudgetScope::Global)],
        prop_oneof![0u32..300, any::<u32>()],
    )
        .prop_map(|(class, scope, remaining)| RemainingReport {
            class,
            scope,
            remaining,
        })
}

fn arb_event() -> impl Strategy<Value = Event> {
    prop_oneof![
        2 => (0u64..5000).prop_map(Event::Advance),
        1 => arb_class().prop_map(Event::Take),
        3 => arb_class().prop_map(Event::Admit),
        2 => (any::<prop::sample::Index>(), prop::collection::vec(arb_report(), 0..3))
            .prop_map(|(i, r)| Event::Answer(i, r)),
        1 => any::<prop::sample::Index>().prop_map(Event::Drop),
        2 => arb_report().prop_map(Event::Report),
        1 => (arb_class(), prop_oneof![0u64..10_000, any::<u64>()])
            .prop_map(|(c, ms)| Event::Throttled(c, ms)),
    ]
}

fn arb_bucket() -> impl Strategy<Value = BucketConfig> {
    (
        1u32..500,
        prop_oneof![0.001f64..1000.0, Just(1e-9), Just(1e9)],
    )
        .prop_map(|(burst, rate)| BucketConfig::new(burst, rate))
}

fn arb_throttle_config() -> impl Strategy<Value = ThrottleConfig> {
    (
        arb_bucket(),
        arb_bucket(),
        arb_bucket(),
        0u64..20_000,
        0.0f64..=1.0,
        0.0f64..=1.0,
    )
        .prop_map(
            |(reads, writes, deletes, max_wait, initial, margin)| ThrottleConfig {
                reads,
                writes,
                deletes,
                max_wait: Duration::from_millis(max_wait),
                initial_fraction: initial,
                margin_fraction: margin,
            },
        )
}

fn arb_headers() -> impl Strategy<Value = HeaderMap> {
    let name = prop_oneof![
        (
            prop_oneof![Just(""), Just("global-")],
            prop_oneof![Just("reads"), Just("writes"), Just("deletes")],
            any::<bool>()
        )
            .prop_map(|(scope, class, upper)| {
                let n = format!("x-ms-ratelimit-remaining-subscription-{scope}{class}");
                if upper { n.to_uppercase() } else { n }
            }),
        Just("x-ms-ratelimit-remaining-tenant-reads".to_owned()),
        "[a-z-]{1,12}",
    ];
    let value = prop_oneof![
        any::<u32>().prop_map(|n| n.to_string()),
        "[0-9]{0,25}",
        "[ -~]{0,12}",
    ];
    prop::collection::vec((name, value), 0..8).prop_map(|pairs| {
        let mut headers = HeaderMap::new();
        for (n, v) in pairs {
            if let (Ok(n), Ok(v)) = (HeaderName::try_from(n), HeaderValue::try_from(v)) {
                headers.insert(n, v);
            }
        }
        headers
    })
}

fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[a-zA-Z][a-zA-Z0-9-]{2,23}",
        2 => ".{0,12}",
        1 => select(&["", ".", "..", "...", "a/b", "%2e%2e", "?x=1", "#f", " "][..]).prop_map(str::to_owned),
    ]
}

/// `%XX` decoding of a path segment (the url crate only encodes).
fn percent_decode(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

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

/// One client for all cases: building one loads the system's root certificates (slow).
fn client() -> &'static ArmClient {
    static CLIENT: std::sync::LazyLock<ArmClient> = std::sync::LazyLock::new(new_client);
    &CLIENT
}

fn new_client() -> ArmClient {
    let config = AzureConfig::from_parts(
        AzureOptions {
            cloud: Cloud::Custom,
            overrides: EndpointOverrides {
                arm_endpoint: Some("https://127.0.0.1:8443".into()),
                arm_audience: None,
                authority_host: Some("https://login.example".into()),
            },
            ..Default::default()
        },
        None,
    )
    .expect("a valid test configuration");
    ArmClient::new(
        &config,
        Arc::new(NoCredential),
        Arc::new(Throttle::default()),
        None,
    )
}

fn opt_text() -> impl Strategy<Value = Option<String>> {
    prop::option::of(text())
}

fn secret() -> impl Strategy<Value = Option<SecretString>> {
    prop::option::of(".{0,8}".prop_map(|s| SecretString::from(format!("{SECRET_MARK}{s}"))))
}

fn arb_account() -> impl Strategy<Value = Option<AdministratorAccount>> {
    prop::option::of((opt_text(), secret(), secret(), secret()).prop_map(
        |(username, password, public_key_data, private_key_data)| AdministratorAccount {
            username,
            password,
            public_key_data,
            private_key_data,
        },
    ))
}

fn port() -> impl Strategy<Value = Option<i32>> {
    prop::option::of(any::<i32>())
}

/// A compute type with properties of its own shape (what the operator builds).
fn typed_properties() -> BoxedStrategy<(ComputeType, Option<ComputeProperties>)> {
    let vm = (
        opt_text(),
        port(),
        port(),
        opt_text(),
        arb_account(),
        prop::option::of(any::<bool>()),
    )
        .prop_map(
            |(size, ssh, notebook, address, account, notebook_instance)| {
                ComputeProperties::VirtualMachine(VirtualMachineProperties {
                    virtual_machine_size: size,
                    ssh_port: ssh,
                    notebook_server_port: notebook,
                    address,
                    administrator_account: account,
                    is_notebook_instance_compute: notebook_instance,
                })
            },
        );
    let hdi = (port(), opt_text(), arb_account()).prop_map(|(ssh_port, address, account)| {
        ComputeProperties::HdInsight(HdInsightProperties {
            ssh_port,
            address,
            administrator_account: account,
        })
    });
    let dbx = (secret(), opt_text()).prop_map(|(token, workspace_url)| {
        ComputeProperties::Databricks(DatabricksProperties {
            databricks_access_token: token,
            workspace_url,
        })
    });
    let adla = opt_text().prop_map(|name| {
        ComputeProperties::DataLakeAnalytics(DataLakeAnalyticsProperties {
            data_lake_store_account_name: name,
        })
    });
    let other = prop::collection::btree_map("[a-z]{1,6}", arb_json(), 0..4).prop_map(|m| {
        ComputeProperties::Other(OpaqueProperties(Value::Object(m.into_iter().collect())))
    });
    prop_oneof![
        prop::option::of(vm).prop_map(|p| (ComputeType::VirtualMachine, p)),
        prop::option::of(hdi).prop_map(|p| (ComputeType::HdInsight, p)),
        prop::option::of(dbx).prop_map(|p| (ComputeType::Databricks, p)),
        prop::option::of(adla).prop_map(|p| (ComputeType::DataLakeAnalytics, p)),
        (
            select(
                &[
                    ComputeType::Batch,
                    ComputeType::Aks,
                    ComputeType::AmlCompute
                ][..]
            ),
            prop::option::of(other)
        ),
    ]
    .boxed()
}

fn arb_compute_resource() -> BoxedStrategy<ComputeResource> {
    let compute = (
        typed_properties(),
        opt_text(),
        opt_text(),
        opt_text(),
        prop::option::of(any::<bool>()),
    )
        .prop_map(
            |(
                (compute_type, properties),
                resource_id,
                description,
                compute_location,
                disable_local_auth,
            )| {
                let mut c = Compute::new(compute_type, resource_id);
                c.description = description;
                c.compute_location = compute_location;
                c.disable_local_auth = disable_local_auth;
                c.properties = properties;
                c
            },
        );
    let identity = prop::option::of(
        (
            text(),
            prop::option::of(prop::collection::btree_map(text(), Just(json!({})), 0..3)),
        )
            .prop_map(
                |(identity_type, user_assigned_identities)| ManagedServiceIdentity {
                    identity_type,
                    principal_id: None,
                    tenant_id: None,
                    user_assigned_identities,
                },
            ),
    );
    let sku =
        prop::option::of((opt_text(), opt_text()).prop_map(|(name, tier)| Sku { name, tier }));
    (
        opt_text(),
        prop::option::of(prop::collection::btree_map(text(), text(), 0..3)),
        identity,
        sku,
        prop::option::of(compute),
    )
        .prop_map(
            |(location, tags, identity, sku, properties)| ComputeResource {
                location,
                tags,
                identity,
                sku,
                properties,
                ..Default::default()
            },
        )
        .boxed()
}

fn arb_error_detail() -> impl Strategy<Value = ErrorDetail> {
    let leaf =
        (opt_text(), opt_text(), opt_text()).prop_map(|(code, message, target)| ErrorDetail {
            code,
            message,
            target,
            ..Default::default()
        });
    leaf.prop_recursive(3, 16, 3, |inner| {
        (
            opt_text(),
            opt_text(),
            prop::collection::vec(inner, 0..3),
            prop::collection::vec(
                (
                    opt_text(),
                    prop::option::of(
                        arb_json().prop_filter("null reads back as None", |v| !v.is_null()),
                    ),
                )
                    .prop_map(|(info_type, info)| ErrorAdditionalInfo { info_type, info }),
                0..2,
            ),
        )
            .prop_map(|(code, message, details, additional_info)| ErrorDetail {
                code,
                message,
                target: None,
                details,
                additional_info,
            })
    })
}

fn arb_error_response() -> impl Strategy<Value = ErrorResponse> {
    prop::option::of(arb_error_detail()).prop_map(|error| ErrorResponse { error })
}
