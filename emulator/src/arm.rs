//! ARM: workspace GET, computes LIST/GET/PUT/PATCH/DELETE/listKeys/…, and the
//! `computeOperationsStatus` URLs, with ARM's authentication, throttling and validation.

use std::ops::Bound;
use std::sync::MutexGuard;
use std::time::Instant;

use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Duration, Utc};
use http::request::Parts;
use http::{HeaderValue, Method, StatusCode, header};
use serde_json::{Value, json};

use crate::app::{App, host_of};
use crate::compute::{self, Evaluation};
use crate::config::ResourceKind;
use crate::entra::{self, Origin};
use crate::response::{ArmError, Principal, arm_time, empty_response, json_response};
use crate::state::{ComputeRecord, DeletedResource, Inner, OpKind, Operation};
use crate::throttle::{Decision, OpClass};
use crate::underlying::{self, UnderlyingRoute};
use crate::validate::{COMPUTE_NAME_PATTERN_2026, Options, Specs};

/// api-versions the emulator serves: the two newest stable ones and those in the recordings.
pub const SUPPORTED_API_VERSIONS: [&str; 4] = [
    "2026-07-01",
    "2025-12-01",
    "2024-04-01",
    "2022-10-01-preview",
];

const ML_PROVIDER: &str = "Microsoft.MachineLearningServices";
const REQUEST_CONTEXT: &str = "appId=cid-v1:2d2e8e63-272e-4b3c-8598-4ee570a0e70d";

/// An ARM path this emulator understands.
#[derive(Clone, Debug, PartialEq)]
pub enum ArmRoute {
    /// `…/workspaces/{ws}`.
    Workspace {
        /// Subscription.
        sub: String,
        /// Resource group.
        rg: String,
        /// Workspace.
        ws: String,
    },
    /// `…/workspaces/{ws}/computes`.
    ComputeList {
        /// Subscription.
        sub: String,
        /// Resource group.
        rg: String,
        /// Workspace.
        ws: String,
    },
    /// `…/computes/{name}`.
    Compute {
        /// Subscription.
        sub: String,
        /// Resource group.
        rg: String,
        /// Workspace.
        ws: String,
        /// Compute.
        name: String,
    },
    /// `…/computes/{name}/{action}` (listKeys, listNodes, start, stop, restart).
    ComputeAction {
        /// Subscription.
        sub: String,
        /// Resource group.
        rg: String,
        /// Workspace.
        ws: String,
        /// Compute.
        name: String,
        /// Action segment.
        action: String,
    },
    /// An underlying resource preflight reads (VM, NIC, public IP, clusters, extensions, pools).
    Underlying(UnderlyingRoute),
    /// `/subscriptions/{sub}/providers/Microsoft.MachineLearningServices/locations/{loc}/computeOperationsStatus/{id}`.
    OperationStatus {
        /// Subscription.
        sub: String,
        /// Region.
        location: String,
        /// Operation id.
        id: String,
    },
}

impl ArmRoute {
    /// Classify decoded path segments starting with `subscriptions`.
    pub fn classify(s: &[&str]) -> Option<Self> {
        let eq = |a: &str, b: &str| a.eq_ignore_ascii_case(b);
        let o = |x: &str| x.to_owned();
        match s {
            [_, sub, p, ns, l, loc, c, id]
                if eq(p, "providers")
                    && eq(ns, ML_PROVIDER)
                    && eq(l, "locations")
                    && eq(c, "computeOperationsStatus") =>
            {
                Some(Self::OperationStatus {
                    sub: o(sub),
                    location: o(loc),
                    id: o(id),
                })
            }
            [_, sub, g, rg, p, ns, w, ws, rest @ ..]
                if eq(g, "resourceGroups")
                    && eq(p, "providers")
                    && eq(ns, ML_PROVIDER)
                    && eq(w, "workspaces") =>
            {
                let (sub, rg, ws) = (o(sub), o(rg), o(ws));
                match rest {
                    [] => Some(Self::Workspace { sub, rg, ws }),
                    [c] if eq(c, "computes") => Some(Self::ComputeList { sub, rg, ws }),
                    [c, name] if eq(c, "computes") && !name.is_empty() => Some(Self::Compute {
                        sub,
                        rg,
                        ws,
                        name: o(name),
                    }),
                    [c, name, action] if eq(c, "computes") && !name.is_empty() => {
                        Some(Self::ComputeAction {
                            sub,
                            rg,
                            ws,
                            name: o(name),
                            action: o(action),
                        })
                    }
                    _ => None,
                }
            }
            _ => underlying::classify(s).map(Self::Underlying),
        }
    }

