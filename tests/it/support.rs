//! Test harness: a fresh store per test (a temp SQLite file, or a new database on the
//! PostgreSQL server named by `ENGRAM_TEST_POSTGRES_URL`), config builders, and a tiny HTTP
//! client for talking to a spawned `engram`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use engram::config::{StoreConfig, StoreUrl};
use engram::store::{self, Store};

/// This package's folder, read when the program runs (cargo sets it for tests and benches)
/// rather than baked in at compile time, so a build shared between checkouts never reads
/// another checkout's files.
#[allow(
    clippy::disallowed_methods,
    reason = "tests are configured by the environment (scripts/test.sh)"
)]
pub fn crate_dir() -> PathBuf {
    PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR")
            .expect("run under cargo: CARGO_MANIFEST_DIR is not set"),
    )
}

/// A store that exists for one test.
pub struct TestDb {
    pub store: Arc<dyn Store>,
    /// The store's URL, for other processes (and raw SQL) to reach the same database.
    pub url: String,
    /// Keeps the SQLite file's folder alive.
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    pub async fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}/engram.db", dir.path().display());
        let config = store_config(&url);
        let store = store::open(&config).await.expect("open SQLite store");
        Self {
            store,
            url,
            _dir: Some(dir),
        }
    }

    /// A new, empty database on the test server. Fails (never skips) when the server is not
    /// configured: `scripts/test.sh` starts one and sets the variable.
    pub async fn postgres() -> Self {
        Self::postgres_on(&postgres_admin_url()).await
    }

    /// A new, empty database on the PostgreSQL server at `admin_url`.
    pub async fn postgres_on(admin_url: &str) -> Self {
        let admin_url = admin_url.to_string();
        let name = unique_database_name();
        let mut connection = sqlx_connect(&admin_url).await;
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut connection)
            .await
            .expect("create test database");
        let url = with_database(&admin_url, &name);
        let config = store_config(&url);
        let store = store::open(&config).await.expect("open PostgreSQL store");
        Self {
            store,
            url,
            _dir: None,
        }
    }

    pub fn store(&self) -> Arc<dyn Store> {
        self.store.clone()
    }
}

async fn sqlx_connect(url: &str) -> sqlx::PgConnection {
    use sqlx::Connection;
    sqlx::PgConnection::connect(url)
        .await
        .unwrap_or_else(|error| panic!("cannot reach the test PostgreSQL: {error}"))
}

#[allow(
    clippy::disallowed_methods,
    reason = "tests are configured by the environment (scripts/test.sh)"
)]
pub fn postgres_admin_url() -> String {
    std::env::var("ENGRAM_TEST_POSTGRES_URL").unwrap_or_else(|_| {
        panic!(
            "ENGRAM_TEST_POSTGRES_URL is not set. The store contract runs on PostgreSQL too: \
             run scripts/test.sh (it starts a private PostgreSQL on 127.0.0.1), or point the \
             variable at a server where this user may CREATE DATABASE."
        )
    })
}

fn unique_database_name() -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "engram_test_{}_{}_{nanos}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// `postgres://u@h:p/olddb?x` → `postgres://u@h:p/NAME?x`.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let host_end = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| scheme_end + i);
    let mut out = format!("{}/{name}", &base[..host_end]);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}

pub fn store_config(url: &str) -> StoreConfig {
    StoreConfig {
        url: StoreUrl::new(url),
        max_connections: 8,
        busy_timeout_ms: 5000,
    }
}

/// Polls `condition` until it holds or `limit` passes; returns whether it held.
pub async fn eventually<F, Fut>(limit: Duration, mut condition: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    loop {
        if condition().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A plain HTTP/1.1 GET; returns status and body.
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).expect("connect to engram");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("send request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read response");
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {response:?}"));
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default();
    (status, body)
}

/// Runs the real `engram` in `dir` with `dir/engram.toml` (a SQLite store in `dir` unless the
/// test wrote another config first).
pub fn engram(dir: &Path, args: &[&str]) -> Output {
    let config = dir.join("engram.toml");
    if !config.exists() {
        std::fs::write(
            &config,
            format!("[store]\nurl = \"sqlite://{}/engram.db\"\n", dir.display()),
        )
        .unwrap();
    }
    Command::new(env!("CARGO_BIN_EXE_engram"))
        .arg("--config")
        .arg(&config)
        .args(args)
        .current_dir(dir)
        .env_remove("RUST_LOG")
        .output()
        .expect("run engram")
}

/// Each recorded answer's 👍 and 👎 counts in the store at `config`, oldest answer first.
pub async fn votes(config: &StoreConfig) -> Vec<(u64, u64)> {
    let store = store::connect(config).await.unwrap();
    let entries = store
        .usage_entries(&engram::store::UsageFilter::default())
        .await
        .unwrap();
    store.close().await;
    entries.iter().map(|entry| (entry.up, entry.down)).collect()
}

/// What the brain `handbook` of `tenant` learned from conversations, in the store at `config`.
pub async fn handbook_conversations(
    config: &StoreConfig,
    tenant: &str,
) -> engram::store::conversations::ConversationStats {
    let store = store::connect(config).await.unwrap();
    let tenant = engram::brain::TenantKey::parse(tenant).unwrap();
    let tenant = store.find_tenant(&tenant).await.unwrap().unwrap();
    let name = engram::brain::BrainName::parse("handbook").unwrap();
    let brain = store.brain_by_name(tenant, &name).await.unwrap().unwrap();
    let stats = store.conversation_stats(brain.id).await.unwrap();
    store.close().await;
    stats
}
