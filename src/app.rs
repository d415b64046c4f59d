//! `engram serve`: wires config → store → roles, each role on its own Tokio runtime, and
//! stops them gracefully on SIGTERM / Ctrl-C.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use tokio::runtime::Runtime;
use tokio::task::JoinHandle;

use crate::answer::{Answerer, RetrievalOptions};
use crate::chat::attachments::AttachmentReader;
use crate::chat::pool::{AnswerPool, UserRateLimit};
use crate::chat::service::{AnswerService, Outlets};
use crate::chat::streamer::StreamOptions;
use crate::config::{Config, IndexKind, SlackMode, StoreBackend};
use crate::gateway::Gateway;
use crate::housekeeping;
use crate::http::{self, ApiState};
use crate::index::embedded::EmbeddedIndex;
use crate::index::{Index, QdrantIndex, QdrantOptions};
use crate::ingest::chunk::ChunkOptions;
use crate::ingest::sandbox::Sandbox;
use crate::ingest::Pipeline;
use crate::jobs::{JobKind, RetryPolicy};
use crate::llm::{ChatModel, Embedder};
use crate::platform::connection::{Backoff, Connections};
use crate::platform::{discord, slack};
use crate::store::{self, Retention, Store};
use crate::telemetry::Metrics;
use crate::worker::{self, JobHandler, Shutdown, WorkerOptions};

/// Channels whose history one process reads at once.
const HISTORY_READS: usize = 4;

/// How long idle workers sleep at most without a wake-up.
const IDLE_RECHECK: Duration = Duration::from_secs(5);

/// What a process does; `engram serve` without `--roles` runs all four.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Chat adapters (Discord gateway, Slack): events in, placeholders and reactions out.
    Gateway,
    /// The answer pool.
    Chat,
    /// Extraction, OCR, chunking and indexing.
    Ingest,
    /// `/healthz`, `/readyz`, `/metrics` and Slack's HTTP endpoints.
    Api,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Gateway, Role::Chat, Role::Ingest, Role::Api];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Gateway => "gateway",
            Role::Chat => "chat",
            Role::Ingest => "ingest",
            Role::Api => "api",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|role| role.as_str() == value.trim())
            .ok_or_else(|| format!("unknown role `{value}` (roles: gateway, chat, ingest, api)"))
    }
}

/// Runs the given roles until SIGTERM or Ctrl-C, then shuts down gracefully.
pub fn serve(config: Config, roles: &[Role]) -> anyhow::Result<()> {
    // The handlers are installed before any role starts, so a SIGTERM that arrives while the
    // roles are starting (say, once the API answers) still stops engram gracefully.
    let signals = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the signal runtime")?;
    let stop_signals = signals.block_on(async { StopSignals::listen() })?;
    let running = start(&config, roles, Outlets::default())?;
    tracing::info!("engram is running; stop with SIGTERM or Ctrl-C");
    signals.block_on(stop_signals.recv());
    running.stop()
}

/// A running engram: the roles' tasks and the runtimes they run on.
pub struct Running {
    control: Runtime,
    worker_runtimes: Vec<Runtime>,
    worker_tasks: Vec<JoinHandle<()>>,
    api: Option<JoinHandle<std::io::Result<()>>>,
    api_addr: Option<SocketAddr>,
    /// Chat platform connections (the gateway role) and housekeeping: they end once
    /// `shutdown.stop_claiming` is cancelled.
    adapters: Vec<JoinHandle<()>>,
    store: Arc<dyn Store>,
    shutdown: Shutdown,
    grace: Duration,
}

impl fmt::Debug for Running {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Running")
            .field("api_addr", &self.api_addr)
            .finish_non_exhaustive()
    }
}