    /// api-versions served at this path.
    pub fn api_versions(&self) -> &'static [&'static str] {
        match self {
            Self::Underlying(u) => u.kind.api_versions(),
            _ => &SUPPORTED_API_VERSIONS,
        }
    }

    /// The subscription in the path.
    pub fn subscription(&self) -> &str {
        match self {
            Self::Workspace { sub, .. }
            | Self::ComputeList { sub, .. }
            | Self::Compute { sub, .. }
            | Self::ComputeAction { sub, .. }
            | Self::OperationStatus { sub, .. } => sub,
            Self::Underlying(u) => &u.sub,
        }
    }

    /// The spec's operationId.
    pub fn operation(&self, method: &Method) -> &'static str {
        match (self, method.as_str()) {
            (Self::Workspace { .. }, "GET") => "Workspaces_Get",
            (Self::ComputeList { .. }, "GET") => "Compute_List",
            (Self::Compute { .. }, "GET") => "Compute_Get",
            (Self::Compute { .. }, "PUT") => "Compute_CreateOrUpdate",
            (Self::Compute { .. }, "PATCH") => "Compute_Update",
            (Self::Compute { .. }, "DELETE") => "Compute_Delete",
            (Self::ComputeAction { action, .. }, "POST") => {
                match action.to_ascii_lowercase().as_str() {
                    "listkeys" => "Compute_ListKeys",
                    "listnodes" => "Compute_ListNodes",
                    "start" => "Compute_Start",
                    "stop" => "Compute_Stop",
                    "restart" => "Compute_Restart",
                    _ => "NotFound",
                }
            }
            (Self::OperationStatus { .. }, "GET") => "ComputeOperationsStatus_Get",
            (Self::Underlying(u), "GET") => u.kind.operation(),
            _ => "MethodNotAllowed",
        }
    }
}

/// Query parameters (names compared case-insensitively).
struct Query(Vec<(String, String)>);

impl Query {
    fn parse(q: Option<&str>) -> Self {
        Self(serde_urlencoded::from_str(q.unwrap_or("")).unwrap_or_default())
    }
    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Per-request context for handlers.
struct Ctx<'a> {
    app: &'a App,
    api_version: &'a str,
    /// `https://host` for URLs handed back to the client.
    base: String,
    path: &'a str,
    query: &'a Query,
    now: DateTime<Utc>,
}

/// Handle an ARM request: authenticate, throttle, validate, dispatch.
pub fn handle(
    app: &App,
    mut inner: MutexGuard<'_, Inner>,
    origin: &Origin<'_>,
    parts: &Parts,
    route: &ArmRoute,
    body: &[u8],
) -> Response {
    let now = Utc::now();
    inner.settle(now);
    let claims = match entra::authenticate(&inner, origin, &parts.headers) {
        Ok(c) => c,
        Err(e) => return with_ml_headers(e.into_response()),
    };
    let principal = claims.appid.clone();
    let class = OpClass::of_method(&parts.method);
    let throttling = inner.settings.throttling.clone();
    let decision = inner.throttle.take(
        &throttling,
        route.subscription(),
        &principal,
        class,
        Instant::now(),
    );
    let mut resp = match decision {
        Decision::Throttled { retry_after_secs } => {
            let mut e = ArmError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "SubscriptionRequestsThrottled",
                format!(
                    "Number of '{}' requests for subscription '{}' actor '{}' exceeded. Please try again after '{}' seconds after additional tokens are available. Refer to https://aka.ms/arm-throttling",
                    class.as_str(),
                    route.subscription(),
                    claims.oid,
                    retry_after_secs
                ),
            );
            e.retry_after = Some(retry_after_secs);
            let mut r = e.into_response();
            r.headers_mut()
                .insert(class.header(), HeaderValue::from(0u32));
            r
        }
        Decision::Allowed { remaining } => {
            let query = Query::parse(parts.uri.query());
            let base = host_of(parts)
                .map(|h| format!("https://{h}"))
                .unwrap_or_else(|| app.base_url.clone());
            let mut r = match query.get("api-version") {
                None => ArmError::bad_request(
                    "MissingApiVersionParameter",
                    "The api-version query parameter (?api-version=) is required for all requests.",
                )
                .into_response(),
                Some(v) if let ArmRoute::Underlying(u) = route
                    && !u.kind.api_versions().contains(&v) =>
                {
                    ArmError::bad_request(
                        "NoRegisteredProviderFound",
                        format!(
                            "No registered resource provider found for location '{}' and API version '{v}' for type '{}'. The supported api-versions are '{}'.",
                            inner
                                .workspaces
                                .first()
                                .map_or("westeurope", |w| w.location.as_str()),
                            u.kind.operation().split('_').next().unwrap_or_default(),
                            u.kind.api_versions().join(", ")
                        ),
                    )
                    .into_response()
                }
                Some(v) if !route.api_versions().contains(&v) => ArmError::bad_request(
                    "InvalidApiVersionParameter",
                    format!(
                        "The api-version '{v}' is invalid. The supported versions are '{}'.",
                        SUPPORTED_API_VERSIONS.join(",")
                    ),
                )
                .into_response(),
                Some(api_version) => {
                    let ctx = Ctx {
                        app,
                        api_version,
                        base,
                        path: parts.uri.path(),
                        query: &query,
                        now,
                    };
                    match dispatch(&ctx, &mut inner, parts, route, body) {
                        Ok(r) => r,
                        Err(e) => e.into_response(),
                    }
                }
            };
            r.headers_mut()
                .insert(class.header(), HeaderValue::from(remaining));
            r
        }
    };
    resp.extensions_mut().insert(Principal(principal));
    with_ml_headers(resp)
}

