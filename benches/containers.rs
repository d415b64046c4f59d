//! engram's container images built and run: the deployment of `docker-compose.yml`
//! (PostgreSQL, Qdrant, gateway, chat, ingest) as Podman containers with host networking,
//! taken through one journey by the fake Discord and the fake LLM (both in this process, on
//! 127.0.0.1); then the images' sizes and each container's resident memory.
//!
//! The images come from `scripts/images.sh build`: the Dockerfile's `gateway`, `chat` and
//! `ingest` targets on a stand-in for `debian:bookworm-slim` (debootstrap, minbase, slimmed),
//! and stand-ins for the two images the compose file pulls (PostgreSQL 15 from Debian, the
//! Qdrant v1.17.1 server from `../shared/tools/qdrant`) on the same base. Each container gets
//! the environment the compose file gives its service, with 127.0.0.1 and free ports in place
//! of the compose network's host names, plus the fakes' addresses.
//!
//! The journey, as a new team would take it: `/brain create` and `/brain link` in a channel,
//! a scanned page posted there (✅ expected: the ingest container reads it with OCR, the
//! chunks land in Qdrant), then a question about it (an answer grown by edits, ending with
//! its sources, and the page's text in the LLM's prompt).
//!
//! ```text
//! scripts/images.sh                  # builds the images, then runs this
//! cargo bench --bench containers     # this alone, once the images exist
//! ```
//! Results are recorded in `benches/RESULTS.md`.
#![allow(clippy::print_stdout)]

#[path = "../tests/it/fakes/mod.rs"]
#[allow(dead_code)]
mod fakes;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use fakes::discord::{
    FakeDiscord, Options, SlashCommand, UserMessage, ALICE_ID, BOT_ID, GENERAL_ID,
};
use fakes::openai::Behaviour;

const BASE_IMAGE: &str = "localhost/engram-standin/debian:bookworm-slim";
const POSTGRES_IMAGE: &str = "localhost/engram-standin/postgres:15";
const QDRANT_IMAGE: &str = "localhost/engram-standin/qdrant:v1.17.1";
const ENGRAM_IMAGES: [&str; 4] = ["gateway", "chat", "ingest", "all"];
const REPLY: &str = "The on-call engineer carries the pager from Monday 10:00 to the following Monday 10:00; the hand-over happens in #ops [1].";
const SCAN: &[u8] = include_bytes!("../demo/oncall-scan.png");
/// Targets from the issue, in MB (10^6 bytes), over the same base.
const TARGET_GATEWAY_MB: f64 = 120.0;
const TARGET_INGEST_MB: f64 = 230.0;

/// `podman --runtime runc` with the settings `scripts/images.sh` wrote for this machine.
struct Podman {
    conf: PathBuf,
}

impl Podman {
    #[allow(
        clippy::disallowed_methods,
        reason = "benchmarks are configured by the environment, as the tests are"
    )]
    fn new() -> Self {
        let cache = std::env::var_os("ENGRAM_IMAGES_CACHE")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                PathBuf::from(std::env::var_os("HOME").expect("HOME is set"))
                    .join(".cache/engram-images")
            });
        let conf = cache.join("containers.conf");
        assert!(
            conf.is_file(),
            "{} is missing: run `scripts/images.sh build` first",
            conf.display()
        );
        Self { conf }
    }

    fn output(&self, args: &[&str]) -> Output {
        Command::new("podman")
            .env("CONTAINERS_CONF", &self.conf)
            .args(["--runtime", "runc"])
            .args(args)
            .output()
            .expect("podman runs (scripts/images.sh installs it)")
    }

    /// Runs podman; its standard output, or what it said on failure.
    fn run(&self, args: &[&str]) -> Result<String, String> {
        let output = self.output(args);
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
        } else {
            Err(format!(
                "podman {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&output.stderr).trim()
            ))
        }
    }

    /// An image's size as `podman image inspect` reports it (all layers, uncompressed).
    fn image_size(&self, image: &str) -> u64 {
        self.run(&["image", "inspect", "--format", "{{.Size}}", image])
            .unwrap_or_else(|error| panic!("{error}\n(run `scripts/images.sh build` first)"))
            .parse()
            .expect("a size in bytes")
    }
}

