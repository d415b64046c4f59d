//! engram on Discord: the serenity gateway client turns Discord events into `ChatEvent`s and
//! slash commands into `BrainCommand`s for the gateway core; `rest` is the `ChatPlatform`
//! answers and reports are written through. The only module (with `rest`) that knows Discord.

pub mod diagnose;
mod events;
mod history;
mod ratelimit;
pub mod rest;
pub mod threads;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use serenity::all::{CommandOptionType, CreateCommand, CreateCommandOption, GatewayIntents};
use serenity::client::ClientBuilder;
use serenity::http::HttpBuilder;
use tokio::sync::OnceCell;

use crate::chat::budget::RateBudget;
use crate::chat::service::Outlet;
use crate::config::{DiscordConfig, DiscordShards};
use crate::gateway::Gateway;
use crate::platform::connection::Connections;
use events::Handler;
pub use rest::{channel_key, DiscordRest};
use threads::Threads;

/// The outlet name answers for Discord are delivered through.
pub const PLATFORM: &str = "discord";

/// What engram needs from the gateway: servers and their channels and threads, messages, and
/// their text (a privileged intent the application must have enabled).
pub fn intents() -> GatewayIntents {
    GatewayIntents::GUILDS | GatewayIntents::GUILD_MESSAGES | GatewayIntents::MESSAGE_CONTENT
}

/// Where REST calls go: `discord.proxy_url`, or Discord itself.
fn rest_base(config: &DiscordConfig) -> &str {
    if config.proxy_url.is_empty() {
        "https://discord.com"
    } else {
        &config.proxy_url
    }
}

/// The `ChatPlatform` for Discord, with the per-channel write budget all answers share, and
/// the same REST client for the adapter ([`run`]): one client per process, so every request
/// made with the token waits in the same rate-limit buckets.
pub fn outlet(config: &DiscordConfig) -> anyhow::Result<(Outlet, DiscordRest)> {
    let rest = rest(config)?;
    let budget = rest.budget();
    let outlet = Outlet {
        platform: Arc::new(rest.clone()),
        budget,
    };
    Ok((outlet, rest))
}

/// Discord's REST API as configured, with a fresh per-channel budget: Discord allows about 5
/// message writes per 5 s per channel; engram spaces them 1.25 s apart (4 per 5 s), so network
/// jitter between two writes cannot put a sixth into one of Discord's windows.
pub fn rest(config: &DiscordConfig) -> anyhow::Result<DiscordRest> {
    let budget = Arc::new(RateBudget::new(4, Duration::from_secs(5)));
    DiscordRest::new(rest_base(config), config.token.clone(), budget)
        .context("cannot set up Discord's REST client")
}

/// Connects to Discord's gateway and hands events to `gateway` until the connection ends for
/// good (a bad token, missing intents) or the task is aborted. Everything the adapter writes
/// goes through `rest`.
pub async fn run(
    config: DiscordConfig,
    gateway: Gateway,
    rest: DiscordRest,
    connections: Arc<Connections>,
) -> anyhow::Result<()> {
    let token = config.token.expose().to_string();
    let mut http = HttpBuilder::new(&token);
    if !config.proxy_url.is_empty() {
        // The proxy (e.g. twilight-http-proxy) rate-limits; engram's budget obeys its headers.
        http = http
            .proxy(config.proxy_url.trim_end_matches('/'))
            .ratelimiter_disabled(true);
    }
    let handler = Handler {
        gateway,
        rest,
        connections,
        shards: Mutex::default(),
        bot: OnceCell::new(),
        threads: Threads::default(),
        restricted: Mutex::default(),
    };
    let mut client = ClientBuilder::new_with_http(http.build(), intents())
        .event_handler(handler)
        .await
        .context("cannot start the Discord client (is discord.token right?)")?;
    if !config.gateway_url.is_empty() {
        *client.ws_url.lock().await = config.gateway_url.clone();
    }
    let started = match config.shards {
        DiscordShards::Auto => client.start_autosharded().await,
        // serenity's range runs from its start to its end, both included.
        DiscordShards::Range { first, last, total } => {
            tracing::info!(
                first,
                last,
                total,
                "Discord: running gateway shards {first}-{last} of {total}"
            );
            client.start_shard_range(first..last, total).await
        }
    };
    started.context("the Discord gateway connection ended")
}

/// The slash commands engram registers.
pub fn commands() -> Vec<CreateCommand> {
    let name = || {
        CreateCommandOption::new(CommandOptionType::String, "name", "The brain's name")
            .required(true)
    };
    let sub = |name: &str, description: &str| {
        CreateCommandOption::new(CommandOptionType::SubCommand, name, description)
    };
    let mode =
        CreateCommandOption::new(CommandOptionType::String, "mode", "What the channel is for")
            .add_string_choice("ask: questions are answered", "ask")
            .add_string_choice("knowledge: files are learned", "knowledge")
            .add_string_choice("both", "both");
    vec![
        CreateCommand::new("brain")
            .description("Manage this server's brains")
            .add_option(sub("create", "Create a brain").add_sub_option(name()))
            .add_option(
                sub("link", "Link this channel to a brain")
                    .add_sub_option(name())
                    .add_sub_option(mode)
                    .add_sub_option(
                        CreateCommandOption::new(
                            CommandOptionType::String,
                            "messages",
                            "Learn what people say here too (knowledge and both modes)",
                        )
                        .add_string_choice("on", "on")
                        .add_string_choice("off", "off"),
                    ),
            )
            .add_option(sub("unlink", "Unlink this channel"))
            .add_option(sub("list", "List the brains"))
            .add_option(sub("info", "This channel's brain"))
            .add_option(
                sub("forget", "Forget a document").add_sub_option(
                    CreateCommandOption::new(
                        CommandOptionType::String,
                        "document",
                        "The file name",
                    )
                    .required(true),
                ),
            )
            .add_option(
                sub("prompt", "Set the brain's instructions").add_sub_option(
                    CreateCommandOption::new(
                        CommandOptionType::String,
                        "text",
                        "Instructions (empty: the default)",
                    )
                    .required(true),
                ),
            )
            .add_option(
                sub(
                    "budget",
                    "This brain's monthly LLM budget: show it, or set it",
                )
                .add_sub_option(
                    CreateCommandOption::new(
                        CommandOptionType::Number,
                        "usd",
                        "US dollars a month (0: the default again); leave out to see the budgets",
                    )
                    .min_number_value(0.0)
                    .max_number_value(crate::gateway::MAX_BUDGET_USD),
                ),
            )
            .add_option(
                sub(
                    "history",
                    "Read this channel's past messages and files into its brain",
                )
                .add_sub_option(
                    CreateCommandOption::new(
                        CommandOptionType::Integer,
                        "days",
                        "Only the last this many days (leave out: all of it)",
                    )
                    .min_int_value(1)
                    .max_int_value(u64::from(crate::gateway::MAX_HISTORY_DAYS)),
                ),
            ),
        CreateCommand::new("ask")
            .description("Ask this channel's brain")
            .add_option(
                CreateCommandOption::new(CommandOptionType::String, "question", "Your question")
                    .required(true),
            ),
        CreateCommand::new("usage")
            .description("Questions, tokens, cost, answer times and votes this month"),
    ]
}

#[cfg(test)]
mod randomized_tests;