fn with_ml_headers(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert("request-context", HeaderValue::from_static(REQUEST_CONTEXT));
    h.insert("x-ms-response-type", HeaderValue::from_static("standard"));
    h.insert("x-request-time", HeaderValue::from_static("0.010"));
    resp
}

fn dispatch(
    ctx: &Ctx<'_>,
    inner: &mut Inner,
    parts: &Parts,
    route: &ArmRoute,
    body: &[u8],
) -> Result<Response, ArmError> {
    let method = &parts.method;
    match route {
        ArmRoute::Underlying(u) => {
            if method != Method::GET {
                return Err(method_not_allowed(method));
            }
            Ok(json_response(StatusCode::OK, &underlying::get(inner, u)?))
        }
        ArmRoute::OperationStatus { sub, location, id } => {
            if method != Method::GET {
                return Err(method_not_allowed(method));
            }
            operation_status(ctx, inner, sub, location, id)
        }
        ArmRoute::Workspace { sub, rg, ws } => {
            let wi = find_workspace(ctx, inner, sub, rg, ws)?;
            if method != Method::GET {
                return Err(method_not_allowed(method));
            }
            Ok(json_response(StatusCode::OK, &workspace_body(inner, wi)))
        }
        ArmRoute::ComputeList { sub, rg, ws } => {
            let wi = find_workspace(ctx, inner, sub, rg, ws)?;
            if method != Method::GET {
                return Err(method_not_allowed(method));
            }
            list_computes(ctx, inner, wi)
        }
        ArmRoute::Compute { sub, rg, ws, name } => {
            let wi = find_workspace(ctx, inner, sub, rg, ws)?;
            check_compute_name(ctx, name)?;
            match *method {
                Method::GET => {
                    let rec = find_compute(inner, wi, name, rg)?;
                    let ws = &inner.workspaces[wi];
                    Ok(json_response(
                        StatusCode::OK,
                        &compute::compute_body(rec, ws, &inner.tenant_id, ctx.now),
                    ))
                }
                Method::PUT => put_compute(ctx, inner, wi, name, &parts.headers, body),
                Method::PATCH => patch_compute(ctx, inner, wi, name, rg, &parts.headers, body),
                Method::DELETE => delete_compute(ctx, inner, wi, name),
                _ => Err(method_not_allowed(method)),
            }
        }
        ArmRoute::ComputeAction {
            sub,
            rg,
            ws,
            name,
            action,
        } => {
            let wi = find_workspace(ctx, inner, sub, rg, ws)?;
            check_compute_name(ctx, name)?;
            if method != Method::POST {
                return Err(method_not_allowed(method));
            }
            let action = action.to_ascii_lowercase();
            if !matches!(
                action.as_str(),
                "listkeys" | "listnodes" | "start" | "stop" | "restart"
            ) {
                return Err(not_found_path(ctx.path));
            }
            let rec = find_compute(inner, wi, name, rg)?;
            match action.as_str() {
                "listkeys" => Ok(json_response(StatusCode::OK, &compute::secrets_body(rec))),
                "listnodes" if rec.compute_type == "AmlCompute" => Ok(json_response(
                    StatusCode::OK,
                    &json!({ "nodes": [], "nextLink": null }),
                )),
                "start" | "stop" | "restart" if rec.compute_type == "ComputeInstance" => {
                    Ok(empty_response(StatusCode::ACCEPTED))
                }
                _ => Err(ArmError::bad_request(
                    "OperationNotSupported",
                    format!(
                        "The operation '{action}' is not supported for compute type '{}'.",
                        rec.compute_type
                    ),
                )),
            }
        }
    }
}

