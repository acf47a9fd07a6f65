//! A real HTTP receiver on 127.0.0.1 for alert sink tests and benchmarks: records every request
//! and answers from a script (status codes, `Retry-After`, a hang longer than the sink's
//! timeout), then 2xx. It runs on the test's tokio runtime ([`Receiver::start`]) or on a runtime
//! of its own for tests without one ([`Receiver::spawn`]).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;

use axum::body::{to_bytes, Body};
use axum::http::{HeaderMap, Request, Response, StatusCode};
use axum::Router;

/// How the receiver answers one request.
#[derive(Debug, Clone)]
pub enum Reply {
    /// This status, empty body.
    Status(u16),
    /// This status with `Retry-After: secs`.
    RetryAfter(u16, u64),
    /// Records the request as accepted, waits this long, then answers 2xx.
    Hang(Duration),
}

/// One request as received.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// Request method.
    pub method: String,
    /// Path and query.
    pub path: String,
    /// Headers.
    pub headers: HeaderMap,
    /// Body bytes.
    pub body: Vec<u8>,
    /// When it arrived.
    pub at: Instant,
    /// When it arrived, wall clock (to compare with event times).
    pub arrived: SystemTime,
    /// The status the receiver answered.
    pub status: u16,
}

impl Recorded {
    /// The body as JSON; panics when it is not JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("JSON body")
    }

    /// A header as text.
    pub fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    }

    /// True when the receiver answered 2xx.
    pub fn accepted(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

struct State {
    ok_status: u16,
    plan: Mutex<VecDeque<Reply>>,
    requests: Mutex<Vec<Recorded>>,
}

/// A running receiver; stops when dropped with the test's runtime.
#[derive(Clone)]
pub struct Receiver {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// The bound address.
    pub addr: SocketAddr,
    state: Arc<State>,
}

impl Receiver {
    /// Starts a receiver answering `ok_status` once its script is used up.
    pub async fn start(ok_status: u16) -> Receiver {
        Receiver::start_on("127.0.0.1:0", ok_status).await
    }

    /// Starts a receiver on a given address (to come back on a port a sink already uses).
    pub async fn start_on(addr: &str, ok_status: u16) -> Receiver {
        let state = Arc::new(State {
            ok_status,
            plan: Mutex::new(VecDeque::new()),
            requests: Mutex::new(Vec::new()),
        });
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = state.clone();
        let app = Router::new().fallback(move |request: Request<Body>| {
            let state = shared.clone();
            async move { answer(state, request).await }
        });
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Receiver {
            url: format!("http://{addr}"),
            addr,
            state,
        }
    }

    /// Starts a receiver answering `200 OK` on a runtime of its own, for tests without one; it
    /// serves until the test process ends.
    pub fn spawn() -> Receiver {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("receiver runtime");
            runtime.block_on(async {
                tx.send(Receiver::start(200).await).unwrap();
                std::future::pending::<()>().await;
            });
        });
        rx.recv().expect("receiver started")
    }

    /// Answers the next requests with these replies, in order.
    pub fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        self.state.plan.lock().unwrap().extend(replies);
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.state.requests.lock().unwrap().clone()
    }

    /// The accepted requests so far.
    pub fn accepted(&self) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(Recorded::accepted)
            .collect()
    }

    /// Waits until `n` requests were accepted; panics with what arrived otherwise.
    pub async fn wait_accepted(&self, n: usize, timeout: Duration) -> Vec<Recorded> {
        let deadline = Instant::now() + timeout;
        loop {
            let accepted = self.accepted();
            if accepted.len() >= n {
                return accepted;
            }
            if Instant::now() >= deadline {
                let seen: Vec<String> = self
                    .requests()
                    .iter()
                    .map(|r| {
                        format!(
                            "{} {} {}",
                            r.status,
                            r.path,
                            String::from_utf8_lossy(&r.body)
                        )
                    })
                    .collect();
                panic!(
                    "{} accepted requests within {timeout:?}, wanted {n}; received:\n{}",
                    accepted.len(),
                    seen.join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Receiver {
    /// Waits (blocking) for a request whose JSON body satisfies `matches`; the panic message
    /// names `what` and lists the last requests that did arrive.
    pub fn expect(
        &self,
        timeout: Duration,
        what: &str,
        matches: impl Fn(&Value) -> bool,
    ) -> Recorded {
        let deadline = Instant::now() + timeout;
        loop {
            let requests = self.requests();
            let body = |r: &Recorded| serde_json::from_slice(&r.body).unwrap_or(Value::Null);
            if let Some(found) = requests.iter().find(|r| matches(&body(r))) {
                return found.clone();
            }
            if Instant::now() >= deadline {
                let seen: Vec<String> = requests
                    .iter()
                    .rev()
                    .take(10)
                    .map(|r| {
                        format!(
                            "{} {} {}",
                            r.method,
                            r.path,
                            String::from_utf8_lossy(&r.body)
                        )
                    })
                    .collect();
                panic!(
                    "no request with {what} at {} within {timeout:?}; {} arrived, the last ones:\n{}",
                    self.url,
                    requests.len(),
                    seen.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

async fn answer(state: Arc<State>, request: Request<Body>) -> Response<Body> {
    let at = Instant::now();
    let (parts, body) = request.into_parts();
    let body = to_bytes(body, 16 << 20).await.unwrap().to_vec();
    let arrived = SystemTime::now();
    let reply = state.plan.lock().unwrap().pop_front();
    let mut retry_after = None;
    let mut hang = None;
    let status = match reply {
        None => state.ok_status,
        Some(Reply::Status(s)) => s,
        Some(Reply::RetryAfter(s, secs)) => {
            retry_after = Some(secs);
            s
        }
        Some(Reply::Hang(d)) => {
            hang = Some(d);
            state.ok_status
        }
    };
    // Recorded before a hang: the receiver processed the request, only its answer is late
    // (the client may give up and close the connection meanwhile).
    state.requests.lock().unwrap().push(Recorded {
        method: parts.method.to_string(),
        path: parts
            .uri
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_default(),
        headers: parts.headers,
        body,
        at,
        arrived,
        status,
    });
    if let Some(d) = hang {
        tokio::time::sleep(d).await;
    }
    let mut response = Response::builder().status(StatusCode::from_u16(status).unwrap());
    if let Some(secs) = retry_after {
        response = response.header("retry-after", secs.to_string());
    }
    response.body(Body::from("{}")).unwrap()
}
