//! Slack's Socket Mode transport (`slack.app_token`): slack-morphism's Socket Mode client
//! opens its connections through `apps.connections.open` at `slack.api_url`; each envelope's
//! callback (events, slash commands, button clicks) hands the work to a task and returns at
//! once, so the envelope is acknowledged straight away.

use std::sync::Arc;

use anyhow::Context as _;
use slack_morphism::prelude::*;
use tokio_util::sync::CancellationToken;

use super::api::{client, Connector};
use super::events::Adapter;
use crate::config::SlackConfig;

/// Listens until `stop` is cancelled.
pub async fn run(
    config: &SlackConfig,
    adapter: Arc<Adapter>,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let client = Arc::new(client(&config.api_url).map_err(|error| anyhow::anyhow!("{error}"))?);
    let callbacks = SlackSocketModeListenerCallbacks::new()
        .with_command_events(on_command)
        .with_interaction_events(on_interaction)
        .with_push_events(on_event);
    let environment = Arc::new(
        SlackClientEventsListenerEnvironment::new(client)
            .with_error_handler(on_error)
            .with_user_state(adapter),
    );
    let listener = SlackClientSocketModeListener::new(
        &SlackClientSocketModeConfig::new(),
        environment,
        callbacks,
    );
    let token = SlackApiToken::new(config.app_token.expose().to_string().into());
    listener
        .listen_for(&token)
        .await
        .map_err(|error| anyhow::anyhow!("{}", super::api::platform_error(error)))
        .context("cannot open a Socket Mode connection (is slack.app_token right?)")?;
    listener.start().await;
    tracing::info!("Slack: Socket Mode connected");
    stop.cancelled().await;
    listener.shutdown().await;
    Ok(())
}

async fn adapter(state: &SlackClientEventsUserState) -> Option<Arc<Adapter>> {
    state.read().await.get_user_state::<Arc<Adapter>>().cloned()
}

async fn on_event(
    event: SlackPushEventCallback,
    _client: Arc<SlackClient<Connector>>,
    state: SlackClientEventsUserState,
) -> UserCallbackResult<()> {
    if let Some(adapter) = adapter(&state).await {
        tokio::spawn(async move { adapter.on_event(event).await });
    }
    Ok(())
}

async fn on_command(
    command: SlackCommandEvent,
    _client: Arc<SlackClient<Connector>>,
    state: SlackClientEventsUserState,
) -> UserCallbackResult<SlackCommandEventResponse> {
    if let Some(adapter) = adapter(&state).await {
        tokio::spawn(async move { adapter.on_command(command).await });
    }
    // An empty acknowledgement: replies come through the channel or the response URL.
    Ok(SlackCommandEventResponse::new(SlackMessageContent::new()))
}

async fn on_interaction(
    event: SlackInteractionEvent,
    _client: Arc<SlackClient<Connector>>,
    state: SlackClientEventsUserState,
) -> UserCallbackResult<()> {
    if let (SlackInteractionEvent::BlockActions(click), Some(adapter)) =
        (event, adapter(&state).await)
    {
        tokio::spawn(async move { adapter.on_click(click).await });
    }
    Ok(())
}

fn on_error(
    error: Box<dyn std::error::Error + Send + Sync>,
    _client: Arc<SlackClient<Connector>>,
    _state: SlackClientEventsUserState,
) -> axum::http::StatusCode {
    tracing::warn!("Slack: Socket Mode error: {}", kind(&*error));
    axum::http::StatusCode::OK
}

/// An error's first line, without payloads (they may quote user text).
fn kind(error: &(dyn std::error::Error + Send + Sync)) -> String {
    error
        .to_string()
        .lines()
        .next()
        .unwrap_or("")
        .chars()
        .take(120)
        .collect()
}