fn method_not_allowed(method: &Method) -> ArmError {
    ArmError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "MethodNotAllowed",
        format!("The HTTP method '{method}' is not supported at this path."),
    )
}

fn not_found_path(path: &str) -> ArmError {
    ArmError::new(
        StatusCode::NOT_FOUND,
        "NotFound",
        format!("The requested path '{path}' was not found."),
    )
}

fn invalid_param(target: &str, message: String) -> ArmError {
    ArmError::bad_request("InvalidParameter", message).with_target(target)
}

/// Validate the path's parameters and find the workspace (ARM's 400/404 order).
fn find_workspace(
    ctx: &Ctx<'_>,
    inner: &Inner,
    sub: &str,
    rg: &str,
    ws: &str,
) -> Result<usize, ArmError> {
    // Recordings use sanitized, non-GUID subscription ids; accept any id the world knows.
    if !inner.subscription_known(sub) && uuid::Uuid::parse_str(sub).is_err() {
        return Err(ArmError::bad_request(
            "InvalidSubscriptionId",
            format!("The provided subscription identifier '{sub}' is malformed or invalid."),
        ));
    }
    let specs = &ctx.app.specs;
    specs
        .check_parameter("ResourceGroupNameParameter", rg)
        .map_err(|m| invalid_param("resourceGroupName", m))?;
    specs
        .check_parameter("WorkspaceNameParameter", ws)
        .map_err(|m| invalid_param("workspaceName", m))?;
    if !inner.subscription_known(sub) {
        return Err(ArmError::new(
            StatusCode::NOT_FOUND,
            "SubscriptionNotFound",
            format!("The subscription '{sub}' could not be found."),
        ));
    }
    if !inner.resource_group_known(sub, rg) {
        return Err(ArmError::new(
            StatusCode::NOT_FOUND,
            "ResourceGroupNotFound",
            format!("Resource group '{rg}' could not be found."),
        ));
    }
    inner.workspace_index(sub, rg, ws).ok_or_else(|| {
        ArmError::new(
            StatusCode::NOT_FOUND,
            "ResourceNotFound",
            format!("The Resource '{ML_PROVIDER}/workspaces/{ws}' under resource group '{rg}' was not found. For more details please go to https://aka.ms/ARMResourceNotFoundFix"),
        )
    })
}

fn check_compute_name(ctx: &Ctx<'_>, name: &str) -> Result<(), ArmError> {
    // Only 2026-07-01 declares a computeName pattern (CONTRACT §1, §7).
    if ctx.api_version == "2026-07-01"
        && !ctx
            .app
            .specs
            .matches_pattern(COMPUTE_NAME_PATTERN_2026, name)
    {
        return Err(invalid_param(
            "computeName",
            format!(
                "The parameter 'computeName' with value '{name}' does not match the pattern '{COMPUTE_NAME_PATTERN_2026}'."
            ),
        ));
    }
    Ok(())
}

fn find_compute<'i>(
    inner: &'i Inner,
    wi: usize,
    name: &str,
    rg: &str,
) -> Result<&'i ComputeRecord, ArmError> {
    let key = inner.compute_key(wi, name);
    inner
        .computes
        .get(&key)
        .ok_or_else(|| compute_not_found(inner, wi, name, rg))
}

fn compute_not_found(inner: &Inner, wi: usize, name: &str, rg: &str) -> ArmError {
    let ws = inner
        .workspaces
        .get(wi)
        .map(|w| w.name.as_str())
        .unwrap_or("");
    ArmError::new(
        StatusCode::NOT_FOUND,
        "ResourceNotFound",
        format!(
            "The Resource '{ML_PROVIDER}/workspaces/{ws}/computes/{name}' under resource group '{rg}' was not found. For more details please go to https://aka.ms/ARMResourceNotFoundFix"
        ),
    )
}

