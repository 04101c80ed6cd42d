//! A mocked Kubernetes API behind a real `kube::Client`: it keeps the objects a pass touches,
//! answers the calls the target reconciler makes (finalizer JSON patches, status applies, event
//! creates, Secret reads and writes) the way kube-apiserver does, and records every write.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use http::{Method, Request, Response, StatusCode};
use kube::client::Body;
use serde_json::{Value, json};

/// One write the operator sent.
#[derive(Clone, Debug, PartialEq)]
pub struct Write {
    /// `patch`, `apply-status`, `event`, `create`, `delete`.
    pub verb: &'static str,
    /// Resource path without the `/api(s)/…/namespaces/{ns}/` prefix (`datalakeanalyticstargets/a`).
    pub what: String,
    /// The event reason, for events.
    pub reason: Option<String>,
}

#[derive(Default)]
struct State {
    /// Objects by their full path.
    objects: BTreeMap<String, Value>,
    writes: Vec<Write>,
    /// Requests the mock does not know (a test fails on any).
    unexpected: Vec<String>,
}

/// The mocked API server.
#[derive(Clone, Default)]
pub struct MockKube(Arc<Mutex<State>>);

impl MockKube {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A client whose every request this mock answers.
    pub fn client(&self) -> kube::Client {
        let mock = self.clone();
        let service = tower::service_fn(move |req: Request<Body>| {
            let mock = mock.clone();
            async move { Ok::<_, Infallible>(mock.answer(req).await) }
        });
        kube::Client::new(service, "default")
    }

    /// Stores `obj` at `path` (as `kubectl apply` would have).
    pub fn put(&self, path: &str, obj: Value) {
        self.lock().objects.insert(path.to_owned(), obj);
    }

    /// Deletes the object at `path` (as another client would).
    pub fn remove(&self, path: &str) {
        self.lock().objects.remove(path);
    }

    /// The object at `path`, if it exists.
    pub fn get(&self, path: &str) -> Option<Value> {
        self.lock().objects.get(path).cloned()
    }

    /// Every write so far, and clears the record.
    pub fn take_writes(&self) -> Vec<Write> {
        std::mem::take(&mut self.lock().writes)
    }

    /// Requests the mock could not answer.
    pub fn unexpected(&self) -> Vec<String> {
        self.lock().unexpected.clone()
    }

    async fn answer(&self, req: Request<Body>) -> Response<Body> {
        let (parts, body) = req.into_parts();
        let body = body.collect_bytes().await.unwrap_or_default();
        let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let path = parts.uri.path().to_owned();
        let metadata_only = parts
            .headers
            .get(http::header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("PartialObjectMetadata"));
        let (object_path, status) = match path.strip_suffix("/status") {
            Some(p) => (p.to_owned(), true),
            None => (path.clone(), false),
        };
        let what = short(&object_path);
        let mut state = self.lock();
        match (parts.method.clone(), status) {
            (Method::GET, false) => match state.objects.get(&object_path) {
                Some(o) if metadata_only => ok(json!({
                    "apiVersion": "meta.k8s.io/v1",
                    "kind": "PartialObjectMetadata",
                    "metadata": o["metadata"],
                })),
                Some(o) => ok(o.clone()),
                None => not_found(),
            },
            (Method::PATCH, true) => {
                // Server-side apply of status: the operator owns all of it.
                let Some(o) = state.objects.get_mut(&object_path) else {
                    return not_found();
                };
                o["status"] = body["status"].clone();
                let o = o.clone();
                state.writes.push(Write {
                    verb: "apply-status",
                    what,
                    reason: None,
                });
                ok(o)
            }
            (Method::PATCH, false) if path.contains("/events/") => ok(body),
            (Method::PATCH, false) => {
                let Some(o) = state.objects.get(&object_path).cloned() else {
                    return not_found();
                };
                let mut patched = o;
                if let Ok(ops) = serde_json::from_value::<json_patch::Patch>(body.clone()) {
                    if json_patch::patch(&mut patched, &ops).is_err() {
                        return conflict();
                    }
                } else {
                    json_patch::merge(&mut patched, &body);
                }
                state.writes.push(Write {
                    verb: "patch",
                    what,
                    reason: None,
                });
                let gone = patched["metadata"]["deletionTimestamp"].is_string()
                    && patched["metadata"]["finalizers"]
                        .as_array()
                        .is_none_or(Vec::is_empty);
                if gone {
                    state.objects.remove(&object_path);
                } else {
                    state.objects.insert(object_path, patched.clone());
                }
                ok(patched)
            }
            (Method::POST, false) if path.ends_with("/events") => {
                state.writes.push(Write {
                    verb: "event",
                    what: body["regarding"]["name"].as_str().unwrap_or("").to_owned(),
                    reason: body["reason"].as_str().map(str::to_owned),
                });
                created(body)
            }
            (Method::POST, false) => {
                let name = body["metadata"]["name"].as_str().unwrap_or("").to_owned();
                let full = format!("{object_path}/{name}");
                if state.objects.contains_key(&full) {
                    return conflict();
                }
                let mut obj = body.clone();
                obj["metadata"]["resourceVersion"] = json!("1");
                obj["metadata"]["uid"] = json!(format!("uid-{name}"));
                state.objects.insert(full.clone(), obj.clone());
                state.writes.push(Write {
                    verb: "create",
                    what: short(&full),
                    reason: None,
                });
                created(obj)
            }
            (Method::DELETE, false) => match state.objects.remove(&object_path) {
                Some(o) => {
                    state.writes.push(Write {
                        verb: "delete",
                        what,
                        reason: None,
                    });
                    ok(o)
                }
                None => not_found(),
            },
            (m, _) => {
                state.unexpected.push(format!("{m} {path}"));
                not_found()
            }
        }
    }
}

/// `kind/name` from `/apis/g/v/namespaces/ns/kind/name`.
fn short(path: &str) -> String {
    match path.split_once("/namespaces/") {
        Some((_, rest)) => rest.split_once('/').map_or(rest, |(_, r)| r).to_owned(),
        None => path.to_owned(),
    }
}

fn respond(code: StatusCode, body: Value) -> Response<Body> {
    let mut r = Response::new(Body::from(body.to_string().into_bytes()));
    *r.status_mut() = code;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}

fn ok(body: Value) -> Response<Body> {
    respond(StatusCode::OK, body)
}

fn created(body: Value) -> Response<Body> {
    respond(StatusCode::CREATED, body)
}

fn status(code: u16, reason: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": reason, "code": code, "message": reason})
}

fn not_found() -> Response<Body> {
    respond(StatusCode::NOT_FOUND, status(404, "NotFound"))
}

fn conflict() -> Response<Body> {
    respond(StatusCode::CONFLICT, status(409, "Conflict"))
}