/// Starts the given roles. `outlets` are the chat platforms answers are delivered through
/// (the adapters' connections).
pub fn start(config: &Config, roles: &[Role], mut outlets: Outlets) -> anyhow::Result<Running> {
    let has = |role: Role| roles.contains(&role);
    let discord_outlet = if config.discord.token.is_set() {
        let (outlet, rest) = discord::outlet(&config.discord)?;
        outlets.insert(discord::PLATFORM, outlet.clone());
        Some((outlet, rest))
    } else {
        None
    };
    let slack_outlet = if config.slack.bot_token.is_set() {
        check_slack(config)?;
        let (outlet, api) = slack::outlet(&config.slack)?;
        outlets.insert(slack::PLATFORM, outlet.clone());
        Some((outlet, api))
    } else {
        None
    };
    let cores = std::thread::available_parallelism().map_or(2, usize::from);
    let control = runtime("engram-control", 2)?;
    let store = control
        .block_on(store::open(&config.store))
        .with_context(|| format!("cannot open the store at {}", config.store.url))?;
    tracing::info!(
        store = %config.store.url,
        roles = %roles.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(","),
        "engram starting"
    );
    let metrics = Arc::new(Metrics::new(config.metrics.per_brain_labels));
    let connections = Arc::new(Connections::default());
    let shutdown = Shutdown::default();
    let retry = RetryPolicy::from(&config.jobs);

    // Each worker role gets its own runtime, and (on PostgreSQL) its own connection pool
    // made on that runtime, so no role can starve another of threads or connections.
    let mut worker_runtimes: Vec<Runtime> = Vec::new();
    let mut worker_tasks: Vec<JoinHandle<()>> = Vec::new();
    let answers_held = config.chat.max_concurrent_answers + config.chat.max_waiting_answers;
    let worker_roles = [
        (Role::Chat, JobKind::Answer, answers_held, cores.max(2)),
        (Role::Ingest, JobKind::Ingest, config.ingest.workers, 2),
    ];
    for (role, kind, concurrency, threads) in worker_roles {
        if !has(role) {
            continue;
        }
        let runtime = match role {
            // Answers mostly wait on the LLM and the platform, while OCR needs whole cores: on
            // a full CPU the chat threads yield to the extractors (which the ingest role
            // starts at engram's own priority), so a flood of answers slows ingestion down less.
            Role::Chat => runtime_with(&format!("engram-{role}"), threads, || {
                lower_thread_priority(CHAT_NICENESS);
            })?,
            _ => runtime(&format!("engram-{role}"), threads)?,
        };
        let role_store = match config.store.url.backend() {
            Some(StoreBackend::Postgres) => runtime
                .block_on(store::connect(&config.store))
                .with_context(|| format!("cannot open the store for the {role} role"))?,
            _ => store.clone(),
        };
        let options = WorkerOptions {
            kind,
            concurrency: usize::try_from(concurrency).unwrap_or(1),
            lease: config.jobs.lease(),
            retry,
            name: worker::worker_name(role.as_str()),
            idle_recheck: IDLE_RECHECK,
        };
        let handler: Arc<dyn JobHandler> = match kind {
            JobKind::Ingest => {
                let pipeline = runtime
                    .block_on(ingest_pipeline(config, role_store.clone()))
                    .context("cannot start the ingest role")?;
                // A changed embedding model: the documents embedded with another are embedded
                // again in the background, and searched by keywords only until then.
                if let Some(embedder) = &pipeline.embedder {
                    let queued = runtime.block_on(crate::ingest::queue_reembedding(
                        role_store.as_ref(),
                        embedder,
                        None,
                        config.jobs.max_attempts,
                    ));
                    if let Err(error) = queued {
                        tracing::warn!(%error, "cannot queue re-embedding");
                    }
                }
                let pipeline = Arc::new(pipeline);
                // The ingest role learns conversations too (`[conversations] enabled`).
                if config.conversations.enabled {
                    worker_tasks.push(runtime.spawn(crate::ingest::conversations::run(
                        pipeline.clone(),
                        worker::worker_name("conversations"),
                        shutdown.clone(),
                    )));
                }
                pipeline
            }
            JobKind::History => unreachable!("history is read where the adapters run"),
            JobKind::Answer => Arc::new(
                runtime
                    .block_on(answer_service(
                        config,
                        role_store.clone(),
                        outlets.clone(),
                        metrics.clone(),
                    ))
                    .context("cannot start the chat role")?,
            ),
        };
        worker_tasks.push(runtime.spawn(worker::run(
            role_store,
            handler,
            options,
            shutdown.clone(),
            metrics.clone(),
        )));
        worker_runtimes.push(runtime);
    }

    // Slack's adapter: its events arrive over Socket Mode (the gateway role) or as HTTP
    // requests (the api role).
    let slack_transport = slack_outlet.filter(|_| match config.slack.mode {
        SlackMode::Socket => has(Role::Gateway),
        SlackMode::Http => has(Role::Api),
    });
    let discord_outlet = discord_outlet.filter(|_| has(Role::Gateway));
    // The chat adapters share one index. They only forget documents, but it is opened with the
    // embedding width: a Qdrant collection created here must have the dense vector the ingest
    // role will write.
    let adapter_index = if slack_transport.is_some() || discord_outlet.is_some() {
        let dimensions = crate::llm::embedding_dimensions(&config.embeddings)?;
        Some(
            control
                .block_on(open_index(config, store.clone(), dimensions))
                .context("cannot start the chat adapters")?,
        )
    } else {
        None
    };
    // A platform's gateway core; it first picks up the reports of files posted on that
    // platform before this process started (a restart mid-ingest loses no ✅ / ❌).
    let gateway_for = |index: &Arc<dyn Index>, outlet, platform: &'static str| {
        let gateway = Gateway {
            store: store.clone(),
            index: index.clone(),
            outlet,
            ingest: config.ingest.clone(),
            max_attempts: config.jobs.max_attempts,
            metrics: metrics.clone(),
            budgets: config.budgets,
            learn_messages: config.conversations.enabled,
        };
        let resuming = gateway.clone();
        control.spawn(async move { resuming.resume_reports(platform).await });
        gateway
    };
    let slack_api = slack_transport.as_ref().map(|(_, api)| api.clone());
    // The gateway cores that run `history` jobs: a channel's past is read where its
    // platform's adapter runs.
    let mut history_gateways: Vec<(String, Gateway)> = Vec::new();
    let slack_adapter = match (slack_transport, &adapter_index) {
        (Some((outlet, api)), Some(index)) => {
            let gateway = gateway_for(index, outlet, slack::PLATFORM);
            history_gateways.push((slack::PLATFORM.into(), gateway.clone()));
            Some(slack::adapter(&config.slack, gateway, api))
        }
        _ => None,
    };
    // Every configured platform counts as not connected from the start, so `/readyz` is never
    // ready before its adapters have connected.
    if has(Role::Gateway) && discord_outlet.is_some() && adapter_index.is_some() {
        connections.expect(discord::PLATFORM);
    }
    if slack_api.is_some() && slack_adapter.is_some() {
        connections.expect(slack::PLATFORM);
    }
    let (api, api_addr) = if has(Role::Api) {
        let listener = control
            .block_on(tokio::net::TcpListener::bind(config.http.listen))
            .with_context(|| format!("cannot listen on {} (http.listen)", config.http.listen))?;
        let addr = listener.local_addr()?;
        tracing::info!(%addr, "HTTP API listening");
        let state = ApiState {
            store: store.clone(),
            metrics: metrics.clone(),
            index: readiness_index(config, store.clone())?,
            connections: connections.clone(),
        };
        let mut router = http::router(state);
        if let (Some(adapter), SlackMode::Http) = (&slack_adapter, config.slack.mode) {
            router = router.merge(slack::http::routes(
                adapter.clone(),
                &config.slack.signing_secret,
            ));
            tracing::info!(
                "Slack: HTTP mode; events at /slack/events, commands at /slack/commands"
            );
        }
        let api = control.spawn(http::serve_router(
            listener,
            router,
            shutdown.stop_claiming.clone(),
        ));
        (Some(api), Some(addr))
    } else {
        (None, None)
    };
    // Every process prunes what the store no longer needs; it stops with the adapters.
    let mut adapters = vec![control.spawn(housekeeping::run(
        store.clone(),
        Retention::default(),
        shutdown.stop_claiming.clone(),
    ))];
    if has(Role::Gateway) {
        log_gateway_state(config);
        if let (Some((outlet, rest)), Some(index)) = (discord_outlet, &adapter_index) {
            let gateway = gateway_for(index, outlet, discord::PLATFORM);
            history_gateways.push((discord::PLATFORM.into(), gateway.clone()));
            let discord_config = config.discord.clone();
            let connections = connections.clone();
            adapters.push(control.spawn(reconnecting(
                "Discord",
                discord::PLATFORM,
                connections.clone(),
                shutdown.stop_claiming.clone(),
                move || {
                    discord::run(
                        discord_config.clone(),
                        gateway.clone(),
                        rest.clone(),
                        connections.clone(),
                    )
                },
            )));
        }
    }
    if let Some(api) = slack_api.filter(|_| slack_adapter.is_some()) {
        adapters.push(control.spawn(slack::probe(
            api,
            connections.clone(),
            shutdown.stop_claiming.clone(),
        )));
    }
    if let (Some(adapter), SlackMode::Socket) = (slack_adapter, config.slack.mode) {
        let slack_config = config.slack.clone();
        let stop = shutdown.stop_claiming.clone();
        adapters.push(control.spawn(reconnecting(
            "Slack Socket Mode",
            slack::PLATFORM,
            connections.clone(),
            stop.clone(),
            move || {
                let (config, adapter, stop) = (slack_config.clone(), adapter.clone(), stop.clone());
                async move { slack::socket::run(&config, adapter, stop).await }
            },
        )));
    }
    if !history_gateways.is_empty() {
        // Reading history waits on the platform and the store, not the CPU: a few reads at
        // once on the control runtime, under the same leases and retries as every job.
        let options = WorkerOptions {
            kind: JobKind::History,
            concurrency: HISTORY_READS,
            lease: config.jobs.lease(),
            retry,
            name: worker::worker_name("history"),
            idle_recheck: IDLE_RECHECK,
        };
        worker_tasks.push(control.spawn(worker::run(
            store.clone(),
            crate::gateway::HistoryReader::new(history_gateways),
            options,
            shutdown.clone(),
            metrics.clone(),
        )));
    }
    Ok(Running {
        control,
        worker_runtimes,
        worker_tasks,
        api,
        api_addr,
        adapters,
        store,
        shutdown,
        grace: config.jobs.shutdown_grace(),
    })
}