fn workspace_body(inner: &Inner, wi: usize) -> Value {
    let ws = &inner.workspaces[wi];
    let workspace_id = uuid::Uuid::new_v5(
        &uuid::Uuid::NAMESPACE_URL,
        ws.id().to_ascii_lowercase().as_bytes(),
    );
    json!({
        "id": ws.id(),
        "name": ws.name,
        "type": "Microsoft.MachineLearningServices/workspaces",
        "location": ws.location,
        "tags": {},
        "kind": "Default",
        "sku": { "name": "Basic", "tier": "Basic" },
        "identity": { "type": "SystemAssigned", "principalId": uuid::Uuid::new_v5(&workspace_id, b"identity"), "tenantId": inner.tenant_id },
        "properties": {
            "friendlyName": ws.name,
            "workspaceId": workspace_id,
            "provisioningState": "Succeeded",
            "discoveryUrl": format!("https://{}.api.azureml.ms/discovery", ws.location),
            "hbiWorkspace": false,
            "publicNetworkAccess": "Enabled",
        }
    })
}

fn list_computes(ctx: &Ctx<'_>, inner: &Inner, wi: usize) -> Result<Response, ArmError> {
    let ws_key = inner.compute_key(wi, "").0;
    let start = match ctx.query.get("$skip") {
        None => Bound::Included((ws_key.clone(), String::new())),
        Some(token) => {
            let last = URL_SAFE_NO_PAD
                .decode(token)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| {
                    ArmError::bad_request(
                        "InvalidSkipToken",
                        format!("The $skip token '{token}' is not valid."),
                    )
                    .with_target("$skip")
                })?;
            Bound::Excluded((ws_key.clone(), last))
        }
    };
    let page_size = inner.settings.page_size.max(1);
    let ws = &inner.workspaces[wi];
    let mut value = Vec::with_capacity(page_size.min(1000));
    let mut last_key = None;
    let mut more = false;
    for ((w, n), rec) in inner.computes.range((start, Bound::Unbounded)) {
        if *w != ws_key {
            break;
        }
        if value.len() == page_size {
            more = true;
            break;
        }
        value.push(compute::compute_body(rec, ws, &inner.tenant_id, ctx.now));
        last_key = Some(n.clone());
    }
    let mut body = json!({ "value": value });
    if more && let (Some(last), Some(obj)) = (last_key, body.as_object_mut()) {
        let token = URL_SAFE_NO_PAD.encode(last.as_bytes());
        obj.insert(
            "nextLink".into(),
            json!(format!(
                "{}{}?api-version={}&$skip={token}",
                ctx.base, ctx.path, ctx.api_version
            )),
        );
    }
    Ok(json_response(StatusCode::OK, &body))
}

fn require_json(headers: &http::HeaderMap, body: &[u8]) -> Result<Value, ArmError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let media = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if body.is_empty() {
        return Err(ArmError::bad_request(
            "InvalidRequestContent",
            "The request content was invalid and could not be deserialized: 'The request body is required.'",
        ));
    }
    if media != "application/json" && !media.ends_with("+json") && media != "text/json" {
        return Err(ArmError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            format!(
                "The content media type '{ct}' is not supported. Only 'application/json' is supported."
            ),
        ));
    }
    serde_json::from_slice(body).map_err(|e| {
        ArmError::bad_request(
            "InvalidRequestContent",
            format!("The request content was invalid and could not be deserialized: '{e}'."),
        )
    })
}

fn validation_error(e: crate::validate::ValidationError) -> ArmError {
    let mut err = ArmError::bad_request(
        "InvalidRequestContent",
        format!(
            "The request content was invalid and could not be deserialized: '{}' Path '{}'.",
            e.message, e.path
        ),
    );
    if !e.path.is_empty() {
        err = err.with_target(e.path);
    }
    err
}

