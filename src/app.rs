//! `engram serve`: wires config → store → roles, each role on its own Tokio runtime, and
//! stops them gracefully on SIGTERM / Ctrl-C.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use async_trait::async_trait;
use tokio::runtime::Runtime;
use tokio::task::JoinHandle;

use crate::config::{Config, IndexKind, StoreBackend};
use crate::http::{self, ApiState};
use crate::index::embedded::EmbeddedIndex;
use crate::index::Index;
use crate::ingest::chunk::ChunkOptions;
use crate::ingest::sandbox::Sandbox;
use crate::ingest::Pipeline;
use crate::jobs::{Job, JobKind, RetryPolicy};
use crate::llm::Embedder;
use crate::store::{self, Store};
use crate::telemetry::Metrics;
use crate::worker::{self, JobFailure, JobHandler, Shutdown, WorkerOptions};

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
    let has = |role: Role| roles.contains(&role);
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
    let metrics = Arc::new(Metrics::default());
    let shutdown = Shutdown::default();
    let retry = RetryPolicy::from(&config.jobs);

    // Each worker role gets its own runtime, and (on PostgreSQL) its own connection pool
    // made on that runtime, so no role can starve another of threads or connections.
    let mut worker_runtimes: Vec<Runtime> = Vec::new();
    let mut worker_tasks: Vec<JoinHandle<()>> = Vec::new();
    let worker_roles = [
        (
            Role::Chat,
            JobKind::Answer,
            config.chat.max_concurrent_answers,
            cores.max(2),
        ),
        (Role::Ingest, JobKind::Ingest, config.ingest.workers, 2),
    ];
    for (role, kind, concurrency, threads) in worker_roles {
        if !has(role) {
            continue;
        }
        let runtime = runtime(&format!("engram-{role}"), threads)?;
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
            JobKind::Ingest => Arc::new(
                runtime
                    .block_on(ingest_pipeline(&config, role_store.clone()))
                    .context("cannot start the ingest role")?,
            ),
            JobKind::Answer => Arc::new(NotInThisBuild { kind }),
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

    let result = control.block_on(async {
        let api = if has(Role::Api) {
            let listener = tokio::net::TcpListener::bind(config.http.listen)
                .await
                .with_context(|| {
                    format!("cannot listen on {} (http.listen)", config.http.listen)
                })?;
            let addr = listener.local_addr()?;
            tracing::info!(%addr, "HTTP API listening");
            let state = ApiState {
                store: store.clone(),
                metrics: metrics.clone(),
            };
            Some(tokio::spawn(http::serve(
                listener,
                state,
                shutdown.stop_claiming.clone(),
            )))
        } else {
            None
        };
        if has(Role::Gateway) {
            log_gateway_state(&config);
        }
        tracing::info!("engram is running; stop with SIGTERM or Ctrl-C");

        wait_for_signal().await?;
        tracing::info!(
            grace_ms = config.jobs.shutdown_grace_ms,
            "shutting down: no new work; jobs in flight may finish"
        );
        shutdown.stop_claiming.cancel();
        let abandon = shutdown.abandon.clone();
        let grace = config.jobs.shutdown_grace();
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
        anyhow::Ok(())
    });
    for runtime in worker_runtimes {
        runtime.shutdown_timeout(Duration::from_secs(2));
    }
    control.shutdown_timeout(Duration::from_secs(2));
    if result.is_ok() {
        tracing::info!("engram stopped");
    }
    result
}

fn runtime(name: &str, threads: usize) -> anyhow::Result<Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .thread_name(name)
        .enable_all()
        .build()
        .with_context(|| format!("cannot start the {name} runtime"))
}

async fn wait_for_signal() -> anyhow::Result<()> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot listen for SIGTERM")?;
    tokio::select! {
        _ = terminate.recv() => tracing::info!("SIGTERM received"),
        result = tokio::signal::ctrl_c() => {
            result.context("cannot listen for Ctrl-C")?;
            tracing::info!("Ctrl-C received");
        }
    }
    Ok(())
}

fn log_gateway_state(config: &Config) {
    let discord = config.discord.token.is_set();
    let slack = config.slack.bot_token.is_set();
    if !discord && !slack {
        tracing::info!(
            "gateway: no chat platform configured (discord.token and slack.bot_token are empty)"
        );
    }
    if discord {
        tracing::warn!("gateway: discord.token is set, but this build has no Discord adapter yet");
    }
    if slack {
        tracing::warn!("gateway: slack.bot_token is set, but this build has no Slack adapter yet");
    }
}

/// Handles a job kind whose pipeline this build does not have yet: the job is dead-lettered
/// with a reason that says so, rather than left to sit in the queue unexplained.
#[derive(Debug)]
struct NotInThisBuild {
    kind: JobKind,
}

#[async_trait]
impl JobHandler for NotInThisBuild {
    async fn run(&self, _job: &Job) -> Result<(), JobFailure> {
        Err(JobFailure::permanent(format!(
            "this engram build cannot run `{}` jobs yet",
            self.kind
        )))
    }
}

/// The search index the config names.
pub async fn open_index(
    config: &Config,
    dimensions: Option<usize>,
) -> anyhow::Result<Arc<dyn Index>> {
    match (config.index.kind, config.store.url.backend()) {
        (IndexKind::Embedded, Some(StoreBackend::Sqlite)) => Ok(Arc::new(
            EmbeddedIndex::open(&config.store, dimensions)
                .await
                .context("cannot open the embedded index")?,
        )),
        (IndexKind::Embedded, _) => bail!(
            "index.kind = \"embedded\" keeps the index inside a SQLite store; a PostgreSQL store \
             needs index.kind = \"qdrant\", which this build does not have yet"
        ),
        (IndexKind::Qdrant, _) => {
            bail!("index.kind = \"qdrant\" is not supported by this build yet; use \"embedded\"")
        }
    }
}

/// The ingest pipeline the config describes.
pub async fn ingest_pipeline(config: &Config, store: Arc<dyn Store>) -> anyhow::Result<Pipeline> {
    let embedder = Embedder::from_config(&config.embeddings)?;
    let index = open_index(config, embedder.as_ref().map(Embedder::dimensions)).await?;
    Ok(Pipeline {
        store,
        index,
        embedder,
        sandbox: Sandbox::from_config(&config.ingest),
        chunking: ChunkOptions {
            max_tokens: config.ingest.chunk_tokens as usize,
            overlap_tokens: config.ingest.chunk_overlap_tokens as usize,
        },
    })
}

/// The store for one-shot commands (migrated, like `serve` does).
pub async fn open_store(config: &Config) -> anyhow::Result<Arc<dyn Store>> {
    store::open(&config.store)
        .await
        .with_context(|| format!("cannot open the store at {}", config.store.url))
}