/// Runs a platform connection (`connect`) for as long as the process runs: when it ends or
/// fails, the platform is marked down with the reason (so `/readyz` says it) and connected
/// again after a capped, jittered backoff, reset once a connection has held for a while.
async fn reconnecting<F, Fut>(
    name: &'static str,
    platform: &'static str,
    connections: Arc<Connections>,
    stop: tokio_util::sync::CancellationToken,
    connect: F,
) where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    /// A connection that lasted this long was healthy: the next loss starts the backoff over.
    const HELD: Duration = Duration::from_secs(300);
    let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
    loop {
        let started = tokio::time::Instant::now();
        let ended = tokio::select! {
            ended = connect() => ended,
            () = stop.cancelled() => return,
        };
        if stop.is_cancelled() {
            return;
        }
        let reason = match ended {
            Ok(()) => "the connection ended".to_string(),
            Err(error) => format!("{error:#}"),
        };
        connections.down(platform, reason.clone());
        if started.elapsed() >= HELD {
            backoff.reset();
        }
        let wait = backoff.next_wait();
        tracing::warn!(
            "{name}: {reason}; connecting again in {:.1} s",
            wait.as_secs_f64()
        );
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = stop.cancelled() => return,
        }
    }
}

impl Running {
    /// Where the HTTP API listens, when this process runs the `api` role.
    pub fn api_addr(&self) -> Option<SocketAddr> {
        self.api_addr
    }

