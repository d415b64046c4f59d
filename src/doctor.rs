//! `engram doctor`: checks the config, the store, the configured endpoints and the installed
//! tools, and says for each what is wrong and how to fix it. Never prints a secret.

use std::fmt::Write as _;
use std::process::Stdio;
use std::time::Duration;

use crate::config::{Config, IndexKind};
use crate::ingest::sandbox::{self, Sandbox};
use crate::llm::{ChatModel, Embedder, LlmError, LlmFault};
use crate::platform::discord::diagnose as discord;
use crate::store::{self, POSTGRES_MIGRATIONS, SQLITE_MIGRATIONS};

/// How long a reachability check may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    Warn,
    Fail,
}

#[derive(Debug, Clone)]
pub struct Check {
    pub name: &'static str,
    pub status: Status,
    pub detail: String,
}

#[derive(Debug, Default)]
pub struct Report {
    pub checks: Vec<Check>,
}

impl Report {
    fn add(&mut self, name: &'static str, status: Status, detail: impl Into<String>) {
        self.checks.push(Check {
            name,
            status,
            detail: detail.into(),
        });
    }

    pub fn has_failures(&self) -> bool {
        self.checks.iter().any(|check| check.status == Status::Fail)
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        for check in &self.checks {
            let label = match check.status {
                Status::Ok => "ok  ",
                Status::Warn => "WARN",
                Status::Fail => "FAIL",
            };
            let _ = writeln!(out, "[{label}] {:<11} {}", check.name, check.detail);
        }
        out
    }
}

/// Runs every check. The config itself was already loaded (or engram would have stopped).
pub async fn run(config: &Config) -> Report {
    let mut report = Report::default();
    report.add(
        "config",
        Status::Ok,
        format!(
            "loaded; store {}, listen {}",
            crate::app::store_location(config),
            config.http.listen
        ),
    );
    check_listener(config, &mut report);
    check_store(config, &mut report).await;
    check_index(config, &mut report).await;
    check_llm(config, &mut report).await;
    check_embeddings(config, &mut report).await;
    check_extractor(config, &mut report).await;
    check_tool(
        &mut report,
        "tesseract",
        &["--version"],
        "tesseract-ocr tesseract-ocr-eng",
    )
    .await;
    check_tool(&mut report, "pdftotext", &["-v"], "poppler-utils").await;
    if config.discord.token.is_set() {
        let check = async {
            let mut lines = Report::default();
            check_discord(config, &mut lines).await;
            lines
        };
        within(PLATFORM_TIMEOUT, "discord", &mut report, check).await;
    } else {
        report.add("discord", Status::Ok, "off (no token configured)");
    }
    if config.slack.bot_token.is_set() {
        let check = async {
            let mut lines = Report::default();
            check_slack(config, &mut lines).await;
            lines
        };
        within(PLATFORM_TIMEOUT, "slack", &mut report, check).await;
    } else {
        report.add("slack", Status::Ok, "off (no token configured)");
    }
    report
}

/// How long a chat platform's checks may take together (a few requests each).
const PLATFORM_TIMEOUT: Duration = Duration::from_secs(12);

/// `http.listen`: `serve` (its api role) can listen there.
fn check_listener(config: &Config, report: &mut Report) {
    let address = config.http.listen;
    match std::net::TcpListener::bind(address) {
        Ok(listener) => {
            drop(listener);
            report.add(
                "listen",
                Status::Ok,
                format!("{address} is free for `engram serve`"),
            );
        }
        Err(error) if error.kind() == std::io::ErrorKind::AddrInUse => report.add(
            "listen",
            Status::Warn,
            format!(
                "{address} is in use: fine if `engram serve` is running; otherwise another \
                 program has it and serve will not start (change http.listen)"
            ),
        ),
        Err(error) => report.add(
            "listen",
            Status::Fail,
            format!("cannot listen on {address} ({error}): change http.listen"),
        ),
    }
}

