//! Helpers shared by the benchmarks: where the package and the release binaries are, a brain
//! that knows one short note, and a `/healthz` poller.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use engram::brain::{AddedDocument, BrainId, BrainName, NewDocument, TenantId};
use engram::index::{Index, IndexedDocument};
use engram::store::Store;
use engram::text::{count_tokens, ChunkDraft};

/// This package's folder, read when the program runs (cargo sets it for tests and benches)
/// rather than baked in at compile time, so a build shared between checkouts never reads
/// another checkout's files.
#[allow(
    clippy::disallowed_methods,
    reason = "benchmarks are configured by the environment, as the tests are"
)]
pub fn crate_dir() -> PathBuf {
    PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR")
            .expect("run under cargo: CARGO_MANIFEST_DIR is not set"),
    )
}

/// A binary of the release build (`cargo build --release --workspace`).
#[allow(
    clippy::disallowed_methods,
    reason = "benchmarks are configured by the environment, as the tests are"
)]
pub fn release_binary(name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate_dir().join("target"));
    let path = target.join("release").join(name);
    assert!(
        path.is_file(),
        "{} is missing: run `cargo build --release --workspace` first",
        path.display()
    );
    path
}

/// Creates brain `name` in `tenant` holding one document `file` of one chunk under `heading`.
pub async fn brain_knowing(
    store: &dyn Store,
    index: &dyn Index,
    tenant: TenantId,
    name: &str,
    file: &str,
    heading: &str,
    text: &str,
) -> BrainId {
    let brain = store
        .create_brain(tenant, &BrainName::parse(name).unwrap())
        .await
        .unwrap();
    let (AddedDocument::Pending(document) | AddedDocument::Known(document)) = store
        .add_document(&NewDocument {
            brain: brain.id,
            sha256: format!("{}-{file}", brain.id),
            file_name: file.into(),
            source_link: None,
            scope: String::new(),
            added_by: None,
        })
        .await
        .unwrap();
    let chunk = ChunkDraft {
        ordinal: 0,
        page: None,
        heading: Some(heading.into()),
        text: text.into(),
        tokens: count_tokens(text) as u32,
    };
    index
        .index_document(IndexedDocument {
            brain: brain.id,
            document: document.id,
            pages: 1,
            ocr_pages: 0,
            chunks: &[chunk],
            vectors: None,
        })
        .await
        .unwrap();
    brain.id
}

/// Polls `GET /healthz` every 10 ms on its own thread until `stop`; returns every latency.
pub fn spawn_health_poller(
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Vec<Duration>> {
    std::thread::spawn(move || {
        let mut latencies = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            let started = std::time::Instant::now();
            let mut stream = TcpStream::connect(addr).expect("connect to the API");
            stream
                .write_all(b"GET /healthz HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
                .unwrap();
            let mut response = String::new();
            stream.read_to_string(&mut response).unwrap();
            assert!(response.starts_with("HTTP/1.1 200"), "{response}");
            latencies.push(started.elapsed());
            std::thread::sleep(Duration::from_millis(10));
        }
        latencies
    })
}

/// The `p`-th percentile (0–1) of sorted `values`.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}