    pub fn store(&self) -> Arc<dyn Store> {
        self.store.clone()
    }

    /// The control runtime (adapters, HTTP): for work that must not run on a role's runtime.
    pub fn control(&self) -> &tokio::runtime::Handle {
        self.control.handle()
    }

    /// Stops gracefully: no new work; jobs in flight may finish within `jobs.shutdown_grace_ms`,
    /// then they are released for another process.
    pub fn stop(self) -> anyhow::Result<()> {
        let Running {
            control,
            worker_runtimes,
            worker_tasks,
            api,
            adapters,
            store,
            shutdown,
            grace,
            ..
        } = self;
        control.block_on(async {
            tracing::info!(
                grace_ms = grace.as_millis() as u64,
                "shutting down: no new work; jobs in flight may finish"
            );
            shutdown.stop_claiming.cancel();
            for adapter in adapters {
                let _ = adapter.await;
            }
            let abandon = shutdown.abandon.clone();
            tokio::spawn(async move {
                tokio::time::sleep(grace).await;
                abandon.cancel();
            });
            for task in worker_tasks {
                if let Err(error) = task.await {
                    tracing::error!(%error, "a worker pool ended abnormally");
                }
            }
            if let Some(api) = api {
                match tokio::time::timeout(Duration::from_secs(5), api).await {
                    Ok(Ok(Ok(()))) => {}
                    Ok(Ok(Err(error))) => tracing::error!(%error, "the HTTP API failed"),
                    Ok(Err(error)) => tracing::error!(%error, "the HTTP API task ended abnormally"),
                    Err(_) => tracing::warn!("HTTP requests still open after 5 s; closing them"),
                }
            }
            store.close().await;
        });
        for runtime in worker_runtimes {
            runtime.shutdown_timeout(Duration::from_secs(2));
        }
        control.shutdown_timeout(Duration::from_secs(2));
        tracing::info!("engram stopped");
        Ok(())
    }
}

