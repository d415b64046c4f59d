//! `engram serve` as a process: health, readiness and metrics over HTTP (not ready while a
//! configured platform cannot be reached, which it keeps trying), a clean stop on SIGTERM, and
//! no secret in its logs. Also readiness when the store is gone.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use engram::http::{self, ApiState};
use engram::telemetry::Metrics;
use tokio_util::sync::CancellationToken;

use crate::support::{http_get, TestDb};

const SECRETS: [&str; 2] = ["discord-token-never-logged", "sk-never-logged"];

struct Serve {
    child: Child,
    addr: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
}

fn spawn_serve(dir: &Path) -> Serve {
    let config = dir.join("engram.toml");
    std::fs::write(
        &config,
        format!(
            "[store]\nurl = \"sqlite://{}/engram.db\"\n[http]\nlisten = \"127.0.0.1:0\"\n\
             [jobs]\nshutdown_grace_ms = 2000\n",
            dir.display()
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_engram"))
        .args([
            "--config",
            config.to_str().unwrap(),
            "--log-format",
            "json",
            "serve",
        ])
        .current_dir(dir)
        .env("ENGRAM__DISCORD__TOKEN", SECRETS[0])
        .env("ENGRAM__LLM__API_KEY", SECRETS[1])
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start engram serve");
    let stderr = child.stderr.take().unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    let (addr_tx, addr_rx) = mpsc::channel();
    let lines = log.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Ok(event) = serde_json::from_str::<serde_json::Value>(&line) {
                if event["fields"]["message"] == "HTTP API listening" {
                    let addr = event["fields"]["addr"].as_str().unwrap().parse().unwrap();
                    let _ = addr_tx.send(addr);
                }
            }
            lines.lock().unwrap().push(line);
        }
    });
    let addr = addr_rx
        .recv_timeout(Duration::from_secs(60))
        .unwrap_or_else(|_| panic!("serve never listened; log: {:?}", log.lock().unwrap()));
    Serve { child, addr, log }
}

fn wait_for_exit(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = std::time::Instant::now() + limit;
    while std::time::Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

#[test]
fn serve_reports_health_and_metrics_then_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mut serve = spawn_serve(dir.path());

    let (status, body) = http_get(serve.addr, "/healthz");
    assert_eq!((status, body.trim()), (200, "ok"));
    // Discord is configured but cannot be reached from here: not ready, and saying why.
    let (status, body) = http_get(serve.addr, "/readyz");
    assert_eq!(status, 503, "{body}");
    let reason: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(reason["status"], "unavailable");
    assert!(
        reason["reason"].as_str().unwrap().starts_with("discord: "),
        "{body}"
    );
    let (status, body) = http_get(serve.addr, "/metrics");
    assert_eq!(status, 200);
    assert!(
        body.contains("engram_queue_depth{kind=\"ingest\",state=\"queued\"} 0"),
        "{body}"
    );
    assert!(body.contains("engram_store_up 1"), "{body}");
    assert!(
        body.contains("engram_adapter_connected{platform=\"discord\"} 0"),
        "{body}"
    );
    // It keeps trying, with backoff, rather than giving up after the first failure.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while serve
        .log
        .lock()
        .unwrap()
        .iter()
        .filter(|line| line.contains("connecting again in"))
        .count()
        < 2
    {
        assert!(
            std::time::Instant::now() < deadline,
            "no second attempt to reach Discord; log:\n{}",
            serve.log.lock().unwrap().join("\n")
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    let killed = Command::new("kill")
        .args(["-TERM", &serve.child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = wait_for_exit(&mut serve.child, Duration::from_secs(30));
    let log = serve.log.lock().unwrap().join("\n");
    let Some(status) = status else {
        let _ = serve.child.kill();
        panic!("serve did not stop within 30 s of SIGTERM; log:\n{log}");
    };
    assert!(status.success(), "exit status {status}; log:\n{log}");
    assert!(log.contains("SIGTERM received"), "{log}");
    assert!(log.contains("engram stopped"), "{log}");
    for secret in SECRETS {
        assert!(!log.contains(secret), "a secret reached the log:\n{log}");
    }
}

#[tokio::test]
async fn readyz_is_503_with_a_reason_when_the_store_is_gone() {
    let db = TestDb::sqlite().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    let state = ApiState {
        store: db.store(),
        metrics: Arc::new(Metrics::default()),
        index: None,
        connections: Arc::default(),
    };
    let server = tokio::spawn(http::serve(listener, state, stop.clone()));

    let (status, _) = tokio::task::spawn_blocking(move || http_get(addr, "/readyz"))
        .await
        .unwrap();
    assert_eq!(status, 200);
    db.store.close().await;
    let (status, body) = tokio::task::spawn_blocking(move || http_get(addr, "/readyz"))
        .await
        .unwrap();
    assert_eq!(status, 503, "{body}");
    let reason: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(reason["status"], "unavailable");
    assert!(
        reason["reason"].as_str().unwrap().starts_with("store:"),
        "{body}"
    );
    let (status, body) = tokio::task::spawn_blocking(move || http_get(addr, "/metrics"))
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert!(body.contains("engram_store_up 0"), "{body}");

    stop.cancel();
    server.await.unwrap().unwrap();
}

/// With a Qdrant index configured, `/readyz` also asks Qdrant, and says so when it cannot be
/// reached (here: a closed local port).
#[tokio::test]
async fn readyz_is_503_with_a_reason_when_qdrant_is_unreachable() {
    let db = TestDb::sqlite().await;
    let closed = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap()
    };
    let index = engram::index::QdrantIndex::connect(
        engram::index::QdrantOptions {
            url: format!("http://{closed}"),
            api_key: engram::config::Secret::default(),
            collection: "engram_chunks".to_string(),
            dimensions: None,
        },
        db.store(),
    )
    .expect("a lazy client");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    let state = ApiState {
        store: db.store(),
        metrics: Arc::new(Metrics::default()),
        index: Some(Arc::new(index)),
        connections: Arc::default(),
    };
    let server = tokio::spawn(http::serve(listener, state, stop.clone()));
    let (status, body) = tokio::task::spawn_blocking(move || http_get(addr, "/readyz"))
        .await
        .unwrap();
    assert_eq!(status, 503, "{body}");
    let reason: serde_json::Value = serde_json::from_str(&body).unwrap();
    let reason = reason["reason"].as_str().unwrap();
    assert!(reason.starts_with("index:"), "{body}");
    assert!(reason.contains("unreachable"), "{body}");
    stop.cancel();
    server.await.unwrap().unwrap();
}
