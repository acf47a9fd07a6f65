//! `--metrics-listen ADDR`: the HTTP endpoint for a node's monitoring. `GET /metrics`:
//! Prometheus text ([`crate::metrics`]); `GET /healthz`: 200 while the process serves;
//! `GET /readyz`: 200 when ready, else 503, with the checks of [`crate::health`] as JSON.

use std::sync::Arc;

use axum::{routing::get, Router};
use tokio::net::TcpListener;

use crate::health::Health;
use crate::metrics::{Metrics, CONTENT_TYPE};

/// Serves the endpoint on `listener` until the task is dropped.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
) -> std::io::Result<()> {
    let app = Router::new()
        .route(
            "/metrics",
            get(move || async move { ([("content-type", CONTENT_TYPE)], metrics.render()) }),
        )
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(move || async move { health.readiness().response() }),
        );
    axum::serve(listener, app).await
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write as _};

    use super::*;

    fn get(addr: std::net::SocketAddr, path: &str) -> String {
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        response
    }

    #[tokio::test]
    async fn metrics_health_and_readiness_share_the_listener() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let health = Health::new();
        let server = tokio::spawn(serve(
            listener,
            Arc::new(Metrics::new(None)),
            health.clone(),
        ));
        let responses = |health: Arc<Health>| {
            tokio::task::spawn_blocking(move || {
                let metrics = get(addr, "/metrics");
                let alive = get(addr, "/healthz");
                let not_ready = get(addr, "/readyz");
                health.programs_loaded(3, 0);
                health.read_progress().mark();
                let ready = get(addr, "/readyz");
                (metrics, alive, not_ready, ready)
            })
        };
        let (metrics, alive, not_ready, ready) = responses(health).await.unwrap();
        server.abort();
        assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");
        assert!(
            metrics.contains("kestrel_agent_resident_bytes "),
            "{metrics}"
        );
        assert!(alive.starts_with("HTTP/1.1 200"), "{alive}");
        assert!(not_ready.starts_with("HTTP/1.1 503"), "{not_ready}");
        assert!(not_ready.contains("\"ready\":false"), "{not_ready}");
        assert!(ready.starts_with("HTTP/1.1 200"), "{ready}");
        assert!(ready.contains("3 hooks attached"), "{ready}");
    }
}