/// Validate a ComputeResource body and its compute type.
fn validate_compute_body(specs: &Specs, inner: &Inner, body: &Value) -> Result<String, ArmError> {
    let opts = Options {
        reject_unknown: inner.settings.reject_unknown_properties,
    };
    specs
        .validate_definition("ComputeResource", body, opts)
        .map_err(validation_error)?;
    let Some(props) = body.get("properties").filter(|p| !p.is_null()) else {
        return Err(ArmError::bad_request(
            "InvalidRequestContent",
            "The request content was invalid and could not be deserialized: 'Required property 'properties' not found.' Path 'properties'.",
        )
        .with_target("properties"));
    };
    let compute_type = props
        .get("computeType")
        .and_then(Value::as_str)
        .unwrap_or_default();
    // ComputeType is modelAsString; canonicalize known values (case-insensitive like .NET).
    let canonical = [
        "AKS",
        "Kubernetes",
        "AmlCompute",
        "ComputeInstance",
        "DataFactory",
        "VirtualMachine",
        "HDInsight",
        "Databricks",
        "DataLakeAnalytics",
        "SynapseSpark",
        "Batch",
    ]
    .into_iter()
    .find(|t| t.eq_ignore_ascii_case(compute_type));
    match canonical {
        Some("Batch") if !inner.settings.accept_batch => Err(ArmError::bad_request(
            "UnsupportedComputeType",
            "Compute type 'Batch' is not supported: it is in no published api-version of Microsoft.MachineLearningServices (this emulator has acceptBatch=false).",
        )
        .with_target("properties.computeType")),
        Some(t) => Ok(t.to_owned()),
        None => Err(ArmError::bad_request(
            "UnsupportedComputeType",
            format!("Compute type '{compute_type}' is not supported."),
        )
        .with_target("properties.computeType")),
    }
}

/// A validated PUT body with what the world says about it.
struct Accepted {
    body: Value,
    compute_type: String,
    ev: Evaluation,
}

/// Insert or overwrite a compute record; returns its key. Shared by PUT and the control API.
fn upsert(
    inner: &mut Inner,
    wi: usize,
    name: &str,
    accepted: Accepted,
    now: DateTime<Utc>,
    ready_at: DateTime<Utc>,
) -> crate::state::ComputeKey {
    let Accepted {
        body,
        compute_type,
        ev,
    } = accepted;
    let key = inner.compute_key(wi, name);
    let existing = inner.computes.get(&key);
    let created_on = existing.map_or(now, |c| c.created_on);
    let shown_name = existing.map_or_else(|| name.to_owned(), |c| c.name.clone());
    let identity_principal = existing.map_or_else(
        || uuid::Uuid::new_v4().to_string(),
        |c| c.identity_principal.clone(),
    );
    let resource_id = body
        .pointer("/properties/resourceId")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let rec = ComputeRecord {
        workspace: wi,
        name: shown_name,
        request: body,
        compute_type,
        resource_id,
        attached: ev.attached,
        address: ev.address,
        vm_size: ev.vm_size,
        identity_principal,
        created_on,
        last_put: now,
        ready_at,
        failure: ev.failure,
        deleting_at: None,
    };
    inner.computes.insert(key.clone(), rec);
    key
}

fn async_url(ctx: &Ctx<'_>, sub: &str, region: &str, id: &str) -> String {
    format!(
        "{}/subscriptions/{sub}/providers/{ML_PROVIDER}/locations/{region}/computeOperationsStatus/{id}?api-version={}&service=new",
        ctx.base, ctx.api_version
    )
}

fn put_compute(
    ctx: &Ctx<'_>,
    inner: &mut Inner,
    wi: usize,
    name: &str,
    headers: &http::HeaderMap,
    body: &[u8],
) -> Result<Response, ArmError> {
    let body = require_json(headers, body)?;
    let compute_type = validate_compute_body(&ctx.app.specs, inner, &body)?;
    let key = inner.compute_key(wi, name);
    if inner
        .computes
        .get(&key)
        .is_some_and(|c| c.deleting_at.is_some())
    {
        return Err(ArmError::new(
            StatusCode::CONFLICT,
            "Conflict",
            format!("The compute '{name}' is being deleted; retry when the deletion has finished."),
        ));
    }
    let created = !inner.computes.contains_key(&key);
    let sent_location = body.pointer("/properties/computeLocation").is_some();
    let ev = compute::evaluate(&compute_type, &body, &inner.resources);
    let ready_at = ctx.now + delay(inner.settings.provisioning_delay_ms);
    let error = ev.failure.clone();
    let accepted = Accepted {
        body,
        compute_type,
        ev,
    };
    let key = upsert(inner, wi, name, accepted, ctx.now, ready_at);
    let ws = &inner.workspaces[wi];
    let (sub, region) = (ws.subscription_id.clone(), ws.location.clone());
    let op_id = uuid::Uuid::new_v4().to_string();
    inner.operations.insert(
        op_id.clone(),
        Operation {
            kind: OpKind::CreateOrUpdate,
            subscription: sub.clone(),
            started: ctx.now,
            ready_at,
            error,
        },
    );
    let rec = &inner.computes[&key];
    let mut answer = compute::compute_body(rec, &inner.workspaces[wi], &inner.tenant_id, ctx.now);
    if created
        && !sent_location
        && let Some(Value::Object(props)) = answer.get_mut("properties")
    {
        // The 201 of a create echoes computeLocation only if it was sent; GETs have it
        // (FINDINGS §2, PY#0 vs PY#3).
        props.remove("computeLocation");
    }
    let mut resp = json_response(StatusCode::CREATED, &answer);
    if let Ok(v) = HeaderValue::from_str(&async_url(ctx, &sub, &region, &op_id)) {
        resp.headers_mut().insert("azure-asyncoperation", v);
    }
    Ok(resp)
}