/// Runs a check for at most `limit`; past it, the check fails, named as a timeout.
async fn within(
    limit: Duration,
    name: &'static str,
    report: &mut Report,
    check: impl std::future::Future<Output = Report>,
) {
    match tokio::time::timeout(limit, check).await {
        Ok(mut lines) => report.checks.append(&mut lines.checks),
        Err(_) => report.add(
            name,
            Status::Fail,
            format!(
                "timed out: no complete answer within {} s (is the server up, and its URL \
                 right?)",
                limit.as_secs()
            ),
        ),
    }
}

/// The extractor `ingest` runs: it starts, and reads a small text file in its sandbox.
async fn check_extractor(config: &Config, report: &mut Report) {
    let sandbox = Sandbox::from_config(&config.ingest);
    let program = sandbox.program.display().to_string();
    let sample = match tempfile::Builder::new()
        .prefix("engram-doctor-")
        .suffix(".txt")
        .tempfile()
    {
        Ok(file) => file,
        Err(error) => {
            report.add(
                "extractor",
                Status::Warn,
                format!("cannot write a sample file to try it: {error}"),
            );
            return;
        }
    };
    if let Err(error) = std::fs::write(sample.path(), "engram doctor\n") {
        report.add(
            "extractor",
            Status::Warn,
            format!("cannot write a sample file to try it: {error}"),
        );
        return;
    }
    match tokio::time::timeout(PROBE_TIMEOUT, sandbox::extract(&sandbox, sample.path())).await {
        Ok(Ok(extracted)) if extracted.pages.iter().any(|p| p.text.contains("doctor")) => report
            .add(
                "extractor",
                Status::Ok,
                format!("{program}: reads a sample file"),
            ),
        Ok(Ok(_)) => report.add(
            "extractor",
            Status::Fail,
            format!("{program}: ran, but read nothing from a sample text file"),
        ),
        Ok(Err(error)) => report.add(
            "extractor",
            Status::Fail,
            format!(
                "{error}; every ingest would fail (install engram-extract beside engram, or \
                 set ingest.extractor)"
            ),
        ),
        Err(_) => report.add(
            "extractor",
            Status::Fail,
            format!(
                "{program}: timed out: no result for a one-line text file within {} s",
                PROBE_TIMEOUT.as_secs()
            ),
        ),
    }
}

async fn check_discord(config: &Config, report: &mut Report) {
    let diagnosis = match crate::platform::discord::rest(&config.discord) {
        Ok(rest) => rest.diagnose().await,
        Err(error) => {
            report.add("discord", Status::Fail, format!("{error:#}"));
            return;
        }
    };
    match diagnosis {
        Ok(diagnosis) => {
            if diagnosis.message_content {
                report.add(
                    "discord",
                    Status::Ok,
                    format!(
                        "token works (bot `{}`); Message Content intent enabled",
                        printable(&diagnosis.bot_name)
                    ),
                );
            } else {
                report.add(
                    "discord",
                    Status::Fail,
                    format!(
                        "token works (bot `{}`), but the Message Content intent is off: enable \
                         it under Bot → Privileged Gateway Intents in the Discord developer \
                         portal, or mentions arrive without their text",
                        printable(&diagnosis.bot_name)
                    ),
                );
            }
            check_discord_guilds(&diagnosis, report);
        }
        Err(crate::chat::PlatformError::Gone(reason)) => report.add(
            "discord",
            Status::Fail,
            format!("Discord refused the token ({reason}): check discord.token"),
        ),
        Err(error) => report.add(
            "discord",
            Status::Fail,
            format!("cannot reach Discord: {error}"),
        ),
    }
}

