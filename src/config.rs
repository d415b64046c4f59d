//! Layered configuration: built-in defaults, `config/default.toml`, a user file, `ENGRAM__*`
//! variables. The only reader of environment variables; secrets are redacted when shown.
#![allow(
    clippy::disallowed_methods,
    reason = "the one module that reads the environment (clippy.toml)"
)]

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;
use toml::{Table, Value};

/// The defaults, compiled in from the same file that is shipped in `config/`.
const BUILT_IN_DEFAULTS: &str = include_str!("../config/default.toml");

/// Prefix of the environment variables that override keys: `ENGRAM__SECTION__KEY`.
const ENV_PREFIX: &str = "ENGRAM__";

/// Why a configuration could not be loaded. Every variant names the file, variable or key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The reason is text, not a source error, so the OS error is said once.
    #[error("cannot read config file {path}: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error("config file {path} is not valid TOML ({at}): {message}")]
    Syntax {
        path: String,
        /// "line 3, column 7".
        at: String,
        message: String,
    },
    #[error("unknown config key `{key}` (in {origin})")]
    UnknownKey { key: String, origin: String },
    #[error("invalid value for config key `{key}`: {message}")]
    Invalid { key: String, message: String },
}

/// A value that must never be printed: `Debug` shows `[redacted]` (or `""` when unset).
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for the one call that needs it (an auth header, a login).
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_set(&self) -> bool {
        !self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_set() {
            f.write_str("[redacted]")
        } else {
            f.write_str("\"\"")
        }
    }
}

/// A store URL; its password is a secret, so `Debug` and `Display` hide it.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct StoreUrl(String);

/// The two store back-ends a URL can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreBackend {
    Sqlite,
    Postgres,
}

impl StoreUrl {
    pub fn new(url: impl Into<String>) -> Self {
        Self(url.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn backend(&self) -> Option<StoreBackend> {
        if self.0.starts_with("sqlite:") {
            Some(StoreBackend::Sqlite)
        } else if self.0.starts_with("postgres://") || self.0.starts_with("postgresql://") {
            Some(StoreBackend::Postgres)
        } else {
            None
        }
    }

    /// The database file of a `sqlite:` URL.
    pub fn sqlite_path(&self) -> Option<&Path> {
        let rest = self.0.strip_prefix("sqlite:")?;
        let rest = rest.strip_prefix("//").unwrap_or(rest);
        Some(Path::new(rest.split('?').next().unwrap_or_default()))
    }

    /// The URL with any password replaced by `***`.
    pub fn redacted(&self) -> String {
        let Some(scheme_end) = self.0.find("://") else {
            return self.0.clone();
        };
        let rest = &self.0[scheme_end + 3..];
        let authority_end = rest.find('/').unwrap_or(rest.len());
        let Some(at) = rest[..authority_end].rfind('@') else {
            return self.0.clone();
        };
        match rest[..at].find(':') {
            Some(colon) => format!(
                "{}{}:***{}",
                &self.0[..scheme_end + 3],
                &rest[..colon],
                &rest[at..]
            ),
            None => self.0.clone(),
        }
    }
}

impl fmt::Debug for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.redacted())
    }
}

