//! `serve --metrics-listen ADDR`: the HTTP endpoint for monitoring. `GET /metrics`: Prometheus
//! text ([`crate::metrics`]); `GET /healthz`: 200 while the process serves; `GET /readyz`:
//! 200 when ready, else 503, with the checks of [`crate::health`] as JSON.

use std::path::PathBuf;

use axum::{http::StatusCode, response::IntoResponse, routing::get, Router};
use tokio::net::TcpListener;

use crate::health::Health;
use crate::metrics::CONTENT_TYPE;

/// Serves the endpoint on `listener` for the store in `data`, until the task is dropped.
pub async fn serve(listener: TcpListener, data: PathBuf, health: Health) -> std::io::Result<()> {
    let app = Router::new()
        .route("/metrics", get(move || metrics(data.clone())))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(move || readiness(health.clone())));
    axum::serve(listener, app).await
}

async fn metrics(data: PathBuf) -> impl IntoResponse {
    match tokio::task::spawn_blocking(move || crate::metrics::render(&data)).await {
        Ok(Ok(text)) => (StatusCode::OK, [("content-type", CONTENT_TYPE)], text),
        Ok(Err(e)) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [("content-type", "text/plain")],
            format!("reading the store: {e}\n"),
        ),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [("content-type", "text/plain")],
            format!("{e}\n"),
        ),
    }
}

async fn readiness(health: Health) -> impl IntoResponse {
    match tokio::task::spawn_blocking(move || health.readiness()).await {
        Ok(readiness) => readiness.response().into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}
