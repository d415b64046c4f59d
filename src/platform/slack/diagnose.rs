//! What `engram doctor` asks Slack: does the bot token work (`auth.test`), which scopes does
//! it carry (the `x-oauth-scopes` header) against the ones engram's features need, and — in
//! Socket Mode — does the app token open a connection (`apps.connections.open`). Calls go to
//! `slack.api_url`; no token is ever part of what is reported.

use std::time::Duration;

use serde_json::Value;

use crate::config::{Secret, SlackConfig, SlackMode};

/// The bot token scopes engram's features need, and what each is for.
pub const NEEDED_SCOPES: &[(&str, &str)] = &[
    ("app_mentions:read", "@engram questions"),
    (
        "channels:history",
        "files shared and thread replies in public channels",
    ),
    ("chat:write", "answers, streams and summaries"),
    ("commands", "/ask and /brain"),
    ("files:read", "downloading shared files"),
    ("reactions:write", "⏳ / ✅ / ❌ on shared files"),
    ("users:read", "telling workspace admins apart for /brain"),
];

/// What Slack said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnosis {
    /// `auth.test`: the bot and workspace names, or Slack's error.
    pub bot: Result<(String, String), String>,
    /// Needed scopes the token lacks (empty when Slack did not list the token's scopes).
    pub missing_scopes: Vec<&'static str>,
    /// Whether Slack listed the token's scopes at all.
    pub scopes_listed: bool,
    /// Socket Mode: `Ok` when the app token opens a connection, else why not; `None` in HTTP mode.
    pub app_token: Option<Result<(), String>>,
}

pub async fn diagnose(config: &SlackConfig) -> Diagnosis {
    let client = reqwest::Client::builder()
        .connect_timeout(TIMEOUT)
        .timeout(TIMEOUT)
        .build()
        .unwrap_or_default();
    let base = config.api_url.trim_end_matches('/');
    let (bot, scopes) = match call(&client, base, "auth.test", &config.bot_token).await {
        Ok((body, scopes)) => (
            Ok((
                body["user"].as_str().unwrap_or("?").to_string(),
                body["team"].as_str().unwrap_or("?").to_string(),
            )),
            scopes,
        ),
        Err(reason) => (Err(reason), None),
    };
    let missing_scopes = scopes
        .as_ref()
        .map(|scopes| missing(scopes))
        .unwrap_or_default();
    let app_token = match config.mode {
        SlackMode::Socket if config.app_token.is_set() => Some(
            call(&client, base, "apps.connections.open", &config.app_token)
                .await
                .map(drop),
        ),
        SlackMode::Socket => Some(Err("slack.app_token is empty".into())),
        SlackMode::Http => None,
    };
    Diagnosis {
        bot,
        scopes_listed: scopes.is_some(),
        missing_scopes,
        app_token,
    }
}

/// How long each request may take: `engram doctor` answers within seconds.
const TIMEOUT: Duration = Duration::from_secs(5);

/// An error and its causes ("connection refused"), one line.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        cause = inner.source();
    }
    text
}

/// The needed scopes not in Slack's comma-separated list.
pub fn missing(granted: &str) -> Vec<&'static str> {
    let granted: Vec<&str> = granted.split(',').map(str::trim).collect();
    NEEDED_SCOPES
        .iter()
        .map(|(scope, _)| *scope)
        .filter(|scope| !granted.contains(scope))
        .collect()
}

/// POSTs a Web API method; its body and the `x-oauth-scopes` header, or Slack's error.
async fn call(
    client: &reqwest::Client,
    base: &str,
    method: &str,
    token: &Secret,
) -> Result<(Value, Option<String>), String> {
    let response = client
        .post(format!("{base}/{method}"))
        .header("Authorization", format!("Bearer {}", token.expose()))
        .send()
        .await
        .map_err(|error| {
            if error.is_timeout() {
                format!(
                    "timed out: Slack did not answer {method} within {} s",
                    TIMEOUT.as_secs()
                )
            } else {
                format!("cannot reach Slack: {}", error_chain(&error.without_url()))
            }
        })?;
    let scopes = response
        .headers()
        .get("x-oauth-scopes")
        .and_then(|value| value.to_str().ok())
        .map(str::to_string);
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    if body["ok"] == Value::Bool(true) {
        Ok((body, scopes))
    } else {
        let error = body["error"].as_str().unwrap_or("no answer");
        Err(format!("{method} answered `{error}` (HTTP {status})"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_scopes_are_named() {
        let granted = "app_mentions:read,channels:history,chat:write,commands,files:read";
        assert_eq!(missing(granted), ["reactions:write", "users:read"]);
        let all: Vec<&str> = NEEDED_SCOPES.iter().map(|(s, _)| *s).collect();
        assert!(missing(&all.join(",")).is_empty());
    }
}
