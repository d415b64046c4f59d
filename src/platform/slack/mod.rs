//! engram on Slack (slack-morphism): a workspace is a tenant (`slack:<team>`), a channel is
//! `slack:<team>:<channel>`. `api` is the `ChatPlatform` answers and reports are written
//! through (with `stream` for Slack's native streaming and `budget` for its rate tiers);
//! `diagnose` is what `engram doctor` asks Slack; `events` turns events and slash commands into the gateway core's calls; `http` (Events API
//! and slash commands under `/slack/`) and `socket` (Socket Mode) are the two transports.
//! The only module that knows Slack.

pub mod api;
pub mod budget;
pub mod diagnose;
pub mod events;
mod history;
pub mod http;
pub mod socket;
mod stream;

use std::sync::Arc;
use std::time::Duration;

use crate::chat::budget::RateBudget;
use crate::chat::service::Outlet;
use crate::config::SlackConfig;
use crate::gateway::Gateway;
use crate::platform::connection::{Backoff, Connections};
pub use api::SlackApi;
pub use events::Adapter;

/// The outlet name answers for Slack are delivered through.
pub const PLATFORM: &str = "slack";

/// The `ChatPlatform` for Slack. The per-channel budget the streamer takes from allows one
/// write a second (`chat.postMessage`'s pace); the tier budgets inside the client keep every
/// method within its workspace's limit.
pub fn outlet(config: &SlackConfig) -> anyhow::Result<(Outlet, Arc<SlackApi>)> {
    let api = Arc::new(
        SlackApi::new(config).map_err(|error| anyhow::anyhow!("cannot set up Slack: {error}"))?,
    );
    let outlet = Outlet {
        platform: api.clone(),
        budget: Arc::new(RateBudget::new(1, Duration::from_secs(1))),
    };
    Ok((outlet, api))
}

/// The adapter both transports hand events to.
pub fn adapter(config: &SlackConfig, gateway: Gateway, api: Arc<SlackApi>) -> Arc<Adapter> {
    Arc::new(Adapter::new(gateway, api, config.admins.clone()))
}

/// How often a connected Slack is checked.
const PROBE_INTERVAL: Duration = Duration::from_secs(30);

/// Checks, every `PROBE_INTERVAL` (sooner, with backoff, while it fails), that Slack's Web API
/// answers the bot token (`auth.test`) and records the result for `/readyz` and the
/// connection metric. The Socket Mode client reconnects its WebSocket by itself but does not
/// say when it is down; the Web API is what every answer and report needs, in both modes.
pub async fn probe(
    api: Arc<SlackApi>,
    connections: Arc<Connections>,
    stop: tokio_util::sync::CancellationToken,
) {
    let mut backoff = Backoff::new(Duration::from_secs(1), PROBE_INTERVAL);
    loop {
        let wait = match api.whoami().await {
            Ok(_) => {
                connections.connected(PLATFORM);
                backoff.reset();
                PROBE_INTERVAL
            }
            Err(error) => {
                connections.down(PLATFORM, format!("Slack's Web API: {error}"));
                backoff.next_wait()
            }
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = stop.cancelled() => return,
        }
    }
}