fn runtime(name: &str, threads: usize) -> anyhow::Result<Runtime> {
    runtime_with(name, threads, || {})
}

/// A runtime whose threads each run `on_start` first.
fn runtime_with(
    name: &str,
    threads: usize,
    on_start: impl Fn() + Send + Sync + 'static,
) -> anyhow::Result<Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .thread_name(name)
        .on_thread_start(on_start)
        .enable_all()
        .build()
        .with_context(|| format!("cannot start the {name} runtime"))
}

/// How much lower than the rest of engram the chat role's threads run, in nice steps. It only
/// matters when the CPU is full: a chat thread at +5 then gets a third of the share of a
/// thread at +0 on the same core; with a core to spare nothing changes.
const CHAT_NICENESS: i32 = 5;

/// Lowers the calling thread's scheduling priority by `steps` nice values. On Linux the nice
/// value belongs to the thread, so the rest of the process keeps its priority. Best effort.
fn lower_thread_priority(steps: i32) {
    use rustix::process::{getpriority_process, setpriority_process};
    let lowered = getpriority_process(None)
        .and_then(|nice| setpriority_process(None, (nice + steps).min(19)));
    if let Err(error) = lowered {
        tracing::debug!(%error, "cannot lower a chat thread's priority");
    }
}

/// SIGTERM and SIGINT (Ctrl-C), listened for from the moment of [`StopSignals::listen`].
struct StopSignals {
    terminate: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
}

impl StopSignals {
    /// Installs the handlers; must run inside a runtime.
    fn listen() -> anyhow::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Self {
            terminate: signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?,
            interrupt: signal(SignalKind::interrupt()).context("cannot listen for Ctrl-C")?,
        })
    }

    /// Waits for the first stop signal, including one received before this call.
    async fn recv(mut self) {
        tokio::select! {
            _ = self.terminate.recv() => tracing::info!("SIGTERM received"),
            _ = self.interrupt.recv() => tracing::info!("Ctrl-C received"),
        }
    }
}

fn log_gateway_state(config: &Config) {
    let discord = config.discord.token.is_set();
    let slack = config.slack.bot_token.is_set();
    if !discord && !slack {
        tracing::info!(
            "gateway: no chat platform configured (discord.token and slack.bot_token are empty)"
        );
    }
    if slack && config.slack.mode == SlackMode::Http {
        tracing::info!("gateway: Slack runs in HTTP mode; its events arrive at the api role");
    }
}