impl fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub store: StoreConfig,
    pub index: IndexConfig,
    pub llm: LlmConfig,
    pub embeddings: EmbeddingsConfig,
    pub discord: DiscordConfig,
    pub slack: SlackConfig,
    pub http: HttpConfig,
    pub chat: ChatConfig,
    pub ingest: IngestConfig,
    pub jobs: JobsConfig,
    pub conversations: ConversationsConfig,
    pub budgets: BudgetsConfig,
    pub metrics: MetricsConfig,
    pub log: LogConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    pub url: StoreUrl,
    pub max_connections: u32,
    pub busy_timeout_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IndexKind {
    Embedded,
    Qdrant,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IndexConfig {
    pub kind: IndexKind,
    pub qdrant_url: String,
    /// Qdrant's API key (its `service.api_key`), sent as the `api-key` header; empty: none.
    pub qdrant_api_key: Secret,
    pub collection: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LlmConfig {
    pub base_url: String,
    pub api_key: Secret,
    pub model: String,
    pub first_token_timeout_ms: u64,
    pub total_timeout_ms: u64,
    pub system_prompt: String,
    pub context_tokens: u32,
    pub prices: Vec<Price>,
}

/// What a model costs, per million tokens.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    pub model: String,
    pub prompt_usd_per_mtok: f64,
    pub completion_usd_per_mtok: f64,
}

impl LlmConfig {
    /// The cost of a completion in millionths of a US dollar (0 for unlisted models).
    pub fn cost_micros(&self, model: &str, prompt_tokens: u32, completion_tokens: u32) -> i64 {
        self.prices
            .iter()
            .find(|price| price.model == model)
            .map_or(0, |price| {
                (f64::from(prompt_tokens) * price.prompt_usd_per_mtok
                    + f64::from(completion_tokens) * price.completion_usd_per_mtok)
                    .round() as i64
            })
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmbeddingsConfig {
    pub base_url: String,
    pub api_key: Secret,
    pub model: String,
    pub dimensions: u32,
    /// A BERT sentence-embedding model's directory (config.json, tokenizer.json,
    /// model.safetensors), run in process when `base_url` is empty. Empty: no local model.
    pub local_model: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiscordConfig {
    pub token: Secret,
    pub proxy_url: String,
    pub gateway_url: String,
    pub shards: DiscordShards,
}

/// Which gateway shards this process runs (`discord.shards`): `"auto"`, as many as Discord
/// recommends, all here; or `"FIRST-LAST/TOTAL"` (`"0-3/8"`), so several gateway processes
/// split the guilds. A single shard can be written `"2/8"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum DiscordShards {
    Auto,
    /// Shards `first` to `last` (inclusive) of `total`.
    Range {
        first: u32,
        last: u32,
        total: u32,
    },
}

impl FromStr for DiscordShards {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let value = value.trim();
        if value == "auto" {
            return Ok(Self::Auto);
        }
        let usage = || format!("`{value}` is not \"auto\" or a shard range like \"0-3/8\"");
        let (range, total) = value.split_once('/').ok_or_else(usage)?;
        let (first, last) = range.split_once('-').unwrap_or((range, range));
        let number = |text: &str| text.trim().parse::<u32>().map_err(|_| usage());
        let (first, last, total) = (number(first)?, number(last)?, number(total)?);
        if total == 0 || first > last || last >= total {
            return Err(format!(
                "`{value}`: shards are numbered 0 to TOTAL-1, and FIRST may not come after LAST"
            ));
        }
        Ok(Self::Range { first, last, total })
    }
}

impl TryFrom<String> for DiscordShards {
    type Error = String;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        value.parse()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SlackMode {
    Socket,
    Http,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlackConfig {
    pub bot_token: Secret,
    pub app_token: Secret,
    pub signing_secret: Secret,
    pub mode: SlackMode,
    pub api_url: String,
    /// User ids (`U…`) who may manage brains besides the workspace's admins and owners.
    pub admins: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// An address and port; a host name (`localhost:8080`) is looked up once, at load.
    #[serde(deserialize_with = "socket_address")]
    pub listen: SocketAddr,
}

/// `127.0.0.1:8080`, `[::1]:8080` or `localhost:8080` (its first address, IPv4 preferred).
fn socket_address<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<SocketAddr, D::Error> {
    use std::net::ToSocketAddrs as _;
    let text = String::deserialize(deserializer)?;
    if let Ok(address) = text.parse() {
        return Ok(address);
    }
    let usage = || {
        serde::de::Error::custom(format!(
            "`{text}` is not HOST:PORT (e.g. 127.0.0.1:8080 or localhost:8080)"
        ))
    };
    let addresses: Vec<SocketAddr> = text.to_socket_addrs().map_err(|_| usage())?.collect();
    addresses
        .iter()
        .find(|address| address.is_ipv4())
        .or_else(|| addresses.first())
        .copied()
        .ok_or_else(usage)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChatConfig {
    pub max_concurrent_answers: u32,
    pub max_waiting_answers: u32,
    pub edit_interval_ms: u64,
    pub user_questions_per_minute: u32,
    /// Answers slower than this are logged at `warn` with their phases.
    pub slow_answer_ms: u64,
}

impl ChatConfig {
    pub fn edit_interval(&self) -> Duration {
        Duration::from_millis(self.edit_interval_ms)
    }
}

/// Conversation knowledge (`[conversations]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConversationsConfig {
    /// People's messages in `knowledge`/`both` channels are learned (unless a channel is linked
    /// with messages off); `false`: only files, everywhere.
    pub enabled: bool,
    /// What `/brain history` reads without a number of days (0 = all).
    pub history_default_days: u32,
}

/// Spending caps (`[budgets]`); 0 = no cap.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BudgetsConfig {
    pub monthly_usd_per_tenant: f64,
    pub monthly_usd_per_brain: f64,
    pub daily_questions_per_user: u32,
    /// The share of a cap whose crossing is announced once per period.
    pub warn_at: f64,
    /// Completion tokens an LLM call is assumed to write when its cost is reserved before
    /// the call (settled at the real figure after it).
    pub reserve_completion_tokens: u32,
}

impl BudgetsConfig {
    /// No caps at all.
    pub const NONE: BudgetsConfig = BudgetsConfig {
        monthly_usd_per_tenant: 0.0,
        monthly_usd_per_brain: 0.0,
        daily_questions_per_user: 0,
        warn_at: 0.8,
        reserve_completion_tokens: 1000,
    };
}

/// `[metrics]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// `tenant` and `brain` labels on the answer and LLM series (cardinality grows with them).
    pub per_brain_labels: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestConfig {
    pub max_file_bytes: u64,
    pub workers: u32,
    pub extract_timeout_ms: u64,
    pub extract_memory_bytes: u64,
    pub extractor: String,
    pub max_pages: u32,
    pub chunk_tokens: u32,
    pub chunk_overlap_tokens: u32,
    /// Bytes of failed files kept for retries, in all.
    pub kept_failed_bytes: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobsConfig {
    pub max_attempts: u32,
    pub backoff_base_ms: u64,
    pub backoff_max_ms: u64,
    pub lease_ms: u64,
    pub shutdown_grace_ms: u64,
}

impl JobsConfig {
    pub fn lease(&self) -> Duration {
        Duration::from_millis(self.lease_ms)
    }

    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_millis(self.shutdown_grace_ms)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    pub format: LogFormat,
}

/// Where the layers come from; `Sources::from_process` reads the real process environment.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    /// The deployed `config/default.toml`, if one should be read (layer 2).
    pub deployed_defaults: Option<PathBuf>,
    /// `--config` or `ENGRAM_CONFIG` (layer 3).
    pub file: Option<PathBuf>,
    /// `ENGRAM__*` variables (layer 4), as (name, value).
    pub env: Vec<(String, String)>,
}

impl Sources {
    /// The layers of a real run: `config/default.toml` under the working directory, the given
    /// file (or `ENGRAM_CONFIG`), and every `ENGRAM__*` variable.
    pub fn from_process(file: Option<PathBuf>) -> Self {
        let deployed = PathBuf::from("config/default.toml");
        Self {
            deployed_defaults: deployed.is_file().then_some(deployed),
            file: file.or_else(|| std::env::var_os("ENGRAM_CONFIG").map(PathBuf::from)),
            env: std::env::vars()
                .filter(|(name, _)| name.starts_with(ENV_PREFIX))
                .collect(),
        }
    }
}

impl Config {
    /// Built-in defaults only.
    pub fn defaults() -> Self {
        Self::load(&Sources::default()).expect("the built-in defaults are valid")
    }

    /// Merges the layers in order and checks the result.
    pub fn load(sources: &Sources) -> Result<Self, ConfigError> {
        let mut merged = parse_toml(BUILT_IN_DEFAULTS, "built-in defaults")?;
        let files = sources.deployed_defaults.iter().chain(sources.file.iter());
        for path in files {
            let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
                path: path.clone(),
                reason: match error.kind() {
                    std::io::ErrorKind::NotFound => "no such file".to_string(),
                    std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
                    _ => error.to_string(),
                },
            })?;
            let layer = parse_toml(&text, &path.display().to_string())?;
            merge_layer(&mut merged, layer, "", &path.display().to_string())?;
        }
        for (name, value) in &sources.env {
            apply_env(&mut merged, name, value)?;
        }
        let config: Config =
            serde_path_to_error::deserialize(Value::Table(merged)).map_err(|error| {
                ConfigError::Invalid {
                    key: error.path().to_string(),
                    message: error.into_inner().message().to_string(),
                }
            })?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, message: &str| {
            Err(ConfigError::Invalid {
                key: key.to_string(),
                message: message.to_string(),
            })
        };
        if self.store.url.backend().is_none() {
            return invalid(
                "store.url",
                "must start with sqlite:// or postgres:// (e.g. sqlite://data/engram.db)",
            );
        }
        if self.store.max_connections == 0 {
            return invalid("store.max_connections", "must be at least 1");
        }
        for (key, url) in [
            ("llm.base_url", &self.llm.base_url),
            ("embeddings.base_url", &self.embeddings.base_url),
            ("discord.proxy_url", &self.discord.proxy_url),
            ("slack.api_url", &self.slack.api_url),
            ("index.qdrant_url", &self.index.qdrant_url),
        ] {
            if !url.is_empty() && !url.starts_with("http://") && !url.starts_with("https://") {
                return invalid(key, "must be empty or an http:// or https:// URL");
            }
        }
        let key = self.index.qdrant_api_key.expose();
        if !key.bytes().all(|byte| byte.is_ascii_graphic()) {
            return invalid(
                "index.qdrant_api_key",
                "must be printable ASCII without spaces (it is sent as a header)",
            );
        }
        if self.index.kind == IndexKind::Qdrant && self.index.collection.is_empty() {
            return invalid("index.collection", "must name the Qdrant collection");
        }
        let gateway = &self.discord.gateway_url;
        if !gateway.is_empty() && !gateway.starts_with("ws://") && !gateway.starts_with("wss://") {
            return invalid(
                "discord.gateway_url",
                "must be empty or a ws:// or wss:// URL",
            );
        }
        if self.llm.context_tokens < 500 {
            return invalid("llm.context_tokens", "must be at least 500");
        }
        if self
            .llm
            .prices
            .iter()
            .any(|price| price.prompt_usd_per_mtok < 0.0 || price.completion_usd_per_mtok < 0.0)
        {
            return invalid("llm.prices", "prices cannot be negative");
        }
        if self.embeddings.dimensions == 0 {
            return invalid("embeddings.dimensions", "must be at least 1");
        }
        for (key, usd) in [
            (
                "budgets.monthly_usd_per_tenant",
                self.budgets.monthly_usd_per_tenant,
            ),
            (
                "budgets.monthly_usd_per_brain",
                self.budgets.monthly_usd_per_brain,
            ),
        ] {
            if !(usd.is_finite() && usd >= 0.0) {
                return invalid(key, "must be 0 (no cap) or a positive amount of US dollars");
            }
        }
        if !(self.budgets.warn_at > 0.0 && self.budgets.warn_at <= 1.0) {
            return invalid(
                "budgets.warn_at",
                "must be a share of the cap, above 0 and at most 1",
            );
        }
        for (key, value) in [
            (
                "chat.max_concurrent_answers",
                self.chat.max_concurrent_answers,
            ),
            ("ingest.workers", self.ingest.workers),
            ("jobs.max_attempts", self.jobs.max_attempts),
        ] {
            if value == 0 {
                return invalid(key, "must be at least 1");
            }
        }
        if self.chat.edit_interval_ms < 100 {
            return invalid("chat.edit_interval_ms", "must be at least 100");
        }
        for (key, value) in [
            (
                "llm.first_token_timeout_ms",
                self.llm.first_token_timeout_ms,
            ),
            ("llm.total_timeout_ms", self.llm.total_timeout_ms),
            ("ingest.extract_timeout_ms", self.ingest.extract_timeout_ms),
            ("jobs.lease_ms", self.jobs.lease_ms),
            ("jobs.backoff_base_ms", self.jobs.backoff_base_ms),
        ] {
            if value == 0 {
                return invalid(key, "must be greater than 0");
            }
        }
        if self.jobs.lease_ms < 300 {
            return invalid(
                "jobs.lease_ms",
                "must be at least 300 (it is renewed every third)",
            );
        }
        if self.jobs.backoff_max_ms < self.jobs.backoff_base_ms {
            return invalid(
                "jobs.backoff_max_ms",
                "must not be below jobs.backoff_base_ms",
            );
        }
        if self.ingest.chunk_tokens < 32 {
            return invalid("ingest.chunk_tokens", "must be at least 32");
        }
        if self.ingest.chunk_overlap_tokens >= self.ingest.chunk_tokens / 2 {
            return invalid(
                "ingest.chunk_overlap_tokens",
                "must be less than half of ingest.chunk_tokens",
            );
        }
        if self.ingest.max_pages == 0 {
            return invalid("ingest.max_pages", "must be at least 1");
        }
        if self.ingest.max_file_bytes == 0 {
            return invalid("ingest.max_file_bytes", "must be greater than 0");
        }
        Ok(())
    }
}

fn parse_toml(text: &str, origin: &str) -> Result<Table, ConfigError> {
    text.parse::<Table>().map_err(|error| ConfigError::Syntax {
        path: origin.to_string(),
        at: error.span().map_or_else(
            || "somewhere".to_string(),
            |span| line_and_column(text, span.start),
        ),
        message: error.message().trim_end().to_string(),
    })
}

/// "line L, column C" (both from 1) of the byte `offset` in `text`.
fn line_and_column(text: &str, offset: usize) -> String {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before
        .rsplit('\n')
        .next()
        .map_or(0, |start| start.chars().count())
        + 1;
    format!("line {line}, column {column}")
}

/// Overlays `layer` on `base`, refusing any key the defaults do not have.
fn merge_layer(
    base: &mut Table,
    layer: Table,
    prefix: &str,
    origin: &str,
) -> Result<(), ConfigError> {
    for (key, value) in layer {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        match (base.get_mut(&key), value) {
            (None, _) => {
                return Err(ConfigError::UnknownKey {
                    key: path,
                    origin: origin.to_string(),
                })
            }
            (Some(Value::Table(base_table)), Value::Table(layer_table)) => {
                merge_layer(base_table, layer_table, &path, origin)?;
            }
            (Some(Value::Table(_)), _) => {
                return Err(ConfigError::Invalid {
                    key: path,
                    message: format!("is a section; write it as [{key}] in {origin}"),
                })
            }
            (Some(slot), value) => *slot = value,
        }
    }
    Ok(())
}

/// Sets one key from `ENGRAM__SECTION__KEY=value`, typed like the key's default.
fn apply_env(base: &mut Table, name: &str, raw: &str) -> Result<(), ConfigError> {
    let unknown = || ConfigError::UnknownKey {
        key: name.to_string(),
        origin: "the environment".to_string(),
    };
    let path = name
        .strip_prefix(ENV_PREFIX)
        .ok_or_else(unknown)?
        .to_ascii_lowercase();
    let parts: Vec<&str> = path.split("__").collect();
    let [section, key] = parts.as_slice() else {
        return Err(unknown());
    };
    let dotted = format!("{section}.{key}");
    let slot = base
        .get_mut(*section)
        .and_then(Value::as_table_mut)
        .and_then(|table| table.get_mut(*key))
        .ok_or_else(unknown)?;
    let invalid = |expected: &str| ConfigError::Invalid {
        key: dotted.clone(),
        message: format!("{name} must be {expected}"),
    };
    *slot = match slot {
        Value::String(_) => Value::String(raw.to_string()),
        Value::Integer(_) => {
            Value::Integer(raw.trim().parse().map_err(|_| invalid("a whole number"))?)
        }
        Value::Float(_) => Value::Float(raw.trim().parse().map_err(|_| invalid("a number"))?),
        Value::Boolean(_) => {
            Value::Boolean(raw.trim().parse().map_err(|_| invalid("true or false"))?)
        }
        Value::Array(_) => list_from_env(raw).ok_or_else(|| {
            invalid("a JSON array (`[\"a\", \"b\"]`, `[{\"model\": …}]`) or comma-separated values")
        })?,
        Value::Table(_) | Value::Datetime(_) => {
            return Err(invalid("set in a config file, not the environment"))
        }
    };
    Ok(())
}

/// A list key from the environment: a JSON array (any items, tables included), or
/// comma-separated strings (`U1,U2`; empty for an empty list).
fn list_from_env(raw: &str) -> Option<Value> {
    let raw = raw.trim();
    if raw.starts_with('[') {
        return match serde_json::from_str::<Value>(raw) {
            Ok(list @ Value::Array(_)) => Some(list),
            _ => None,
        };
    }
    Some(Value::Array(
        raw.split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .map(|item| Value::String(item.to_string()))
            .collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discord_shards_are_auto_or_a_range_within_the_total() {
        assert_eq!("auto".parse(), Ok(DiscordShards::Auto));
        assert_eq!(
            "0-3/8".parse(),
            Ok(DiscordShards::Range {
                first: 0,
                last: 3,
                total: 8
            })
        );
        assert_eq!(
            " 2/8 ".parse(),
            Ok(DiscordShards::Range {
                first: 2,
                last: 2,
                total: 8
            })
        );
        for bad in ["", "4", "3-1/8", "0-8/8", "0/0", "a-b/c", "1-2-3/8"] {
            assert!(bad.parse::<DiscordShards>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn store_url_hides_the_password() {
        let url = StoreUrl::new("postgres://engram:hunter2@db.internal:5432/engram");
        assert_eq!(
            url.redacted(),
            "postgres://engram:***@db.internal:5432/engram"
        );
        assert!(!format!("{url:?} {url}").contains("hunter2"));
        let plain = StoreUrl::new("sqlite://data/engram.db");
        assert_eq!(plain.redacted(), "sqlite://data/engram.db");
    }

    #[test]
    fn costs_come_from_the_price_table() {
        let config = Config::defaults();
        // 1,000 prompt tokens at $0.15/M + 500 completion tokens at $0.60/M = $0.00045.
        assert_eq!(config.llm.cost_micros("gpt-4o-mini", 1000, 500), 450);
        assert_eq!(config.llm.cost_micros("unlisted", 1000, 500), 0);
    }

    #[test]
    fn env_value_is_typed_like_the_default() {
        let mut base = parse_toml(BUILT_IN_DEFAULTS, "defaults").unwrap();
        apply_env(&mut base, "ENGRAM__CHAT__EDIT_INTERVAL_MS", "1500").unwrap();
        assert_eq!(base["chat"]["edit_interval_ms"].as_integer(), Some(1500));
        let error = apply_env(&mut base, "ENGRAM__CHAT__EDIT_INTERVAL_MS", "fast").unwrap_err();
        assert!(
            error.to_string().contains("chat.edit_interval_ms"),
            "{error}"
        );
    }
}
