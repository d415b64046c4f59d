//! Real Qdrant servers for the tests and benchmarks (v1.17.1, from `../shared/tools/qdrant`
//! beside the repository): the shared one named by `ENGRAM_TEST_QDRANT_URL`, in which every
//! test works in collections of its own (`TestCollection`, deleted when dropped), and private
//! ones (`QdrantServer`) that a test may stop, kill, pause and start again on the same storage
//! to inject faults, or start with an API key or TLS.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use qdrant_client::qdrant::{Condition, CountPointsBuilder, Filter};
use qdrant_client::Qdrant;

/// The shared test server's gRPC URL. Fails (never skips) when it is not set:
/// `scripts/test.sh` starts one and sets it, as CI does.
#[allow(
    clippy::disallowed_methods,
    reason = "tests are configured by the environment (scripts/test.sh)"
)]
pub fn shared_url() -> String {
    std::env::var("ENGRAM_TEST_QDRANT_URL")
        .ok()
        .filter(|url| !url.is_empty())
        .unwrap_or_else(|| {
            panic!(
                "ENGRAM_TEST_QDRANT_URL is not set. The Qdrant tests run against a real Qdrant: \
                 run scripts/test.sh, or `export ENGRAM_TEST_QDRANT_URL=$(scripts/qdrant.sh)` \
                 (it starts a private Qdrant on 127.0.0.1)."
            )
        })
}

/// A collection name no other test, process or run uses: `engram_test_<tag>_<pid>_<n>_<ns>`.
pub fn unique_collection(tag: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "engram_test_{tag}_{}_{}_{nanos}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// A client for `url`, with `api_key` when given.
pub fn client(url: &str, api_key: Option<&str>) -> Qdrant {
    Qdrant::from_url(url)
        .api_key(api_key.map(str::to_string))
        .timeout(Duration::from_secs(10))
        .skip_compatibility_check()
        .build()
        .expect("a Qdrant client")
}

/// A collection name on a server, deleted (with its points) when dropped, however the test
/// ends. engram makes the collection itself when it first opens the index.
#[derive(Debug)]
pub struct TestCollection {
    pub url: String,
    pub name: String,
}

impl TestCollection {
    /// A fresh name on the shared test server.
    pub fn shared(tag: &str) -> Self {
        Self::on(&shared_url(), tag)
    }

    /// A fresh name on the server at `url`.
    pub fn on(url: &str, tag: &str) -> Self {
        Self {
            url: url.to_string(),
            name: unique_collection(tag),
        }
    }

    /// Points in the collection; of one document when `document` is given.
    pub async fn points(&self, document: Option<i64>) -> usize {
        count_points(&client(&self.url, None), &self.name, document).await
    }
}

impl Drop for TestCollection {
    fn drop(&mut self) {
        let (url, name) = (self.url.clone(), self.name.clone());
        // Drop cannot wait on the test's runtime (it may be gone, or be this thread): a short
        // thread with its own runtime deletes the collection.
        let deleted = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime
                .block_on(client(&url, None).delete_collection(name))
                .ok()
        })
        .join();
        // A private server may be gone already, which takes its collections with it.
        drop(deleted);
    }
}

/// Points of `collection` (of one document when given), counted exactly.
pub async fn count_points(client: &Qdrant, collection: &str, document: Option<i64>) -> usize {
    let mut request = CountPointsBuilder::new(collection).exact(true);
    if let Some(document) = document {
        request = request.filter(Filter::must([Condition::matches("document_id", document)]));
    }
    let count = client
        .count(request)
        .await
        .unwrap_or_else(|error| panic!("count the points of {collection}: {error}"))
        .result
        .map_or(0, |r| r.count);
    usize::try_from(count).unwrap()
}

/// The folder of the shared Qdrant server binary and its `run.sh`.
fn tools() -> PathBuf {
    let tools = crate::support::crate_dir().join("../shared/tools/qdrant");
    assert!(
        tools.join("run.sh").is_file(),
        "no Qdrant server at {}: the shared tools folder must sit beside the repository",
        tools.display()
    );
    tools
}

/// Whether Qdrant's REST `/readyz` at `addr` answers 200.
fn readyz(addr: SocketAddr) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let mut head = [0u8; 12];
    stream
        .write_all(b"GET /readyz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .and_then(|()| stream.read_exact(&mut head))
        .is_ok_and(|()| head.ends_with(b" 200"))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|probe| probe.local_addr())
        .expect("a free port")
        .port()
}

/// A private Qdrant server on 127.0.0.1 with its storage in a temp folder, which a test may
/// stop, kill, pause and start again (same ports, same storage). Killed when dropped.
#[derive(Debug)]
pub struct QdrantServer {
    /// `http://127.0.0.1:GRPC` (or `https://localhost:GRPC` with TLS): for index.qdrant_url.
    pub url: String,
    http: u16,
    grpc: u16,
    env: Vec<(String, String)>,
    tls: bool,
    dir: tempfile::TempDir,
    child: Option<Child>,
    /// The log's length when the running server was started: what it logs comes after.
    log_start: usize,
}

impl QdrantServer {
    /// Starts a plain server and waits until it is ready.
    pub fn start() -> Self {
        Self::new(None, false)
    }

    /// Starts a server that wants `key` in every request but the health check.
    pub fn with_api_key(key: &str) -> Self {
        Self::new(Some(key), false)
    }

    /// Starts a server that speaks only TLS, with a certificate for `localhost` signed by a
    /// CA of its own, whose certificate file (for SSL_CERT_FILE) is `ca()`.
    pub fn with_tls() -> Self {
        Self::new(None, true)
    }