/// The keys Slack's mode needs are set.
fn check_slack(config: &Config) -> anyhow::Result<()> {
    match config.slack.mode {
        SlackMode::Socket if !config.slack.app_token.is_set() => bail!(
            "slack.mode = \"socket\" needs slack.app_token (an xapp-… token with \
             connections:write), or set slack.mode = \"http\" and slack.signing_secret"
        ),
        SlackMode::Http if !config.slack.signing_secret.is_set() => bail!(
            "slack.mode = \"http\" needs slack.signing_secret (Basic Information → App \
             Credentials in the app's settings)"
        ),
        _ => Ok(()),
    }
}

/// The search index the config names. The embedded index lives inside a SQLite store; the
/// Qdrant index keeps chunks in Qdrant and documents in `store` (SQLite or PostgreSQL).
pub async fn open_index(
    config: &Config,
    store: Arc<dyn Store>,
    dimensions: Option<usize>,
) -> anyhow::Result<Arc<dyn Index>> {
    match (config.index.kind, config.store.url.backend()) {
        (IndexKind::Embedded, Some(StoreBackend::Sqlite)) => {
            Ok(shared_embedded_index(config, dimensions).await?)
        }
        (IndexKind::Embedded, _) => bail!(
            "index.kind = \"embedded\" keeps the index inside a SQLite store; a PostgreSQL store \
             needs index.kind = \"qdrant\" (with index.qdrant_url and index.collection)"
        ),
        (IndexKind::Qdrant, _) => {
            let options = QdrantOptions::from_config(&config.index, dimensions);
            let index = QdrantIndex::open(options, store).await.with_context(|| {
                format!(
                    "cannot open the Qdrant index (collection `{}` at {})",
                    config.index.collection, config.index.qdrant_url
                )
            })?;
            Ok(Arc::new(index))
        }
    }
}

/// The embedded indexes open in this process, by store URL and vector width. The roles of one
/// process share one: its in-memory keyword and vector caches are patched by its own writes as
/// they commit, so what the ingest role indexes (a file, a conversation changed seconds ago) is
/// searched by the chat role at once, rather than after the caches' reload interval meant for
/// other processes' writes.
static EMBEDDED_INDEXES: std::sync::Mutex<Vec<OpenIndex>> = std::sync::Mutex::new(Vec::new());

/// An embedded index open in this process: (store URL, vector width) and the index while any
/// role holds it.
type OpenIndex = ((String, Option<usize>), std::sync::Weak<EmbeddedIndex>);

async fn shared_embedded_index(
    config: &Config,
    dimensions: Option<usize>,
) -> anyhow::Result<Arc<EmbeddedIndex>> {
    let key = (config.store.url.expose().to_string(), dimensions);
    let open = |indexes: &mut Vec<OpenIndex>| {
        indexes.retain(|(_, index)| index.strong_count() > 0);
        indexes
            .iter()
            .find(|(k, _)| *k == key)
            .and_then(|(_, index)| index.upgrade())
    };
    if let Some(index) = open(&mut EMBEDDED_INDEXES.lock().unwrap_or_else(|p| p.into_inner())) {
        return Ok(index);
    }
    let index = Arc::new(
        EmbeddedIndex::open(&config.store, dimensions)
            .await
            .context("cannot open the embedded index")?,
    );
    let mut indexes = EMBEDDED_INDEXES.lock().unwrap_or_else(|p| p.into_inner());
    // Another role may have opened it meanwhile: use theirs, so there is one.
    if let Some(theirs) = open(&mut indexes) {
        return Ok(theirs);
    }
    indexes.push((key, Arc::downgrade(&index)));
    Ok(index)
}

/// The index `/readyz` checks besides the store: Qdrant's client (no request at start, so an
/// unreachable Qdrant makes the API answer 503 rather than fail to start); none for the
/// embedded index, which lives in the store.
fn readiness_index(
    config: &Config,
    store: Arc<dyn Store>,
) -> anyhow::Result<Option<Arc<dyn Index>>> {
    match config.index.kind {
        IndexKind::Embedded => Ok(None),
        IndexKind::Qdrant => {
            let options = QdrantOptions::from_config(&config.index, None);
            let index = QdrantIndex::connect(options, store)
                .with_context(|| format!("bad index.qdrant_url {}", config.index.qdrant_url))?;
            Ok(Some(Arc::new(index)))
        }
    }
}