/// One line per server the bot is in: the permissions engram uses that the bot's roles lack
/// there, and how to grant them.
fn check_discord_guilds(diagnosis: &discord::Diagnosis, report: &mut Report) {
    let invite = format!(
        "https://discord.com/oauth2/authorize?client_id={}&scope=bot%20applications.commands\
         &permissions={}",
        diagnosis.application_id,
        discord::needed_bits()
    );
    if diagnosis.guilds.is_empty() {
        report.add(
            "discord",
            Status::Warn,
            format!("the bot is in no server yet: invite it with {invite}"),
        );
    }
    for guild in &diagnosis.guilds {
        let server = format!("server `{}` ({})", printable(&guild.name), guild.id);
        if guild.missing.is_empty() {
            report.add(
                "discord",
                Status::Ok,
                format!("{server}: the bot has every permission engram uses"),
            );
            continue;
        }
        let missing: Vec<String> = guild
            .missing
            .iter()
            .map(|needed| format!("{} ({})", needed.name, needed.used_for))
            .collect();
        let status = if guild.missing.iter().any(|needed| needed.essential) {
            Status::Fail
        } else {
            Status::Warn
        };
        report.add(
            "discord",
            status,
            format!(
                "{server}: the bot lacks {}. Grant them to its role under Server Settings → \
                 Roles (channel overrides can still take them away in single channels), or \
                 invite it again with {invite}",
                missing.join(", ")
            ),
        );
    }
    if diagnosis.unchecked_guilds > 0 {
        report.add(
            "discord",
            Status::Ok,
            format!(
                "{} more servers not checked (the first {} were)",
                diagnosis.unchecked_guilds,
                diagnosis.guilds.len()
            ),
        );
    }
}

/// Whether a Slack check failed on the way (no connection, no answer) rather than on Slack's
/// word about the token.
fn is_network(reason: &str) -> bool {
    reason.starts_with("cannot reach Slack") || reason.starts_with("timed out")
}

/// A name from a chat platform without control characters (it goes to a terminal).
fn printable(name: &str) -> String {
    name.chars().filter(|c| !c.is_control()).collect()
}

async fn check_slack(config: &Config, report: &mut Report) {
    use crate::config::SlackMode;
    use crate::platform::slack::diagnose::{diagnose, NEEDED_SCOPES};
    // Checked before any request: `serve` refuses to start without it.
    if config.slack.mode == SlackMode::Socket && !config.slack.app_token.is_set() {
        report.add(
            "slack-app",
            Status::Fail,
            "slack.mode = \"socket\" needs slack.app_token: an app-level token (xapp-…) with \
             connections:write, and Socket Mode enabled in the app's settings (or set \
             slack.mode = \"http\" with slack.signing_secret); `engram serve` will not start \
             without it",
        );
    }
    let diagnosis = diagnose(&config.slack).await;
    let (bot, team) = match diagnosis.bot {
        Ok(names) => names,
        // Not the token's fault: Slack (or slack.api_url) did not answer.
        Err(reason) if is_network(&reason) => {
            report.add(
                "slack",
                Status::Fail,
                format!("{reason}: check slack.api_url and the network (the token was not tried)"),
            );
            return;
        }
        Err(reason) => {
            report.add(
                "slack",
                Status::Fail,
                format!("Slack refused the token ({reason}): check slack.bot_token (xoxb-…)"),
            );
            return;
        }
    };
    if !diagnosis.missing_scopes.is_empty() {
        let needed: Vec<String> = diagnosis
            .missing_scopes
            .iter()
            .map(|scope| {
                let what = NEEDED_SCOPES
                    .iter()
                    .find(|(name, _)| name == scope)
                    .map_or("", |(_, what)| what);
                format!("{scope} ({what})")
            })
            .collect();
        report.add(
            "slack",
            Status::Fail,
            format!(
                "bot `{bot}` in `{team}` lacks scopes: {}. Add them under OAuth & Permissions → \
                 Bot Token Scopes, then reinstall the app",
                needed.join(", ")
            ),
        );
    } else if !diagnosis.scopes_listed {
        report.add(
            "slack",
            Status::Warn,
            format!("bot `{bot}` in `{team}`; Slack did not list the token's scopes"),
        );
    } else {
        report.add(
            "slack",
            Status::Ok,
            format!("bot `{bot}` in `{team}`; every needed scope granted"),
        );
    }
    match (config.slack.mode, diagnosis.app_token) {
        (SlackMode::Socket, Some(Ok(()))) => report.add(
            "slack-app",
            Status::Ok,
            "Socket Mode: the app token opens connections",
        ),
        (SlackMode::Socket, _) if !config.slack.app_token.is_set() => {}
        (SlackMode::Socket, Some(Err(reason))) => report.add(
            "slack-app",
            Status::Fail,
            format!(
                "Socket Mode: {reason}: set slack.app_token to an app-level token (xapp-…) \
                 with connections:write, and enable Socket Mode in the app's settings"
            ),
        ),
        (SlackMode::Http, _) if !config.slack.signing_secret.is_set() => report.add(
            "slack-app",
            Status::Fail,
            "HTTP mode: slack.signing_secret is empty; every request would be refused",
        ),
        _ => report.add(
            "slack-app",
            Status::Ok,
            "HTTP mode: requests are verified with slack.signing_secret at /slack/…",
        ),
    }
}

