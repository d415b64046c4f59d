//! Slack's HTTP transport: `POST /slack/events`, `/slack/commands` and `/slack/interactions`
//! on the HTTP role. Every request's v0 signature (`slack.signing_secret`, 5-minute window,
//! constant-time comparison) is checked before anything else: an unsigned, forged or stale
//! request gets `401` and causes no work. A good one is acknowledged at once; the work runs on
//! a task, well within Slack's 3 s.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::json;
use slack_morphism::prelude::*;
use slack_morphism::signature_verifier::SlackEventSignatureVerifier;

use super::events::Adapter;
use crate::config::Secret;

#[derive(Clone)]
struct Endpoints {
    adapter: Arc<Adapter>,
    verifier: SlackEventSignatureVerifier,
}

/// The routes, to merge into the HTTP API's router.
pub fn routes(adapter: Arc<Adapter>, signing_secret: &Secret) -> Router {
    let endpoints = Endpoints {
        adapter,
        verifier: SlackEventSignatureVerifier::new(&SlackSigningSecret::new(
            signing_secret.expose().to_string(),
        )),
    };
    Router::new()
        .route("/slack/events", post(events))
        .route("/slack/commands", post(commands))
        .route("/slack/interactions", post(interactions))
        .with_state(endpoints)
}

/// The body, if the request is signed by Slack within the last five minutes.
fn verified<'a>(endpoints: &Endpoints, headers: &HeaderMap, body: &'a Bytes) -> Option<&'a str> {
    let header = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
    let signature = header(SlackEventSignatureVerifier::SLACK_SIGNED_HASH_HEADER)?;
    let timestamp = header(SlackEventSignatureVerifier::SLACK_SIGNED_TIMESTAMP)?;
    let body = std::str::from_utf8(body).ok()?;
    match endpoints.verifier.verify(signature, body, timestamp) {
        Ok(()) => Some(body),
        Err(_) => None,
    }
}

fn unauthorized() -> Response {
    tracing::info!("Slack: a request without a valid signature was refused");
    (StatusCode::UNAUTHORIZED, "invalid signature\n").into_response()
}

async fn events(State(endpoints): State<Endpoints>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(body) = verified(&endpoints, &headers, &body) else {
        return unauthorized();
    };
    let event: SlackPushEvent = match serde_json::from_str(body) {
        Ok(event) => event,
        Err(error) => {
            tracing::debug!(%error, "Slack: an event engram does not read");
            return StatusCode::OK.into_response();
        }
    };
    match event {
        SlackPushEvent::UrlVerification(verification) => {
            Json(json!({ "challenge": verification.challenge })).into_response()
        }
        SlackPushEvent::EventCallback(callback) => {
            let adapter = endpoints.adapter.clone();
            tokio::spawn(async move { adapter.on_event(callback).await });
            StatusCode::OK.into_response()
        }
        SlackPushEvent::AppRateLimited(limited) => {
            tracing::warn!(team = %limited.team_id, "Slack: events were dropped (app_rate_limited)");
            StatusCode::OK.into_response()
        }
    }
}

async fn commands(State(endpoints): State<Endpoints>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(body) = verified(&endpoints, &headers, &body) else {
        return unauthorized();
    };
    let command: SlackCommandEvent = match serde_urlencoded::from_str(body) {
        Ok(command) => command,
        Err(error) => {
            tracing::debug!(%error, "Slack: a malformed slash command");
            return (StatusCode::BAD_REQUEST, "malformed command\n").into_response();
        }
    };
    let adapter = endpoints.adapter.clone();
    tokio::spawn(async move { adapter.on_command(command).await });
    StatusCode::OK.into_response()
}

/// A click on a button (`payload=<JSON>`, form-encoded): acknowledged at once, the vote
/// recorded on a task. Other interactions are acknowledged and left alone.
async fn interactions(
    State(endpoints): State<Endpoints>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(body) = verified(&endpoints, &headers, &body) else {
        return unauthorized();
    };
    let payload = serde_urlencoded::from_str::<Vec<(String, String)>>(body)
        .ok()
        .and_then(|fields| fields.into_iter().find(|(name, _)| name == "payload"))
        .map(|(_, payload)| payload);
    let Some(payload) = payload else {
        return (StatusCode::BAD_REQUEST, "no payload\n").into_response();
    };
    match serde_json::from_str::<SlackInteractionEvent>(&payload) {
        Ok(SlackInteractionEvent::BlockActions(click)) => {
            let adapter = endpoints.adapter.clone();
            tokio::spawn(async move { adapter.on_click(click).await });
        }
        Ok(_) => {}
        Err(error) => tracing::debug!(%error, "Slack: an interaction engram does not read"),
    }
    StatusCode::OK.into_response()
}