fn patch_compute(
    ctx: &Ctx<'_>,
    inner: &mut Inner,
    wi: usize,
    name: &str,
    rg: &str,
    headers: &http::HeaderMap,
    body: &[u8],
) -> Result<Response, ArmError> {
    let body = require_json(headers, body)?;
    let opts = Options {
        reject_unknown: inner.settings.reject_unknown_properties,
    };
    ctx.app
        .specs
        .validate_definition("ClusterUpdateParameters", &body, opts)
        .map_err(validation_error)?;
    let key = inner.compute_key(wi, name);
    let Some(rec) = inner.computes.get_mut(&key) else {
        return Err(compute_not_found(inner, wi, name, rg));
    };
    if rec.compute_type != "AmlCompute" {
        return Err(ArmError::bad_request(
            "OperationNotSupported",
            format!(
                "Update is only supported for AmlCompute, not '{}'.",
                rec.compute_type
            ),
        ));
    }
    if let Some(scale) = body
        .pointer("/properties/properties/scaleSettings")
        .cloned()
        && let Some(Value::Object(p)) = rec.request.pointer_mut("/properties/properties")
    {
        p.insert("scaleSettings".into(), scale);
    }
    rec.last_put = ctx.now;
    let rec = &inner.computes[&key];
    Ok(json_response(
        StatusCode::OK,
        &compute::compute_body(rec, &inner.workspaces[wi], &inner.tenant_id, ctx.now),
    ))
}

fn delete_compute(
    ctx: &Ctx<'_>,
    inner: &mut Inner,
    wi: usize,
    name: &str,
) -> Result<Response, ArmError> {
    let action = match ctx.query.get("underlyingResourceAction") {
        None if inner.settings.require_underlying_resource_action => {
            return Err(ArmError::bad_request(
                "MissingRequiredParameter",
                "The request is missing the required query parameter 'underlyingResourceAction' (allowed values: Delete, Detach).",
            )
            .with_target("underlyingResourceAction"));
        }
        None => "Detach".to_owned(),
        Some(a) if a.eq_ignore_ascii_case("Delete") => "Delete".to_owned(),
        Some(a) if a.eq_ignore_ascii_case("Detach") => "Detach".to_owned(),
        Some(a) => {
            return Err(invalid_param(
                "underlyingResourceAction",
                format!(
                    "The value '{a}' of query parameter 'underlyingResourceAction' is not valid. Allowed values: Delete, Detach."
                ),
            ));
        }
    };
    let key = inner.compute_key(wi, name);
    let deletion_delay = delay(inner.settings.deletion_delay_ms);
    let ws = &inner.workspaces[wi];
    let (sub, region, ws_name) = (
        ws.subscription_id.clone(),
        ws.location.clone(),
        ws.name.clone(),
    );
    let Some(rec) = inner.computes.get_mut(&key) else {
        return Ok(empty_response(StatusCode::NO_CONTENT));
    };
    let done_at = match rec.deleting_at {
        Some(at) => at,
        None => {
            let at = ctx.now + deletion_delay;
            rec.deleting_at = Some(at);
            at
        }
    };
    let (compute_name, compute_type) = (rec.name.clone(), rec.compute_type.clone());
    let underlying = rec.resource_id.clone().or_else(|| {
        // Address-only VM attachments: the resource that answered at that address.
        let addr = rec.address.clone()?;
        inner
            .resources
            .values()
            .find(|r| {
                r.address
                    .as_deref()
                    .is_some_and(|a| a.eq_ignore_ascii_case(&addr))
                    && ResourceKind::of_id(&r.id) != ResourceKind::Other
            })
            .map(|r| r.id.clone())
    });
    if !inner.pending_deletes.contains(&key) {
        inner.pending_deletes.push(key);
    }
    if action == "Delete"
        && compute_type != "AmlCompute"
        && compute_type != "ComputeInstance"
        && let Some(id) = underlying
        && let Some(res) = inner.resources.remove(&id.to_ascii_lowercase())
    {
        inner.deleted_resources.push(DeletedResource {
            id: res.id,
            deleted_at: arm_time(ctx.now),
            compute: compute_name,
            workspace: ws_name,
        });
    }
    let op_id = uuid::Uuid::new_v4().to_string();
    inner.operations.insert(
        op_id.clone(),
        Operation {
            kind: OpKind::Delete,
            subscription: sub.clone(),
            started: ctx.now,
            ready_at: done_at,
            error: None,
        },
    );
    let url = async_url(ctx, &sub, &region, &op_id);
    let mut resp = empty_response(StatusCode::ACCEPTED);
    if let Ok(v) = HeaderValue::from_str(&url) {
        resp.headers_mut().insert("azure-asyncoperation", v);
    }
    // Only Azure-AsyncOperation: real DELETEs carry no Location (FINDINGS §4, ASO24#54, PY#10).
    Ok(resp)
}