async fn check_index(config: &Config, report: &mut Report) {
    let postgres = config.store.url.backend() == Some(crate::config::StoreBackend::Postgres);
    match config.index.kind {
        IndexKind::Embedded if postgres => report.add(
            "index",
            Status::Fail,
            "index.kind = \"embedded\" keeps the index inside a SQLite store; a PostgreSQL \
             store needs index.kind = \"qdrant\"",
        ),
        IndexKind::Embedded => report.add("index", Status::Ok, "embedded, inside the store"),
        IndexKind::Qdrant => check_qdrant(config, report).await,
    }
}

/// Qdrant: reachable (and over TLS for `https://`), the API key accepted, and the collection
/// missing (made at start) or of the shape this config writes: the embedding width above all.
async fn check_qdrant(config: &Config, report: &mut Report) {
    use crate::index::qdrant::{diagnose, QdrantOptions};
    use crate::index::IndexError;
    let url = &config.index.qdrant_url;
    let name = &config.index.collection;
    let dimensions =
        (!config.embeddings.base_url.is_empty()).then_some(config.embeddings.dimensions as usize);
    let options = QdrantOptions::from_config(&config.index, dimensions);
    let diagnosis = match diagnose(&options).await {
        Ok(diagnosis) => diagnosis,
        Err(error @ IndexError::Unavailable(_)) => {
            return report.add(
                "index",
                Status::Fail,
                format!(
                    "{error} (check index.qdrant_url: Qdrant's gRPC port, 6334 by default, and \
                     https:// if it uses TLS)"
                ),
            )
        }
        Err(error) => return report.add("index", Status::Fail, error.to_string()),
    };
    let version = &diagnosis.version;
    match diagnosis.collection {
        None => report.add(
            "index",
            Status::Ok,
            format!(
                "Qdrant {version} at {url}; collection `{name}` does not exist yet (made at start)"
            ),
        ),
        Some((points, Ok(()))) => report.add(
            "index",
            Status::Ok,
            format!("Qdrant {version} at {url}; collection `{name}`: {points} chunks"),
        ),
        Some((_, Err(error))) => report.add(
            "index",
            Status::Fail,
            format!(
                "Qdrant {version} at {url}: collection `{name}` cannot be used: {error}; engram \
                 refuses to start on it"
            ),
        ),
    }
    if config.index.qdrant_api_key.is_set() && url.starts_with("http://") {
        report.add(
            "index-tls",
            Status::Warn,
            "index.qdrant_api_key is sent in clear over http://: use an https:// URL unless \
             Qdrant is on this host or a private network",
        );
    }
}

