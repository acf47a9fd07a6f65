//! A stand-in Kubernetes API server for tests: plain HTTP on loopback, speaking the list and
//! watch protocol for pods (`GET /api/v1/pods`, then `?watch=true` as a chunked stream of
//! JSON lines) from a script of recorded objects.

use std::{
    collections::VecDeque,
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use axum::body::Bytes;
use axum::{
    body::Body,
    extract::State,
    http::{StatusCode, Uri},
    response::{IntoResponse, Response},
    Router,
};
use serde_json::{json, Value};
use tokio_stream::StreamExt as _;

/// The recorded pods (`fixtures/kubernetes-pods.json`, as an API server returns them): a
/// Deployment's, a DaemonSet's, a Job's and a static pod's mirror, all on `node-1`.
pub fn recorded_pods() -> Vec<Value> {
    serde_json::from_str(include_str!("../fixtures/kubernetes-pods.json"))
        .expect("fixtures/kubernetes-pods.json")
}

/// One answer to a list request.
pub enum ListAnswer {
    /// A `PodList` at `resourceVersion` with these items.
    Pods(&'static str, Vec<Value>),
    /// An error status.
    Status(u16),
}

/// One answer to a watch request: these lines, then the stream ends or stays open.
pub struct WatchAnswer {
    /// Lines sent, each as its own chunk.
    pub lines: Vec<String>,
    /// Keep the stream open after the lines (otherwise it ends: a disconnect).
    pub hold: bool,
}

/// A watch event line: `{"type": kind, "object": object}`.
pub fn event(kind: &str, object: &Value) -> String {
    json!({"type": kind, "object": object}).to_string()
}

/// The watch event the API server sends when the resourceVersion asked for is too old.
pub fn gone() -> String {
    event(
        "ERROR",
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": "too old resource version: 100 (150)", "reason": "Expired", "code": 410}),
    )
}

#[derive(Default)]
struct Script {
    lists: VecDeque<ListAnswer>,
    watches: VecDeque<WatchAnswer>,
    requests: Vec<String>,
}

/// The running server.
pub struct FakeApiServer {
    /// Its address.
    pub addr: SocketAddr,
    script: Arc<Mutex<Script>>,
}

impl FakeApiServer {
    /// Serves `lists` and `watches` in order; once they run out, lists answer 503 and
    /// watches stay open with nothing to say.
    pub async fn start(lists: Vec<ListAnswer>, watches: Vec<WatchAnswer>) -> Self {
        let script = Arc::new(Mutex::new(Script {
            lists: lists.into(),
            watches: watches.into(),
            requests: Vec::new(),
        }));
        let app = Router::new()
            .fallback(answer)
            .with_state(Arc::clone(&script));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { addr, script }
    }

    /// The URL to give `kubernetes.api_server`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request so far (path and query).
    pub fn requests(&self) -> Vec<String> {
        self.script.lock().unwrap().requests.clone()
    }
}

async fn answer(State(script): State<Arc<Mutex<Script>>>, uri: Uri) -> Response {
    let mut script = script.lock().unwrap();
    script.requests.push(uri.to_string());
    if uri.path() != "/api/v1/pods" {
        return StatusCode::NOT_FOUND.into_response();
    }
    let watching = uri
        .query()
        .is_some_and(|q| q.split('&').any(|p| p == "watch=true"));
    if watching {
        let WatchAnswer { lines, hold } = script.watches.pop_front().unwrap_or(WatchAnswer {
            lines: Vec::new(),
            hold: true,
        });
        let lines = tokio_stream::iter(
            lines
                .into_iter()
                .map(|l| Ok::<_, std::convert::Infallible>(Bytes::from(l + "\n"))),
        );
        let body = if hold {
            Body::from_stream(lines.chain(tokio_stream::pending()))
        } else {
            Body::from_stream(lines)
        };
        return Response::builder()
            .header("content-type", "application/json")
            .body(body)
            .unwrap();
    }
    match script.lists.pop_front() {
        Some(ListAnswer::Pods(version, items)) => axum::Json(json!({
            "kind": "PodList", "apiVersion": "v1",
            "metadata": {"resourceVersion": version}, "items": items
        }))
        .into_response(),
        Some(ListAnswer::Status(code)) => (
            StatusCode::from_u16(code).unwrap(),
            axum::Json(
                json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                              "message": "scripted failure", "code": code}),
            ),
        )
            .into_response(),
        None => StatusCode::SERVICE_UNAVAILABLE.into_response(),
    }
}