/// The containers of one run, all removed when it ends, however it ends.
struct Deployment {
    podman: Podman,
    prefix: String,
    started: Vec<String>,
}

impl Deployment {
    fn name(&self, service: &str) -> String {
        format!("{}-{service}", self.prefix)
    }

    /// `podman run -d` of `image` as `service`, the way docker-compose.yml runs its services
    /// (`restart: unless-stopped`; for engram's also `init: true`, `stop_grace_period: 40s`),
    /// with host networking.
    fn start(&mut self, service: &str, image: &str, env: &[(&str, String)]) {
        let name = self.name(service);
        let mut args: Vec<String> = [
            "run",
            "-d",
            "--name",
            &name,
            "--network",
            "host",
            "--restart",
            "unless-stopped",
            "--init",
            "--stop-timeout",
            "40",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        for (key, value) in env {
            args.push("-e".into());
            args.push(format!("{key}={value}"));
        }
        args.push(image.into());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.podman
            .run(&args)
            .unwrap_or_else(|error| panic!("{error}"));
        self.started.push(name);
    }

    /// Everything `service` wrote to its standard output and error.
    fn logs(&self, service: &str) -> String {
        let output = self.podman.output(&["logs", &self.name(service)]);
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    }

    /// The last lines of every container's log, for a failure message.
    fn log_tails(&self) -> String {
        self.started
            .iter()
            .map(|name| {
                let service = name.trim_start_matches(&format!("{}-", self.prefix));
                let log = self.logs(service);
                let lines: Vec<&str> = log.lines().collect();
                let tail = lines[lines.len().saturating_sub(30)..].join("\n");
                format!("--- {service} ---\n{tail}")
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Runs `command` inside `service`; whether it succeeded.
    fn exec(&self, service: &str, command: &[&str]) -> bool {
        self.exec_output(service, command).0
    }

    /// Runs `command` inside `service`; whether it succeeded, and what it printed.
    fn exec_output(&self, service: &str, command: &[&str]) -> (bool, String) {
        let name = self.name(service);
        let mut args = vec!["exec", name.as_str()];
        args.extend_from_slice(command);
        let output = self.podman.output(&args);
        (
            output.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ),
        )
    }

    /// The host PID of the container's first process (`--init`: catatonit).
    fn pid(&self, service: &str) -> u32 {
        self.podman
            .run(&["inspect", "--format", "{{.State.Pid}}", &self.name(service)])
            .unwrap_or_else(|error| panic!("{error}"))
            .parse()
            .expect("a PID")
    }

    fn running(&self, service: &str) -> bool {
        self.podman
            .run(&[
                "inspect",
                "--format",
                "{{.State.Running}}",
                &self.name(service),
            ])
            .is_ok_and(|state| state == "true")
    }

    /// How often the restart policy has restarted the container (0 when podman cannot say).
    fn restarts(&self, service: &str) -> u64 {
        self.podman
            .run(&[
                "inspect",
                "--format",
                "{{.RestartCount}}",
                &self.name(service),
            ])
            .ok()
            .and_then(|count| count.parse().ok())
            .unwrap_or(0)
    }

    /// `podman stop` (SIGTERM, SIGKILL after 40 s); how long it took and the exit code.
    fn stop(&self, service: &str) -> (Duration, i64) {
        let started = Instant::now();
        self.podman
            .run(&["stop", "--time", "40", &self.name(service)])
            .unwrap_or_else(|error| panic!("{error}"));
        let took = started.elapsed();
        let code = self
            .podman
            .run(&[
                "inspect",
                "--format",
                "{{.State.ExitCode}}",
                &self.name(service),
            ])
            .unwrap_or_else(|error| panic!("{error}"))
            .parse()
            .expect("an exit code");
        (took, code)
    }

    /// Polls `done` every 50 ms; past `limit`, or once a container has been restarted 3 times,
    /// the run fails with every container's log.
    fn wait(&self, what: &str, limit: Duration, mut done: impl FnMut() -> bool) -> Duration {
        let started = Instant::now();
        let mut polls = 0u32;
        while !done() {
            if started.elapsed() > limit {
                panic!("timed out waiting for {what}\n{}", self.log_tails());
            }
            polls += 1;
            if polls % 20 == 0 {
                let prefix = format!("{}-", self.prefix);
                if let Some(looping) = self
                    .started
                    .iter()
                    .map(|name| name.trim_start_matches(&prefix))
                    .find(|service| self.restarts(service) >= 3)
                {
                    panic!(
                        "{looping} keeps restarting, while waiting for {what}\n{}",
                        self.log_tails()
                    );
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        started.elapsed()
    }
}

impl Drop for Deployment {
    fn drop(&mut self) {
        for name in self.started.iter().rev() {
            let _ = self.podman.output(&["rm", "--force", "--time", "0", name]);
        }
    }
}

/// A port free on 127.0.0.1 now (the kernel's choice; closed again at once).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `GET path` over plain HTTP/1.0; the status code, if the server answered.
fn http_status(port: u16, path: &str) -> Option<u16> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    response.split_whitespace().nth(1)?.parse().ok()
}

/// Memory of one container's processes, in KiB.
struct Memory {
    processes: usize,
    /// The resident set of the service's own process (engram, qdrant, or PostgreSQL's
    /// postmaster).
    main_rss: u64,
    /// Every process of the container (init included), resident sets summed.
    total_rss: u64,
    /// The same processes' proportional set sizes summed: shared pages (PostgreSQL's shared
    /// buffers, libraries) counted once across them.
    total_pss: u64,
}

fn status_field(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
}

fn pss(pid: u32) -> Option<u64> {
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    rollup
        .lines()
        .find_map(|line| line.strip_prefix("Pss:"))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
}

/// Every process whose ancestors include `root`, and `root` itself (from /proc/*/stat).
fn process_tree(root: u32) -> Vec<u32> {
    let mut parents: HashMap<u32, Vec<u32>> = HashMap::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // pid (comm) state ppid ...: comm may hold spaces, so read after its last ')'.
        let Some(ppid) = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok())
        else {
            continue;
        };
        parents.entry(ppid).or_default().push(pid);
    }
    let mut tree = vec![root];
    let mut next = 0;
    while next < tree.len() {
        if let Some(children) = parents.get(&tree[next]) {
            tree.extend(children);
        }
        next += 1;
    }
    tree
}

fn memory(deployment: &Deployment, service: &str, main: &str) -> Memory {
    let tree = process_tree(deployment.pid(service));
    let comm = |pid: u32| {
        std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .unwrap_or_default()
            .trim()
            .to_string()
    };
    let main_rss = tree
        .iter()
        .find(|pid| comm(**pid) == main)
        .and_then(|pid| status_field(*pid, "VmRSS:"))
        .unwrap_or_else(|| panic!("no `{main}` process in {service}"));
    Memory {
        processes: tree.len(),
        main_rss,
        total_rss: tree
            .iter()
            .filter_map(|pid| status_field(*pid, "VmRSS:"))
            .sum(),
        total_pss: tree.iter().filter_map(|pid| pss(*pid)).sum(),
    }
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

fn sizes_table(podman: &Podman) -> (f64, f64) {
    let base = podman.image_size(BASE_IMAGE);
    println!("| image | size | over the base | target |");
    println!("|---|---|---|---|");
    println!(
        "| `debian:bookworm-slim` stand-in (debootstrap minbase, slimmed) | {:.1} MB | — | |",
        mb(base)
    );
    let mut gateway = 0.0;
    let mut ingest = 0.0;
    for target in ENGRAM_IMAGES {
        let size = podman.image_size(&format!("localhost/engram:{target}"));
        let (limit, verdict) = match target {
            "gateway" | "chat" => (TARGET_GATEWAY_MB, mb(size) <= TARGET_GATEWAY_MB),
            _ => (TARGET_INGEST_MB, mb(size) <= TARGET_INGEST_MB),
        };
        if target == "gateway" {
            gateway = mb(size);
        }
        if target == "ingest" {
            ingest = mb(size);
        }
        println!(
            "| `engram:{target}` | {:.1} MB | {:.1} MB | ≤ {limit:.0} MB: {} |",
            mb(size),
            mb(size - base),
            if verdict { "met" } else { "**not met**" }
        );
    }
    for image in [POSTGRES_IMAGE, QDRANT_IMAGE] {
        let size = podman.image_size(image);
        println!(
            "| `{image}` (stand-in) | {:.1} MB | {:.1} MB | |",
            mb(size),
            mb(size - base)
        );
    }
    println!();
    (gateway, ingest)
}

fn memory_table(deployment: &Deployment, label: &str) {
    println!("| container ({label}) | processes | main process RSS | all processes RSS / PSS |");
    println!("|---|---|---|---|");
    for (service, main) in [
        ("gateway", "engram"),
        ("chat", "engram"),
        ("ingest", "engram"),
        ("postgres", "postgres"),
        ("qdrant", "qdrant"),
    ] {
        let m = memory(deployment, service, main);
        println!(
            "| {service} | {} | {main} {:.1} MiB | {:.1} / {:.1} MiB |",
            m.processes,
            mib(m.main_rss),
            mib(m.total_rss),
            mib(m.total_pss)
        );
    }
    println!();
}

/// Sends a slash command; the content of engram's response.
fn command(deployment: &Deployment, discord: &FakeDiscord, command: SlashCommand) -> String {
    let event = discord.interaction_create(&command);
    let id: u64 = event["id"].as_str().unwrap().parse().unwrap();
    discord.dispatch("INTERACTION_CREATE", event);
    let mut content = None;
    deployment.wait(
        "a slash command's response",
        Duration::from_secs(30),
        || {
            content = discord.interaction(id).and_then(|record| {
                let (_, callback) = record.callbacks.first()?;
                Some(callback["data"]["content"].as_str()?.to_string())
            });
            content.is_some()
        },
    );
    content.unwrap()
}

/// The bot's messages replying to `message` in #general.
fn replies_to(discord: &FakeDiscord, message: u64) -> Vec<fakes::discord::StoredMessage> {
    discord
        .messages(GENERAL_ID)
        .into_iter()
        .filter(|m| {
            m.author_id == BOT_ID
                && m.json["message_reference"]["message_id"].as_str() == Some(&message.to_string())
        })
        .collect()
}

fn main() {
    // Cargo passes `--bench` to harness = false targets; nothing here takes arguments.
    let podman = Podman::new();
    println!("## Container images (Podman, host networking)\n");
    let (gateway_mb, ingest_mb) = sizes_table(&podman);

    let fakes = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let discord = fakes.block_on(FakeDiscord::start(Options::default()));
    let llm = fakes.block_on(fakes::openai::start(Behaviour {
        reply: REPLY.into(),
        token_interval: Duration::from_millis(20),
        dimensions: Some(64),
        ..Behaviour::default()
    }));

    let mut deployment = Deployment {
        podman,
        prefix: format!("engram-bench-{}", std::process::id()),
        started: Vec::new(),
    };
    let (pg_port, qdrant_http, qdrant_grpc, http_port) =
        (free_port(), free_port(), free_port(), free_port());
    let password = format!(
        "bench{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );

    // PostgreSQL and Qdrant, as the compose file's `postgres` and `qdrant` services.
    deployment.start(
        "postgres",
        POSTGRES_IMAGE,
        &[
            ("POSTGRES_USER", "engram".into()),
            ("POSTGRES_DB", "engram".into()),
            ("POSTGRES_PASSWORD", password.clone()),
            ("POSTGRES_LISTEN", "127.0.0.1".into()),
            ("PGPORT", pg_port.to_string()),
        ],
    );
    deployment.start(
        "qdrant",
        QDRANT_IMAGE,
        &[
            ("QDRANT__SERVICE__HOST", "127.0.0.1".into()),
            ("QDRANT__SERVICE__HTTP_PORT", qdrant_http.to_string()),
            ("QDRANT__SERVICE__GRPC_PORT", qdrant_grpc.to_string()),
            ("QDRANT__LOG_LEVEL", "WARN".into()),
        ],
    );
    // The compose file's healthchecks, with these ports.
    let pg_port_text = pg_port.to_string();
    let pg_ready = [
        "pg_isready",
        "-h",
        "127.0.0.1",
        "-p",
        &pg_port_text,
        "-U",
        "engram",
        "-d",
        "engram",
    ];
    let qdrant_check = format!(
        "exec 3<>/dev/tcp/127.0.0.1/{qdrant_http} && printf 'GET /readyz HTTP/1.0\\r\\n\\r\\n' >&3 && grep -q '^HTTP/1\\.[01] 200' <&3"
    );
    let services_ready = deployment.wait(
        "PostgreSQL and Qdrant to be healthy",
        Duration::from_secs(60),
        || {
            deployment.exec("postgres", &pg_ready)
                && deployment.exec("qdrant", &["bash", "-c", &qdrant_check])
        },
    );

    // engram's services, with the environment docker-compose.yml gives them.
    let common = vec![
        (
            "ENGRAM__STORE__URL",
            format!("postgres://engram:{password}@127.0.0.1:{pg_port}/engram"),
        ),
        ("ENGRAM__INDEX__KIND", "qdrant".to_string()),
        (
            "ENGRAM__INDEX__QDRANT_URL",
            format!("http://127.0.0.1:{qdrant_grpc}"),
        ),
        ("ENGRAM__INDEX__COLLECTION", "engram_chunks".into()),
        ("ENGRAM__EMBEDDINGS__BASE_URL", llm.base_url()),
        ("ENGRAM__EMBEDDINGS__API_KEY", "fake-key".into()),
        ("ENGRAM__EMBEDDINGS__MODEL", "text-embedding-3-small".into()),
        ("ENGRAM__EMBEDDINGS__DIMENSIONS", "64".into()),
        ("ENGRAM__LOG__FORMAT", "json".into()),
    ];
    let platforms = vec![
        ("ENGRAM__DISCORD__TOKEN", discord.token()),
        ("ENGRAM__DISCORD__PROXY_URL", discord.rest_url()),
        ("ENGRAM__SLACK__BOT_TOKEN", String::new()),
        ("ENGRAM__SLACK__APP_TOKEN", String::new()),
        ("ENGRAM__SLACK__SIGNING_SECRET", String::new()),
        ("ENGRAM__SLACK__MODE", "socket".into()),
    ];
    let gateway_env: Vec<_> = common
        .iter()
        .chain(&platforms)
        .cloned()
        .chain([
            ("ENGRAM__HTTP__LISTEN", format!("127.0.0.1:{http_port}")),
            ("ENGRAM__DISCORD__SHARDS", "auto".into()),
        ])
        .collect();
    let chat_env: Vec<_> = common
        .iter()
        .chain(&platforms)
        .cloned()
        .chain([
            ("ENGRAM__LLM__BASE_URL", llm.base_url()),
            ("ENGRAM__LLM__API_KEY", "fake-key".into()),
            ("ENGRAM__LLM__MODEL", "gpt-4o-mini".into()),
            ("ENGRAM__CHAT__MAX_CONCURRENT_ANSWERS", "64".into()),
        ])
        .collect();
    let ingest_env: Vec<_> = common
        .iter()
        .cloned()
        .chain([("ENGRAM__INGEST__WORKERS", "2".into())])
        .collect();
    let engram_started = Instant::now();
    deployment.start("gateway", "localhost/engram:gateway", &gateway_env);
    deployment.start("chat", "localhost/engram:chat", &chat_env);
    deployment.start("ingest", "localhost/engram:ingest", &ingest_env);
    let running = |service: &str| deployment.logs(service).contains("engram is running");
    deployment.wait(
        "gateway, chat and ingest to run, and the gateway to connect to Discord",
        Duration::from_secs(60),
        || {
            running("gateway")
                && running("chat")
                && running("ingest")
                && !discord.commands(None).is_empty()
        },
    );
    let engram_ready = engram_started.elapsed();
    let gateway_check = format!(
        "exec 3<>/dev/tcp/127.0.0.1/{http_port} && printf 'GET /healthz HTTP/1.0\\r\\n\\r\\n' >&3 && grep -q '^HTTP/1\\.[01] 200' <&3"
    );
    assert!(
        deployment.exec("gateway", &["bash", "-c", &gateway_check]),
        "the gateway's healthcheck failed\n{}",
        deployment.log_tails()
    );
    deployment.wait("/readyz to answer 200", Duration::from_secs(30), || {
        http_status(http_port, "/readyz") == Some(200)
    });

    // Idle: every service up and connected, nothing asked yet.
    memory_table(&deployment, "idle, after start");

    // The journey.
    let created = command(
        &deployment,
        &discord,
        SlashCommand::new(GENERAL_ID, ALICE_ID, "brain")
            .subcommand("create")
            .option("name", "handbook"),
    );
    assert!(
        created.contains("Created the brain `handbook`"),
        "{created}"
    );
    let linked = command(
        &deployment,
        &discord,
        SlashCommand::new(GENERAL_ID, ALICE_ID, "brain")
            .subcommand("link")
            .option("name", "handbook")
            .option("mode", "both"),
    );
    assert!(linked.contains("now uses the brain `handbook`"), "{linked}");

    let (attachment, _) = discord.add_attachment("oncall-scan.png", SCAN);
    let event = discord.message_create(
        &UserMessage::new(GENERAL_ID, ALICE_ID, "the on-call note").with_attachment(attachment),
    );
    let posted: u64 = event["id"].as_str().unwrap().parse().unwrap();
    discord.dispatch("MESSAGE_CREATE", event);
    let learned = deployment.wait("✅ on the scanned page", Duration::from_secs(120), || {
        let reactions = discord.reactions(posted);
        assert!(
            !reactions.contains(&"❌".to_string()),
            "the scan was refused: {:?}\n{}",
            replies_to(&discord, posted)
                .iter()
                .map(|m| m.content().to_string())
                .collect::<Vec<_>>(),
            deployment.log_tails()
        );
        reactions.contains(&"✅".to_string())
    });
    let mut summary = String::new();
    deployment.wait("the file's summary", Duration::from_secs(30), || {
        summary = replies_to(&discord, posted)
            .first()
            .map(|m| m.content().to_string())
            .unwrap_or_default();
        !summary.is_empty()
    });
    assert!(
        summary.starts_with("📚 Learned oncall-scan.png: 1 page"),
        "{summary}"
    );

    let event = discord.message_create(
        &UserMessage::new(
            GENERAL_ID,
            ALICE_ID,
            "who carries the pager, and when is the hand-over?",
        )
        .mentioning(BOT_ID),
    );
    let question: u64 = event["id"].as_str().unwrap().parse().unwrap();
    discord.dispatch("MESSAGE_CREATE", event);
    let mut answer = None;
    let answered = deployment.wait(
        "the answer with its sources",
        Duration::from_secs(60),
        || {
            answer = replies_to(&discord, question)
                .into_iter()
                .find(|m| m.content().contains("**Sources**"));
            answer.is_some()
        },
    );
    let answer = answer.unwrap();
    let link = format!(
        "https://discord.com/channels/{}/{GENERAL_ID}/{posted}",
        fakes::discord::GUILD_ID
    );
    assert!(
        answer.content().starts_with(REPLY)
            && answer
                .content()
                .contains(&format!("[1] [oncall-scan.png](<{link}>)")),
        "{}",
        answer.content()
    );
    let prompt = llm.inputs.lock().unwrap().join("\n");
    assert!(
        prompt.contains("carries the pager"),
        "the scanned page's text is not in the prompt: {prompt}"
    );

    memory_table(&deployment, "idle, after the journey");

    // `engram doctor` in the containers, as the README suggests: every check passes in
    // ingest; the gateway passes too, warning only that its image has no OCR tools.
    let (ingest_doctor, report) = deployment.exec_output("ingest", &["engram", "doctor"]);
    assert!(
        ingest_doctor && !report.contains("[WARN]"),
        "doctor in the ingest container:\n{report}"
    );
    let (gateway_doctor, report) = deployment.exec_output("gateway", &["engram", "doctor"]);
    let warned: Vec<&str> = report
        .lines()
        .filter(|line| line.starts_with("[WARN]"))
        .filter_map(|line| line.split_whitespace().nth(1))
        .collect();
    assert!(
        gateway_doctor && warned == ["tesseract", "pdftotext"],
        "doctor in the gateway container:\n{report}"
    );

    // The `all` image on its own: the offline demo (SQLite, OCR of a scanned page).
    let demo_started = Instant::now();
    let demo = deployment
        .podman
        .run(&[
            "run",
            "--rm",
            "--network",
            "host",
            "localhost/engram:all",
            "demo",
        ])
        .unwrap_or_else(|error| panic!("engram demo in the `all` image: {error}"));
    assert!(demo.contains("pager"), "{demo}");
    let demo_took = demo_started.elapsed();

    // Restarts by the restart policy, each with the reason the process gave when it stopped.
    let restarts: Vec<String> = ["postgres", "qdrant", "gateway", "chat", "ingest"]
        .into_iter()
        .filter_map(|service| {
            let count = deployment.restarts(service);
            (count > 0).then(|| {
                let logs = deployment.logs(service);
                let reason = logs
                    .lines()
                    .find(|line| line.starts_with("engram: "))
                    .unwrap_or("no reason logged");
                let reason: String = reason.chars().take(200).collect();
                format!("{service} {count}× ({reason})")
            })
        })
        .collect();

    // SIGTERM, as `docker compose stop` sends it: each stops cleanly.
    let mut stops = Vec::new();
    for service in ["gateway", "chat", "ingest"] {
        let (took, code) = deployment.stop(service);
        assert!(
            !deployment.running(service) && code == 0,
            "{service} exited with {code}\n{}",
            deployment.log_tails()
        );
        stops.push(format!("{service} {:.1} s", took.as_secs_f64()));
    }

    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!("| journey step | result |");
    println!("|---|---|");
    println!(
        "| PostgreSQL and Qdrant healthy (compose healthchecks) | {:.0} ms |",
        ms(services_ready)
    );
    println!(
        "| gateway, chat, ingest running, gateway identified, `/healthz` check, `/readyz` 200 | {:.0} ms |",
        ms(engram_ready)
    );
    println!("| `/brain create`, `/brain link` | answered |");
    println!(
        "| scanned page posted → ✅ (OCR in the ingest container, chunks in Qdrant) | {:.0} ms |",
        ms(learned)
    );
    println!("| summary reply | {summary} |");
    println!(
        "| question → answer ending with its sources (the page's text in the prompt) | {:.0} ms, {} edits |",
        ms(answered),
        answer.versions.len() - 1
    );
    println!(
        "| `podman stop` (SIGTERM), exit code 0 | {} |",
        stops.join(", ")
    );
    println!(
        "| `engram doctor` in ingest: all ok; in gateway: ok, warnings only for tesseract and pdftotext | as expected |"
    );
    println!(
        "| `podman run engram:all demo` (offline demo, OCR) | {:.1} s |",
        demo_took.as_secs_f64()
    );
    println!(
        "| restarts by `restart: unless-stopped` | {} |",
        if restarts.is_empty() {
            "none".to_string()
        } else {
            restarts.join("; ")
        }
    );
    println!(
        "| 429s served by the fake Discord | {} |",
        discord.rate_limited(GENERAL_ID)
    );
    println!("\njourney: passed");
    println!(
        "sizes: gateway/chat {gateway_mb:.1} MB (target ≤ {TARGET_GATEWAY_MB:.0}), ingest {ingest_mb:.1} MB (target ≤ {TARGET_INGEST_MB:.0})"
    );
    drop(deployment);
}