    fn new(api_key: Option<&str>, tls: bool) -> Self {
        let (http, grpc) = (free_port(), free_port());
        let dir = tempfile::tempdir().expect("temp dir");
        let mut env = Vec::new();
        if let Some(key) = api_key {
            env.push(("QDRANT__SERVICE__API_KEY".to_string(), key.to_string()));
        }
        if tls {
            let certificates = dir.path().join("tls");
            make_certificates(&certificates);
            env.extend([
                (
                    "QDRANT__SERVICE__ENABLE_TLS".to_string(),
                    "true".to_string(),
                ),
                (
                    "QDRANT__TLS__CERT".to_string(),
                    certificates.join("server.pem").display().to_string(),
                ),
                (
                    "QDRANT__TLS__KEY".to_string(),
                    certificates.join("server.key").display().to_string(),
                ),
            ]);
        }
        let host = if tls {
            "https://localhost"
        } else {
            "http://127.0.0.1"
        };
        let mut server = Self {
            url: format!("{host}:{grpc}"),
            http,
            grpc,
            env,
            tls,
            dir,
            child: None,
            log_start: 0,
        };
        server.start_again();
        server
    }

    /// The certificate of the CA that signed a TLS server's certificate.
    pub fn ca(&self) -> PathBuf {
        self.dir.path().join("tls/ca.pem")
    }

    /// Starts the server (again) on its ports and storage, and waits until it is ready.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "the Qdrant server is already running");
        self.log_start = self.log().len();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("server.log"))
            .expect("server log");
        let child = Command::new(tools().join("run.sh"))
            .arg(self.http.to_string())
            .arg(self.grpc.to_string())
            .arg(self.dir.path().join("data"))
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("QDRANT__LOG_LEVEL", "INFO")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start Qdrant");
        self.child = Some(child);
        self.wait_ready(Duration::from_secs(60));
    }

    fn wait_ready(&mut self, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok())
                .flatten()
            {
                panic!("Qdrant exited at start ({status}):\n{}", self.log());
            }
            if self.answers() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "Qdrant did not get ready within {limit:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Whether it is ready: this server's own log (since it was started) says gRPC listens —
    /// so a port that another test's server took in the meantime is never mistaken for
    /// this one — the gRPC port accepts, and `/readyz` answers 200 (plain; with TLS, REST
    /// wants TLS too). Qdrant opens its REST port before its gRPC port, so `/readyz` alone
    /// is not enough.
    fn answers(&self) -> bool {
        let started = self
            .log()
            .get(self.log_start..)
            .unwrap_or_default()
            .to_string();
        if !started.contains("gRPC listening") {
            return false;
        }
        let grpc = SocketAddr::from(([127, 0, 0, 1], self.grpc));
        if TcpStream::connect_timeout(&grpc, Duration::from_millis(200)).is_err() {
            return false;
        }
        if self.tls {
            return true;
        }
        let http = SocketAddr::from(([127, 0, 0, 1], self.http));
        readyz(http)
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    fn signal(&self, signal: &str) {
        let child = self.child.as_ref().expect("the Qdrant server runs");
        let sent = Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status()
            .expect("kill");
        assert!(sent.success(), "cannot send {signal} to Qdrant");
    }

    /// Stops it with SIGTERM and waits until it has exited.
    pub fn terminate(&mut self) {
        self.signal("-TERM");
        let deadline = Instant::now() + Duration::from_secs(30);
        let child = self.child.as_mut().expect("running");
        while child.try_wait().expect("wait").is_none() {
            assert!(Instant::now() < deadline, "Qdrant ignored SIGTERM for 30 s");
            std::thread::sleep(Duration::from_millis(20));
        }
        self.child = None;
    }

    /// Kills it with SIGKILL: no shutdown, whatever was in flight is cut.
    pub fn kill(&mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
    }

    /// Freezes it (SIGSTOP): connections stay open and nothing answers, as when a server
    /// hangs; `resume` thaws it.
    /// Freezes it (SIGSTOP) and returns once the kernel reports it stopped, so no request
    /// sent afterwards is answered.
    pub fn pause(&self) {
        self.signal("-STOP");
        let pid = self.child.as_ref().expect("the Qdrant server runs").id();
        let deadline = Instant::now() + Duration::from_secs(10);
        // `/proc/<pid>/stat`: "pid (name) state …"; `T` once stopped.
        let stopped = || {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| {
                    stat.rsplit_once(')')
                        .map(|(_, rest)| rest.trim_start().starts_with('T'))
                })
                .unwrap_or(false)
        };
        while !stopped() {
            assert!(Instant::now() < deadline, "Qdrant did not stop");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn resume(&self) {
        self.signal("-CONT");
    }
}

impl Drop for QdrantServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-CONT", &child.id().to_string()])
                .status();
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Writes a CA (`ca.pem`) and a certificate for `localhost` and 127.0.0.1 signed by it
/// (`server.pem`, `server.key`) into `dir` with the openssl command.
fn make_certificates(dir: &Path) {
    std::fs::create_dir_all(dir).expect("certificate folder");
    let run = |args: &[&str]| {
        let output = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("run openssl (Debian's openssl package, a dependency of ca-certificates)");
        assert!(
            output.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=engram test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    ]);
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
         keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
    )
    .expect("extensions");
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=localhost",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    ]);
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "server.ext",
        "-out",
        "server.pem",
    ]);
}