fn operation_status(
    ctx: &Ctx<'_>,
    inner: &Inner,
    sub: &str,
    location: &str,
    id: &str,
) -> Result<Response, ArmError> {
    let op = inner
        .operations
        .get(&id.to_ascii_lowercase())
        .filter(|op| op.subscription.eq_ignore_ascii_case(sub))
        .ok_or_else(|| {
            ArmError::new(
                StatusCode::NOT_FOUND,
                "ResourceNotFound",
                format!("The operation '{id}' in location '{location}' was not found."),
            )
        })?;
    let status = op.status(ctx.now);
    if ctx
        .query
        .get("type")
        .is_some_and(|t| t.eq_ignore_ascii_case("location"))
    {
        // Location-header semantics: 202 while running, then the final result.
        return Ok(match (status, op.kind) {
            ("InProgress", _) => {
                let mut r = empty_response(StatusCode::ACCEPTED);
                let url = format!("{}{}?{}", ctx.base, ctx.path, ctx_query_string(ctx));
                if let Ok(v) = HeaderValue::from_str(&url) {
                    r.headers_mut().insert(header::LOCATION, v);
                }
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(1u32));
                r
            }
            ("Failed", _) => {
                let code = op
                    .error
                    .as_ref()
                    .and_then(|e| e.get("code"))
                    .and_then(Value::as_str)
                    .unwrap_or("Failed");
                let message = op
                    .error
                    .as_ref()
                    .and_then(|e| e.get("message"))
                    .and_then(Value::as_str)
                    .unwrap_or("");
                ArmError::bad_request(code, message).into_response()
            }
            (_, OpKind::Delete) => empty_response(StatusCode::NO_CONTENT),
            (_, OpKind::CreateOrUpdate) => json_response(StatusCode::OK, &json!({})),
        });
    }
    let body = match status {
        "InProgress" => json!({ "status": "InProgress" }),
        "Succeeded" => json!({ "status": "Succeeded", "percentComplete": 100.0 }),
        _ => json!({ "status": "Failed", "error": op.error.clone().unwrap_or(Value::Null) }),
    };
    Ok(json_response(StatusCode::OK, &body))
}

fn ctx_query_string(ctx: &Ctx<'_>) -> String {
    serde_urlencoded::to_string(&ctx.query.0).unwrap_or_default()
}

fn delay(ms: u64) -> Duration {
    Duration::milliseconds(i64::try_from(ms).unwrap_or(i64::MAX / 2))
}

/// Add a compute as if attached outside Kubernetes (already Succeeded). Used for seeds and
/// `PUT /_emulator/computes`. The body is validated like a PUT's.
pub fn seed_compute(
    inner: &mut Inner,
    specs: &Specs,
    workspace: &str,
    name: &str,
    body: &Value,
    now: DateTime<Utc>,
) -> Result<(), ArmError> {
    let wi = inner.workspace_by_ref(workspace).ok_or_else(|| {
        ArmError::new(
            StatusCode::NOT_FOUND,
            "WorkspaceNotFound",
            format!("No workspace '{workspace}'."),
        )
    })?;
    let compute_type = validate_compute_body(specs, inner, body)?;
    let mut ev = compute::evaluate(&compute_type, body, &inner.resources);
    // Attached outside the operator: it exists, whatever the world says about credentials.
    ev.failure = None;
    let accepted = Accepted {
        body: body.clone(),
        compute_type,
        ev,
    };
    upsert(inner, wi, name, accepted, now, now);
    Ok(())
}