async fn check_store(config: &Config, report: &mut Report) {
    let known: Vec<i64> = match config.store.url.backend() {
        Some(crate::config::StoreBackend::Postgres) => {
            POSTGRES_MIGRATIONS.iter().map(|m| m.version).collect()
        }
        _ => SQLITE_MIGRATIONS.iter().map(|m| m.version).collect(),
    };
    let latest = known.last().copied().unwrap_or(0);
    if config
        .store
        .url
        .sqlite_path()
        .is_some_and(|path| !path.exists())
    {
        report.add(
            "store",
            Status::Ok,
            format!(
                "{}: {} does not exist yet; `engram brain create`, `migrate` or `serve` \
                 create it (run engram from this folder, or give an absolute path)",
                config.store.url,
                crate::app::store_location(config)
            ),
        );
        return;
    }
    let store = match tokio::time::timeout(CONNECT_TIMEOUT * 2, store::connect(&config.store)).await
    {
        Ok(Ok(store)) => store,
        Ok(Err(error)) => {
            report.add(
                "store",
                Status::Fail,
                format!("{}: {error} (check store.url)", config.store.url),
            );
            return;
        }
        Err(_) => {
            report.add(
                "store",
                Status::Fail,
                format!("{}: timed out: no answer within 6 s", config.store.url),
            );
            return;
        }
    };
    let applied = store.applied_migrations().await.unwrap_or_default();
    let current = applied.last().copied().unwrap_or(0);
    if current >= latest {
        report.add(
            "store",
            Status::Ok,
            format!(
                "{}: reachable, schema at version {current}",
                config.store.url
            ),
        );
    } else {
        report.add(
            "store",
            Status::Warn,
            format!(
                "{}: reachable, schema at version {current} of {latest}; run `engram migrate` \
                 (serve migrates by itself)",
                config.store.url
            ),
        );
    }
}

/// How long each endpoint's one tiny request may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// Loading the local embedding model (reading ~100 MB of weights) before its first vector.
const LOCAL_LOAD_TIMEOUT: Duration = Duration::from_secs(60);

/// What an admin reads for a failed endpoint request: the fault, and the key to check.
fn endpoint_problem(error: &LlmError, model: &str, section: &str) -> (Status, String) {
    let detail = match error {
        LlmError::Unavailable(failure) | LlmError::Rejected(failure) => failure.detail.clone(),
        other => other.to_string(),
    };
    match error.fault() {
        // The provider's message can echo part of the key: it is not shown.
        LlmFault::Key => (
            Status::Fail,
            format!("the API key was rejected (HTTP 401): check {section}.api_key"),
        ),
        LlmFault::Permission => (
            Status::Fail,
            format!(
                "the API key may not use model `{model}` (HTTP 403): check the key's \
                 permissions or {section}.model"
            ),
        ),
        LlmFault::Model => (
            Status::Fail,
            format!(
                "model `{model}` not found (HTTP 404): check {section}.model, and that \
                 {section}.base_url is the API's base (it usually ends in /v1)"
            ),
        ),
        LlmFault::RateLimited => (
            Status::Warn,
            "rate limited, or the account's quota is used up (HTTP 429): requests will fail \
             until it recovers"
                .to_string(),
        ),
        LlmFault::Timeout => (
            Status::Fail,
            format!(
                "timed out: no answer within {} s: check {section}.base_url, or whether the \
                 server is overloaded",
                PROBE_TIMEOUT.as_secs()
            ),
        ),
        LlmFault::Unreachable => (
            Status::Fail,
            format!("unreachable ({detail}): check {section}.base_url"),
        ),
        LlmFault::Server => (Status::Fail, format!("server error: {detail}")),
        LlmFault::Refused => (Status::Fail, format!("refused the request: {detail}")),
        LlmFault::Malformed => (
            Status::Fail,
            format!(
                "answered with something engram cannot read ({detail}): is {section}.base_url \
                 an OpenAI-compatible API?"
            ),
        ),
    }
}