/// The ingest pipeline the config describes.
pub async fn ingest_pipeline(config: &Config, store: Arc<dyn Store>) -> anyhow::Result<Pipeline> {
    let embedder = Embedder::from_config(&config.embeddings)?;
    let dimensions = embedder.as_ref().map(Embedder::dimensions);
    let index = open_index(config, store.clone(), dimensions).await?;
    Ok(Pipeline {
        store,
        index,
        embedder,
        sandbox: Sandbox::from_config(&config.ingest),
        kept_failed_bytes: config.ingest.kept_failed_bytes,
        chunking: ChunkOptions {
            max_tokens: config.ingest.chunk_tokens as usize,
            overlap_tokens: config.ingest.chunk_overlap_tokens as usize,
        },
    })
}

/// What answers questions: the store, the index, the configured models and budgets; answers
/// are counted in `metrics`.
pub async fn answerer(
    config: &Config,
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
) -> anyhow::Result<Answerer> {
    let embedder = Embedder::from_config(&config.embeddings)?;
    let dimensions = embedder.as_ref().map(Embedder::dimensions);
    let index = open_index(config, store.clone(), dimensions).await?;
    Ok(Answerer {
        store,
        index,
        embedder,
        chat: ChatModel::from_config(&config.llm)?,
        llm: config.llm.clone(),
        retrieval: RetrievalOptions::default(),
        budgets: config.budgets,
        metrics,
        slow_answer: Duration::from_millis(config.chat.slow_answer_ms),
    })
}

/// The chat role's handler: answers delivered through `outlets`.
pub async fn answer_service(
    config: &Config,
    store: Arc<dyn Store>,
    outlets: Outlets,
    metrics: Arc<Metrics>,
) -> anyhow::Result<AnswerService> {
    if outlets.is_empty() {
        tracing::info!(
            "chat: no chat platform is connected in this process; answer jobs will be \
             dead-lettered with a reason until one is configured"
        );
    }
    let per_minute = config.chat.user_questions_per_minute;
    Ok(AnswerService {
        answerer: answerer(config, store, metrics).await?,
        outlets,
        pool: AnswerPool::new(config.chat.max_concurrent_answers as usize),
        rate_limit: (per_minute > 0)
            .then(|| UserRateLimit::new(per_minute, Duration::from_secs(60))),
        stream: StreamOptions::new(config.chat.edit_interval()),
        attachments: AttachmentReader::from_config(&config.ingest),
    })
}

/// The store for one-shot commands (migrated, like `serve` does).
pub async fn open_store(config: &Config) -> anyhow::Result<Arc<dyn Store>> {
    store::open(&config.store)
        .await
        .with_context(|| format!("cannot open the store at {}", store_location(config)))
}

/// Opens the store only if it is already there: commands that read (or change what is
/// already there) never leave an empty store behind in the wrong folder, and say where they
/// looked. A PostgreSQL server is always "there".
pub async fn open_existing_store(config: &Config) -> anyhow::Result<Arc<dyn Store>> {
    if let Some(path) = sqlite_file(config) {
        if !path.exists() {
            bail!(
                "no store at {} (store.url = \"{}\"{}): run engram where the store is, point \
                 store.url at it (--config, ENGRAM__STORE__URL), or start one with `engram \
                 brain create NAME`",
                path.display(),
                config.store.url,
                if config
                    .store
                    .url
                    .sqlite_path()
                    .is_some_and(Path::is_relative)
                {
                    ", relative to the current folder"
                } else {
                    ""
                }
            );
        }
    }
    open_store(config).await
}

/// The SQLite file the store URL names, made absolute against the current folder; `None` for
/// PostgreSQL and in-memory databases.
pub fn sqlite_file(config: &Config) -> Option<PathBuf> {
    let path = config.store.url.sqlite_path()?;
    if path.as_os_str().is_empty() || path.to_string_lossy().starts_with(":memory:") {
        return None;
    }
    Some(std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf()))
}

/// Where the store is, for messages: the absolute SQLite file, or the URL without its
/// password.
pub fn store_location(config: &Config) -> String {
    match sqlite_file(config) {
        Some(path) => path.display().to_string(),
        None => config.store.url.to_string(),
    }
}
