//! The HTTP API on the control runtime: `/healthz`, `/readyz` (the store, an index outside it,
//! and each configured chat platform's connection), `/metrics` (and, in Slack's HTTP mode, the
//! Slack adapter's endpoints under `/slack/`, merged in by `app`).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::index::Index;
use crate::platform::connection::Connections;
use crate::store::Store;
use crate::telemetry::Metrics;

/// How long a readiness or metrics request may wait for the store (and for the index).
const STORE_CHECK_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, Clone)]
pub struct ApiState {
    pub store: Arc<dyn Store>,
    pub metrics: Arc<Metrics>,
    /// An index outside the store (Qdrant), checked by `/readyz`; `None` for the embedded
    /// index, which is as ready as the store.
    pub index: Option<Arc<dyn Index>>,
    /// The chat platforms this process connects to; `/readyz` is 503 while one is not
    /// connected.
    pub connections: Arc<Connections>,
}

pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

/// Serves until `shutdown` is cancelled, then finishes requests in flight.
pub async fn serve(
    listener: TcpListener,
    state: ApiState,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    serve_router(listener, router(state), shutdown).await
}

/// Serves `router` (the API's routes and any merged in) until `shutdown` is cancelled.
pub async fn serve_router(
    listener: TcpListener,
    router: Router,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(state): State<ApiState>) -> Response {
    match tokio::time::timeout(STORE_CHECK_TIMEOUT, state.store.ping()).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => return unavailable(format!("store: {error}")),
        Err(_) => {
            return unavailable(format!(
                "store: no answer within {} ms",
                STORE_CHECK_TIMEOUT.as_millis()
            ))
        }
    }
    if let Some(index) = &state.index {
        match tokio::time::timeout(STORE_CHECK_TIMEOUT, index.ping()).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => return unavailable(format!("index: {error}")),
            Err(_) => {
                return unavailable(format!(
                    "index: no answer within {} ms",
                    STORE_CHECK_TIMEOUT.as_millis()
                ))
            }
        }
    }
    if let Some((platform, reason)) = state.connections.unavailable().into_iter().next() {
        return unavailable(format!("{platform}: {reason}"));
    }
    Json(json!({ "status": "ready" })).into_response()
}

fn unavailable(reason: String) -> Response {
    tracing::warn!(%reason, "not ready");
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({ "status": "unavailable", "reason": reason })),
    )
        .into_response()
}

async fn metrics(State(state): State<ApiState>) -> Response {
    let depths = tokio::time::timeout(STORE_CHECK_TIMEOUT, state.store.queue_depths()).await;
    let (depths, store_up) = match depths {
        Ok(Ok(depths)) => (depths, 1),
        Ok(Err(error)) => {
            tracing::warn!(%error, "metrics: cannot read queue depths");
            (Vec::new(), 0)
        }
        Err(_) => (Vec::new(), 0),
    };
    let mut body = state.metrics.render(&depths);
    body.push_str(&state.connections.render());
    body.push_str("# HELP engram_store_up Whether the store answered this scrape.\n");
    body.push_str("# TYPE engram_store_up gauge\n");
    body.push_str(&format!("engram_store_up {store_up}\n"));
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response()
}