/// The chat endpoint: one real request (a one-token completion of the configured model).
async fn check_llm(config: &Config, report: &mut Report) {
    let llm = &config.llm;
    let model = match ChatModel::from_config(llm) {
        Ok(Some(model)) => model,
        Ok(None) => {
            report.add(
                "llm",
                Status::Ok,
                "not configured: answers will quote the best passages (set llm.base_url for an \
                 LLM)",
            );
            return;
        }
        Err(error) => {
            report.add("llm", Status::Fail, format!("{}: {error}", llm.base_url));
            return;
        }
    };
    match model.probe(PROBE_TIMEOUT).await {
        Ok(()) => report.add(
            "llm",
            Status::Ok,
            format!(
                "{}: model `{}` answered a one-token request",
                llm.base_url, llm.model
            ),
        ),
        Err(error) => {
            let (status, problem) = endpoint_problem(&error, &llm.model, "llm");
            report.add("llm", status, format!("{}: {problem}", llm.base_url));
        }
    }
}

/// The embeddings endpoint: one real request (one short input), its width checked against
/// `embeddings.dimensions`.
async fn check_embeddings(config: &Config, report: &mut Report) {
    let embeddings = &config.embeddings;
    let embedder = match Embedder::from_config(embeddings) {
        Ok(Some(embedder)) => embedder,
        Ok(None) => {
            report.add(
                "embeddings",
                Status::Ok,
                "not configured (no base_url, no local_model): keyword (BM25) retrieval only",
            );
            return;
        }
        Err(error) if embeddings.base_url.is_empty() => {
            report.add("embeddings", Status::Fail, error.to_string());
            return;
        }
        Err(error) => {
            report.add(
                "embeddings",
                Status::Fail,
                format!("{}: {error}", embeddings.base_url),
            );
            return;
        }
    };
    if let Some(model) = embedder.local_model() {
        // The first embedding waits for the weights to load; the second is what a question
        // costs.
        let started = std::time::Instant::now();
        let first = embedder.probe(LOCAL_LOAD_TIMEOUT).await;
        let loaded = started.elapsed();
        let started = std::time::Instant::now();
        let second = embedder.probe(PROBE_TIMEOUT).await;
        let took = started.elapsed();
        match first.and(second) {
            Ok(width) => report.add(
                "embeddings",
                Status::Ok,
                format!(
                    "local model {} ({}): {width} dimensions; a test embedding took {:.1} ms \
                     (the first, with loading, {} ms)",
                    model.dir().display(),
                    model.identity(),
                    took.as_secs_f64() * 1000.0,
                    loaded.as_millis()
                ),
            ),
            Err(error) => report.add(
                "embeddings",
                Status::Fail,
                format!("local model {}: {error}", model.dir().display()),
            ),
        }
        return;
    }
    match embedder.probe(PROBE_TIMEOUT).await {
        Ok(width) if width == embeddings.dimensions as usize => report.add(
            "embeddings",
            Status::Ok,
            format!(
                "{}: model `{}` returned a {width}-dimensional vector",
                embeddings.base_url, embeddings.model
            ),
        ),
        Ok(width) => report.add(
            "embeddings",
            Status::Fail,
            format!(
                "{}: model `{}` returns {width}-dimensional vectors, but \
                 embeddings.dimensions is {}: set it to {width} (or choose another model)",
                embeddings.base_url, embeddings.model, embeddings.dimensions
            ),
        ),
        Err(error) => {
            let (status, problem) = endpoint_problem(&error, &embeddings.model, "embeddings");
            report.add(
                "embeddings",
                status,
                format!("{}: {problem}", embeddings.base_url),
            );
        }
    }
}

async fn check_tool(report: &mut Report, tool: &'static str, args: &[&str], package: &str) {
    let output = tokio::process::Command::new(tool)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await;
    match output {
        Ok(output) => {
            let text = String::from_utf8_lossy(if output.stdout.is_empty() {
                &output.stderr
            } else {
                &output.stdout
            })
            .lines()
            .next()
            .unwrap_or("")
            .to_string();
            report.add(tool, Status::Ok, text);
        }
        Err(_) => report.add(
            tool,
            Status::Warn,
            format!("not installed; the ingest role will need it (apt-get install {package})"),
        ),
    }
}
