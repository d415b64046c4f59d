//! engram scaled out: the real `engram serve --roles …` binary as one gateway, two chat and two
//! ingest processes sharing a real PostgreSQL and a real Qdrant (the shared test server, a
//! collection per test), with the fake Discord and the fake LLM across the network. One chat
//! and one ingest process are killed with SIGKILL while they hold jobs; every question is still
//! answered exactly once and every file learned exactly once. Two gateway processes that both
//! receive every event act on each once. A gateway killed while a file is read leaves its
//! report to the next one; a gateway SIGKILLed mid-burst leaves the events it held to the other
//! gateway, and sessions resumed after a cut get their missed events replayed, each acted on
//! once. PostgreSQL (a private server) restarted while answers stream and scans are read loses
//! no question or file. The Qdrant faults run on a private Qdrant server the test stops and
//! starts again: an outage shows in `/readyz`, in the answer, and in ingest jobs retried until
//! it ends; Qdrant restarted (SIGKILL, then SIGTERM) on its storage mid-ingest leaves every
//! file indexed once, none half-indexed.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use engram::brain::BindingMode;

use crate::cluster::{handbook_bound_to, wait, Processes};
use crate::fakes::discord::{
    FakeChannel, FakeDiscord, Options, StoredMessage, UserMessage, ALICE_ID, BOB_ID, BOT_ID,
    GUILD_ID,
};
use crate::fakes::openai::{self as fake_openai, Behaviour};
use crate::pg_server::PgServer;
use crate::qdrant_server::{QdrantServer, TestCollection};
use crate::support::{http_get, TestDb};

const CHANNELS: u64 = 10;
const QUESTIONS: usize = 50;
/// The corpus's 11 files, the parking notes and 8 more notes.
const FILES: usize = 20;
const PARKING: &[u8] = b"# Parking\n\nVisitors park on level two of the garage.\n";
const REPLY: &str = "Visitors park on level two of the garage, next to the lifts by bay \
                     twelve; the barrier opens for visitors who gave their host's name [1].";

fn channel_id(n: u64) -> u64 {
    1_210_000_000_000_002_000 + n
}

/// The bot's messages replying to each message, by the message they reply to.
fn replies(discord: &FakeDiscord) -> HashMap<u64, Vec<StoredMessage>> {
    let mut found: HashMap<u64, Vec<StoredMessage>> = HashMap::new();
    for n in 0..CHANNELS {
        for message in discord.messages(channel_id(n)) {
            if message.author_id != BOT_ID {
                continue;
            }
            if let Some(to) = message.json["message_reference"]["message_id"]
                .as_str()
                .and_then(|id| id.parse::<u64>().ok())
            {
                found.entry(to).or_default().push(message);
            }
        }
    }
    found
}

/// Whether a corpus file is scanned (read by OCR, which takes seconds).
fn is_scan(name: &str) -> bool {
    name.contains("scan")
}

/// The files posted: the corpus, then notes on topics the questions do not ask about.
fn files() -> Vec<(String, Vec<u8>)> {
    let corpus = crate::support::crate_dir().join("../shared/corpus/files");
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&corpus)
        .unwrap_or_else(|error| panic!("cannot read {}: {error}", corpus.display()))
        .map(|entry| {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&path).unwrap())
        })
        .collect();
    files.sort();
    let topics = [
        "kettle", "printer", "badge", "locker", "plants", "bicycle", "library", "mailroom",
    ];
    for (n, topic) in topics.iter().enumerate() {
        files.push((
            format!("{topic}.md"),
            format!(
                "# The {topic}\n\nRule {n}: the {topic} is looked after by team {n}; ask them \
                 before you move the {topic}.\n"
            )
            .into_bytes(),
        ));
    }
    files
}

/// Which PostgreSQL the processes use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Postgres {
    /// The shared test server (`ENGRAM_TEST_POSTGRES_URL`), in a database of the test's own.
    Shared,
    /// A private server the test may stop and start again.
    Private,
}

/// Which Qdrant the processes use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Qdrant {
    /// The shared test server (`ENGRAM_TEST_QDRANT_URL`), in a collection of the test's own.
    Shared,
    /// A private server the test may stop and start again; jobs then back off as in
    /// production (1 s doubling to 8 s), so a restart fits within their attempts.
    Private,
}

fn config_toml(
    api: SocketAddr,
    database: &str,
    discord: &FakeDiscord,
    llm: &str,
    collection: &TestCollection,
    qdrant: Qdrant,
) -> String {
    let (backoff_base, backoff_max) = match qdrant {
        Qdrant::Shared => (200, 1000),
        Qdrant::Private => (1000, 8000),
    };
    format!(
        r#"[store]
url = "{database}"
max_connections = 4

[index]
kind = "qdrant"
qdrant_url = "{qdrant_url}"
collection = "{name}"

[llm]
base_url = "{llm}"
model = "fake-model"

[discord]
token = "{token}"
proxy_url = "{rest}"

[chat]
edit_interval_ms = 200
user_questions_per_minute = 0

[ingest]
extractor = "{extractor}"

[http]
listen = "{api}"

[jobs]
lease_ms = 4000
backoff_base_ms = {backoff_base}
backoff_max_ms = {backoff_max}

[log]
format = "text"
"#,
        token = discord.token(),
        rest = discord.rest_url(),
        extractor = crate::ingest::extractor().display(),
        qdrant_url = collection.url,
        name = collection.name,
    )
}

/// The fakes, a fresh PostgreSQL database holding the brain `handbook` (#team-0 takes files
/// and questions, the other channels questions), and engram processes on them.
struct World {
    /// First, so the processes are killed before the fakes they talk to go away.
    processes: Processes,
    /// Runs the fakes' servers.
    fakes: tokio::runtime::Runtime,
    discord: FakeDiscord,
    /// The processes' Qdrant collection, deleted when the test ends.
    collection: TestCollection,
    /// The private Qdrant server, for the tests that stop it.
    server: Option<QdrantServer>,
    /// The store the processes share.
    _db: TestDb,
    /// For looking at the store's rows while the processes run.
    pool: sqlx::PgPool,
    /// Where a process running the `api` role listens.
    api: SocketAddr,
    _llm: fake_openai::FakeOpenAi,
    _dir: tempfile::TempDir,
    /// The private PostgreSQL server, for the tests that stop it (last: the processes and
    /// the pool go first).
    postgres: Option<PgServer>,
}

impl World {
    /// Starts the fakes, then `(name, roles)` processes on the shared Qdrant, and waits until
    /// they all run and a gateway has registered the commands.
    fn start(processes: &[(&str, &str)]) -> Self {
        Self::start_on(processes, Qdrant::Shared)
    }

    /// `start`, on the Qdrant given.
    fn start_on(processes: &[(&str, &str)], qdrant: Qdrant) -> Self {
        Self::start_with(processes, qdrant, Postgres::Shared)
    }

    /// `start`, on the Qdrant and the PostgreSQL given.
    fn start_with(processes: &[(&str, &str)], qdrant: Qdrant, postgres: Postgres) -> Self {
        let fakes = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let mut options = Options::default();
        options.guilds[0].channels = (0..CHANNELS)
            .map(|n| FakeChannel::text(channel_id(n), &format!("team-{n}")))
            .collect();
        let discord = fakes.block_on(FakeDiscord::start(options));
        let llm = fakes.block_on(fake_openai::start(Behaviour {
            reply: REPLY.into(),
            first_token_delay: Duration::from_millis(300),
            token_interval: Duration::from_millis(120),
            ..Behaviour::default()
        }));
        let (server, collection) = match qdrant {
            Qdrant::Shared => (None, TestCollection::shared("processes")),
            Qdrant::Private => {
                let server = QdrantServer::start();
                let collection = TestCollection::on(&server.url, "processes");
                (Some(server), collection)
            }
        };
        let private = (postgres == Postgres::Private).then(PgServer::start);
        let db = match &private {
            Some(server) => fakes.block_on(TestDb::postgres_on(&server.url)),
            None => fakes.block_on(TestDb::postgres()),
        };
        let channels = (0..CHANNELS).map(|n| {
            let mode = if n == 0 {
                BindingMode::Both
            } else {
                BindingMode::Ask
            };
            (channel_id(n), mode)
        });
        fakes.block_on(handbook_bound_to(db.store.as_ref(), GUILD_ID, channels));
        let pool = fakes.block_on(sqlx::PgPool::connect(&db.url)).unwrap();

        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("engram.toml");
        let api = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|probe| probe.local_addr())
            .unwrap();
        std::fs::write(
            &config,
            config_toml(api, &db.url, &discord, &llm.base_url(), &collection, qdrant),
        )
        .unwrap();
        let mut cluster = Processes::new(config, dir.path().to_path_buf());
        for (name, roles) in processes {
            cluster.spawn(name, roles);
        }
        for (name, _) in processes {
            cluster.wait_running(name, Duration::from_secs(30));
        }
        let gateways = cluster
            .names()
            .filter(|name| name.starts_with("gateway"))
            .count();
        wait(
            &cluster,
            "every gateway to identify and the commands to be registered",
            Duration::from_secs(30),
            || discord.identifies() >= gateways && !discord.commands(None).is_empty(),
        );
        World {
            processes: cluster,
            fakes,
            discord,
            collection,
            server,
            _db: db,
            pool,
            api,
            _llm: llm,
            _dir: dir,
            postgres: private,
        }
    }

    /// Posts `bytes` as `name` in #team-0; returns the message's id.
    fn post_file(&self, name: &str, bytes: &[u8]) -> u64 {
        let (attachment, _) = self.discord.add_attachment(name, bytes);
        self.say(
            &UserMessage::new(channel_id(0), ALICE_ID, &format!("notes: {name}"))
                .with_attachment(attachment),
        )
    }

    /// Asks question `n` (round the channels, Alice and Bob in turn); returns its id.
    fn ask(&self, n: usize) -> u64 {
        let user = if n % 2 == 0 { ALICE_ID } else { BOB_ID };
        self.say(
            &UserMessage::new(
                channel_id(n as u64 % CHANNELS),
                user,
                "where do visitors park?",
            )
            .mentioning(BOT_ID),
        )
    }

    /// Asks question `n` in #team-`channel` (Alice and Bob in turn), whatever the gateways'
    /// sessions; returns its id.
    fn ask_in(&self, channel: u64, n: usize) -> u64 {
        let user = if n % 2 == 0 { ALICE_ID } else { BOB_ID };
        let event = self.discord.message_create(
            &UserMessage::new(channel_id(channel), user, "where do visitors park?")
                .mentioning(BOT_ID),
        );
        self.discord.dispatch("MESSAGE_CREATE", event.clone());
        event["id"].as_str().unwrap().parse().unwrap()
    }

    /// Posts a note in #team-0, whatever the gateways' sessions; returns the message's id.
    fn post_note(&self, name: &str) -> u64 {
        let body = format!("# {name}\n\nThe {name} notes are kept by the office team.\n");
        let (attachment, _) = self.discord.add_attachment(name, body.as_bytes());
        let event = self.discord.message_create(
            &UserMessage::new(channel_id(0), ALICE_ID, &format!("notes: {name}"))
                .with_attachment(attachment),
        );
        self.discord.dispatch("MESSAGE_CREATE", event.clone());
        event["id"].as_str().unwrap().parse().unwrap()
    }

    /// Platform events a gateway holds (taken, not yet acted on), by event id.
    fn held_by(&self, gateway: &str) -> Vec<String> {
        self.fakes.block_on(async {
            sqlx::query_scalar(
                "SELECT event_id FROM seen_events \
                 WHERE held_until IS NOT NULL AND handler LIKE $1",
            )
            .bind(format!("{gateway}:%"))
            .fetch_all(&self.pool)
            .await
            .unwrap()
        })
    }

    /// Who acted on a platform event (the gateway's job-worker-style name), once it has.
    fn handled_by(&self, event_id: &str) -> Option<String> {
        self.fakes.block_on(async {
            sqlx::query_scalar(
                "SELECT handler FROM seen_events \
                 WHERE event_id = $1 AND held_until IS NULL",
            )
            .bind(event_id)
            .fetch_optional(&self.pool)
            .await
            .unwrap()
            .flatten()
        })
    }

    fn say(&self, message: &UserMessage) -> u64 {
        let event = self.discord.message_create(message);
        let id = event["id"].as_str().unwrap().parse().unwrap();
        let gateways = self
            .processes
            .names()
            .filter(|name| name.starts_with("gateway"))
            .count();
        assert_eq!(
            self.discord.dispatch("MESSAGE_CREATE", event),
            gateways,
            "every gateway gets the event"
        );
        id
    }

    /// Waits until every question has a reply with sources and every file a ✅ and a result.
    fn wait_all_done(&self, questions: &[u64], files: &[u64]) {
        wait(
            &self.processes,
            "every answer and every file",
            Duration::from_secs(240),
            || {
                let found = replies(&self.discord);
                let answered = questions
                    .iter()
                    .filter(|q| {
                        found
                            .get(q)
                            .is_some_and(|r| r.iter().any(|m| m.content().contains("**Sources**")))
                    })
                    .count();
                let learned = files
                    .iter()
                    .filter(|p| {
                        self.discord.reactions(**p).contains(&"✅".to_string())
                            && found.get(p).is_some_and(|r| !r.is_empty())
                    })
                    .count();
                answered == questions.len() && learned == files.len()
            },
        );
        // Anything a second attempt or a second gateway would still write has time to show.
        std::thread::sleep(Duration::from_secs(2));
    }

    /// Every question has exactly one reply, the answer with its sources; every file exactly
    /// one result, a summary, and no ❌.
    fn assert_once_each(&self, questions: &[u64], files: &[u64]) {
        let found = replies(&self.discord);
        for question in questions {
            let answers = &found[question];
            assert_eq!(
                answers.len(),
                1,
                "one reply to question {question}: {answers:#?}"
            );
            let content = answers[0].content();
            assert!(
                content.starts_with(REPLY) && content.contains("**Sources**\n[1] [parking.md]"),
                "{content}"
            );
        }
        for file in files {
            let results = &found[file];
            assert_eq!(
                results.len(),
                1,
                "one result for file message {file}: {results:#?}"
            );
            assert!(
                results[0].content().starts_with("📚 Learned"),
                "{}",
                results[0].content()
            );
            assert!(!self.discord.reactions(*file).contains(&"❌".to_string()));
        }
    }

    /// The documents and jobs in the store.
    fn rows(&self) -> (Vec<DocumentRow>, Vec<JobRow>) {
        self.fakes.block_on(async {
            let documents =
                sqlx::query_as("SELECT id, file_name, status, chunks FROM documents ORDER BY id")
                    .fetch_all(&self.pool)
                    .await
                    .unwrap();
            let jobs =
                sqlx::query_as("SELECT id, kind, state, attempts, worker FROM jobs ORDER BY id")
                    .fetch_all(&self.pool)
                    .await
                    .unwrap();
            (documents, jobs)
        })
    }

    /// The name of the file an `ingest` job reads.
    fn file_of(&self, job: i64) -> Option<String> {
        self.fakes.block_on(async {
            sqlx::query_scalar(
                "SELECT d.file_name FROM jobs j \
                 JOIN documents d ON d.id = (j.payload::json ->> 'document_id')::bigint \
                 WHERE j.id = $1",
            )
            .bind(job)
            .fetch_optional(&self.pool)
            .await
            .unwrap()
        })
    }

    /// Points in Qdrant: of one document, or all.
    fn points(&self, document: Option<i64>) -> usize {
        self.fakes.block_on(self.collection.points(document))
    }

    /// Every document is indexed, once: its chunks are in the index exactly once, and no
    /// point is left over.
    fn assert_indexed_once(&self, documents: &[DocumentRow], files: usize) {
        assert_eq!(documents.len(), files, "{documents:#?}");
        let names: HashSet<&str> = documents.iter().map(|d| d.1.as_str()).collect();
        assert_eq!(names.len(), files, "one document per file");
        for (id, name, status, chunks) in documents {
            assert_eq!(status, "indexed", "{name}");
            assert!(*chunks > 0, "{name} has chunks");
            assert_eq!(
                self.points(Some(*id)),
                usize::try_from(*chunks).unwrap(),
                "{name}: each chunk in the index exactly once"
            );
        }
        let total: i64 = documents.iter().map(|d| d.3).sum();
        assert_eq!(self.points(None), usize::try_from(total).unwrap());
    }

    /// The private Qdrant server.
    fn server(&mut self) -> &mut QdrantServer {
        self.server.as_mut().expect("a world on a private Qdrant")
    }

    /// The private PostgreSQL server.
    fn postgres(&mut self) -> &mut PgServer {
        self.postgres
            .as_mut()
            .expect("a world on a private PostgreSQL")
    }

    /// Sessions LISTENing for job wake-ups on the store's server (the last statement a
    /// session ran is its LISTEN while it waits for notifications).
    fn listeners(&self) -> i64 {
        self.fakes.block_on(async {
            sqlx::query_scalar(
                "SELECT count(*) FROM pg_stat_activity \
                 WHERE datname = current_database() AND query LIKE 'LISTEN %'",
            )
            .fetch_one(&self.pool)
            .await
            .unwrap()
        })
    }
}

/// A document row: id, file name, status, chunks.
type DocumentRow = (i64, String, String, i64);

/// A job row: id, kind, state, attempts, worker.
type JobRow = (i64, String, String, i64, Option<String>);

/// One gateway, two chat and two ingest processes on PostgreSQL. 20 files are posted and 50
/// questions asked across 10 channels; as soon as a chat process and an ingest process each
/// hold a job that has run for a while, they are killed with SIGKILL. Their jobs' leases run
/// out, the surviving processes take them over, and the users see exactly one answer per
/// question and one result per file.
#[test]
fn separate_processes_on_postgres_answer_and_learn_exactly_once_through_sigkills() {
    let mut world = World::start(&[
        ("gateway", "gateway"),
        ("chat-1", "chat"),
        ("chat-2", "chat"),
        ("ingest-1", "ingest"),
        ("ingest-2", "ingest"),
    ]);

    // The parking notes first, so every answer has them as its source.
    let mut posted = vec![world.post_file("parking.md", PARKING)];
    world.wait_all_done(&[], &posted);

    // The other files and the questions at once.
    for (name, bytes) in files() {
        posted.push(world.post_file(&name, &bytes));
    }
    assert_eq!(posted.len(), FILES);
    let asked: Vec<u64> = (0..QUESTIONS).map(|n| world.ask(n)).collect();

    // SIGKILL one chat and one ingest process while each holds a job that has been running
    // for a while (so it is mid-answer or mid-file, not just finishing).
    let mut first_seen: HashMap<(i64, String), Instant> = HashMap::new();
    // By job kind: the process killed and the job it held.
    let mut killed: HashMap<String, (String, i64)> = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(90);
    while killed.len() < 2 {
        assert!(
            Instant::now() < deadline,
            "no chat and ingest jobs held long enough to kill their process: killed {killed:?}\n{}",
            world.processes.logs()
        );
        let (_, jobs) = world.rows();
        for (job, kind, state, _, worker) in jobs {
            let Some(worker) = worker.filter(|_| state == "running") else {
                continue;
            };
            let seen = *first_seen
                .entry((job, worker.clone()))
                .or_insert_with(Instant::now);
            // Whichever chat (ingest) process holds the job: both claim from the same queue.
            let held = match kind.as_str() {
                "answer" => Duration::from_millis(800),
                _ => Duration::from_millis(300),
            };
            if killed.contains_key(&kind) || seen.elapsed() < held {
                continue;
            }
            // A scan takes seconds to read, so the kill lands while it is being read (a note
            // could be done between this look and the kill).
            if kind == "ingest" && !world.file_of(job).is_some_and(|name| is_scan(&name)) {
                continue;
            }
            let Some(victim) = world.processes.name_of(&worker) else {
                continue;
            };
            if !world.processes.names().any(|name| name == victim) {
                continue; // killed already, its leases not yet run out
            }
            world.processes.sigkill(&victim);
            killed.insert(kind, (victim, job));
        }
        std::thread::sleep(Duration::from_millis(20));
    }

    // Everything ends, once: one answer per question, one result per file, one indexed
    // document per file with its chunks in the index once; every job done, and the jobs the
    // killed processes held were run again by the others.
    world.wait_all_done(&asked, &posted);
    world.assert_once_each(&asked, &posted);
    let (documents, jobs) = world.rows();
    world.assert_indexed_once(&documents, FILES);
    assert!(
        jobs.iter().all(|job| job.2 == "done"),
        "every job done: {jobs:#?}"
    );
    assert_eq!(jobs.iter().filter(|j| j.1 == "answer").count(), QUESTIONS);
    assert_eq!(jobs.iter().filter(|j| j.1 == "ingest").count(), FILES);
    for (kind, (victim, job)) in &killed {
        let (_, _, _, attempts, worker) = jobs.iter().find(|j| j.0 == *job).unwrap();
        assert!(
            *attempts >= 2,
            "the {kind} job {victim} held when killed ran again ({attempts} attempts)"
        );
        let finisher = worker.as_deref().and_then(|w| world.processes.name_of(w));
        assert_ne!(
            finisher.as_deref(),
            Some(victim.as_str()),
            "another process finished it"
        );
    }
    world.processes.stop();
}

/// Two gateway processes on the same shard (as during a rolling restart) both receive every
/// event; each question is still answered once and each file learned once, through the
/// `seen_events` table they share.
#[test]
fn two_gateways_receiving_every_event_act_on_each_once() {
    let mut world = World::start(&[
        ("gateway-1", "gateway"),
        ("gateway-2", "gateway"),
        ("chat-1", "chat"),
        ("ingest-1", "ingest"),
    ]);
    let posted = [
        world.post_file("parking.md", PARKING),
        world.post_file(
            "kettle.md",
            b"# The kettle\n\nDescale the kettle on Fridays.\n",
        ),
    ];
    world.wait_all_done(&[], &posted[..1]);
    let asked: Vec<u64> = (0..10).map(|n| world.ask(n)).collect();
    world.wait_all_done(&asked, &posted);
    world.assert_once_each(&asked, &posted);
    let (documents, jobs) = world.rows();
    world.assert_indexed_once(&documents, posted.len());
    assert_eq!(jobs.iter().filter(|j| j.1 == "answer").count(), asked.len());
    assert_eq!(
        jobs.iter().filter(|j| j.1 == "ingest").count(),
        posted.len()
    );
    world.processes.stop();
}

/// Qdrant stopped while the processes run (the real server, SIGTERM): `/readyz` answers 503,
/// a question is told the knowledge store is unavailable once its attempts are spent, and a
/// file posted meanwhile is retried until Qdrant is started again on its storage, then
/// learned.
#[test]
fn a_qdrant_outage_shows_in_readyz_answers_and_ingest_retries() {
    let mut world = World::start_on(
        &[
            ("gateway", "gateway,api"),
            ("chat-1", "chat"),
            ("ingest-1", "ingest"),
        ],
        Qdrant::Private,
    );
    let parking = world.post_file("parking.md", PARKING);
    world.wait_all_done(&[], &[parking]);
    let (status, body) = http_get(world.api, "/readyz");
    assert_eq!(status, 200, "{body}");

    world.server().terminate();
    let (status, body) = http_get(world.api, "/readyz");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("index"), "{body}");

    let question = world.ask(0);
    let mut told = String::new();
    wait(
        &world.processes,
        "the asker told why there is no answer",
        Duration::from_secs(60),
        || {
            told = replies(&world.discord)
                .get(&question)
                .and_then(|r| r.first())
                .map(|m| m.content().to_string())
                .unwrap_or_default();
            told.starts_with("⚠️")
        },
    );
    assert_eq!(
        told,
        "⚠️ I couldn't answer this time: the knowledge store is unavailable. Please ask again \
         later.",
        "the asker is told which part failed, without addresses or driver messages"
    );
    let (_, jobs) = world.rows();
    let answer = jobs.iter().find(|job| job.1 == "answer").unwrap();
    assert_eq!(answer.2, "dead", "{jobs:#?}");

    let kettle = world.post_file(
        "kettle.md",
        b"# The kettle\n\nDescale the kettle on Fridays.\n",
    );
    wait(
        &world.processes,
        "the kettle notes to fail once against the unreachable index",
        Duration::from_secs(30),
        || {
            let (_, jobs) = world.rows();
            jobs.iter()
                .filter(|job| job.1 == "ingest")
                .any(|job| job.3 >= 2)
        },
    );
    world.server().start_again();
    world.wait_all_done(&[], &[kettle]);
    let (documents, _) = world.rows();
    world.assert_indexed_once(&documents, 2);
    let (status, body) = http_get(world.api, "/readyz");
    assert_eq!(status, 200, "{body}");
    world.processes.stop();
}

/// Qdrant restarted mid-ingest on its storage (the real server: SIGKILL in one round, SIGTERM
/// in the next), with two ingest processes reading the corpus: while it is down `/readyz`
/// answers 503 naming the index; the documents it had acknowledged are all there when it is
/// back; the files being read are retried, and every file ends learned once: each document
/// indexed with each of its chunks in Qdrant exactly once, none half-indexed, no point left
/// over.
#[test]
fn qdrant_restarted_mid_ingest_leaves_every_file_indexed_once() {
    let mut world = World::start_on(
        &[
            ("gateway", "gateway,api"),
            ("ingest-1", "ingest"),
            ("ingest-2", "ingest"),
        ],
        Qdrant::Private,
    );
    let files = files();
    let (first, second) = files.split_at(files.len() / 2);
    let mut posted = Vec::new();
    for (batch, kill) in [(first, true), (second, false)] {
        let indexed_before = world.rows().0.iter().filter(|d| d.2 == "indexed").count();
        posted.extend(
            batch
                .iter()
                .map(|(name, bytes)| world.post_file(name, bytes)),
        );
        wait(
            &world.processes,
            "a file of this round indexed while others are still read",
            Duration::from_secs(120),
            || {
                let (documents, jobs) = world.rows();
                documents.iter().filter(|d| d.2 == "indexed").count() > indexed_before
                    && jobs
                        .iter()
                        .any(|job| job.1 == "ingest" && job.2 == "running")
            },
        );
        let failed_before: i64 = world.rows().1.iter().map(|job| job.3).sum();
        if kill {
            world.server().kill();
        } else {
            world.server().terminate();
        }
        let (status, body) = http_get(world.api, "/readyz");
        assert_eq!(status, 503, "{body}");
        let reason: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert!(
            reason["reason"].as_str().unwrap().starts_with("index:"),
            "{body}"
        );
        wait(
            &world.processes,
            "an ingest attempt to fail against the stopped Qdrant",
            Duration::from_secs(60),
            || {
                let (_, jobs) = world.rows();
                let attempts: i64 = jobs.iter().map(|job| job.3).sum();
                jobs.iter()
                    .any(|job| job.1 == "ingest" && job.2 == "failed")
                    || attempts > failed_before + 2
            },
        );
        world.server().start_again();
        // What Qdrant acknowledged before it went is all there: every document marked
        // indexed has each of its chunks once.
        let (documents, _) = world.rows();
        for (id, name, status, chunks) in &documents {
            if status == "indexed" {
                assert_eq!(
                    world.points(Some(*id)),
                    usize::try_from(*chunks).unwrap(),
                    "{name} indexed before the restart"
                );
            }
        }
        let (status, body) = http_get(world.api, "/readyz");
        assert_eq!(status, 200, "{body}");
    }

    world.wait_all_done(&[], &posted);
    world.assert_once_each(&[], &posted);
    let (documents, jobs) = world.rows();
    world.assert_indexed_once(&documents, files.len());
    assert!(
        jobs.iter().all(|job| job.2 == "done"),
        "every job done: {jobs:#?}"
    );
    assert!(
        jobs.iter().any(|job| job.1 == "ingest" && job.3 >= 2),
        "a file was retried: {jobs:#?}"
    );
    world.processes.stop();
}

/// The gateway that took a file in is killed while the file is read: the gateway started next
/// reports it (✅ and the summary), once, and a third one started later does not repeat it.
#[test]
fn a_gateway_killed_mid_ingest_leaves_the_report_to_the_next_one() {
    let mut world = World::start(&[("gateway-1", "gateway"), ("ingest-1", "ingest")]);
    // The two-page scan takes seconds to read.
    let corpus = crate::support::crate_dir().join("../shared/corpus/files");
    let scan = std::fs::read(corpus.join("05_scanned_gpl2.pdf")).unwrap();
    let posted = world.post_file("05_scanned_gpl2.pdf", &scan);
    wait(
        &world.processes,
        "the scan's ingest job to run",
        Duration::from_secs(30),
        || {
            let (_, jobs) = world.rows();
            jobs.iter()
                .any(|job| job.1 == "ingest" && job.2 == "running")
        },
    );
    world.processes.sigkill("gateway-1");
    assert!(
        !replies(&world.discord).contains_key(&posted),
        "reported before it was read"
    );

    world.processes.spawn("gateway-2", "gateway");
    world.wait_all_done(&[], &[posted]);
    world.assert_once_each(&[], &[posted]);
    assert!(
        !world.discord.reactions(posted).contains(&"⏳".to_string()),
        "⏳ taken off"
    );

    world.processes.spawn("gateway-3", "gateway");
    world
        .processes
        .wait_running("gateway-3", Duration::from_secs(30));
    std::thread::sleep(Duration::from_secs(2));
    world.assert_once_each(&[], &[posted]);
    let (documents, _) = world.rows();
    world.assert_indexed_once(&documents, 1);
    world.processes.stop();
}

/// Whether a bot message shows an answer on its way: text of its own, not yet its sources.
fn streaming(message: &StoredMessage) -> bool {
    let content = message.content();
    !content.is_empty()
        && !content.starts_with("💭")
        && !content.starts_with('⏳')
        && !content.contains("**Sources**")
}

/// PostgreSQL restarted (a fast shutdown, then started again on the same data) under a
/// gateway, two chat and an ingest process, while answers stream and the corpus is read.
/// While it is down `/readyz` answers 503 naming the store, and questions and files that
/// arrive are held by the gateway, not dropped. Once it is back every process carries on
/// (none exits), every job's listener LISTENs again (questions asked after the restart are
/// answered through wake-ups), and every question has exactly one answer with its sources,
/// every file one ✅ and one summary, every document its chunks in Qdrant exactly once.
#[test]
fn postgres_restarted_while_answers_stream_and_files_are_read_loses_nothing() {
    let mut world = World::start_with(
        &[
            ("gateway", "gateway,api"),
            ("chat-1", "chat"),
            ("chat-2", "chat"),
            ("ingest-1", "ingest"),
        ],
        Qdrant::Shared,
        Postgres::Private,
    );
    let mut posted = vec![world.post_file("parking.md", PARKING)];
    world.wait_all_done(&[], &posted);
    // Every worker pool's listener (two chat processes, one ingest process).
    let listening = world.listeners();
    assert!(listening >= 3, "{listening} sessions LISTEN");

    let corpus: Vec<(String, Vec<u8>)> = files().into_iter().take(11).collect();
    for (name, bytes) in &corpus {
        posted.push(world.post_file(name, bytes));
    }
    let scan_read = |world: &World| {
        let (_, jobs) = world.rows();
        jobs.iter().any(|job| {
            job.1 == "ingest"
                && job.2 == "running"
                && world.file_of(job.0).is_some_and(|name| is_scan(&name))
        })
    };
    wait(
        &world.processes,
        "a scan to be read",
        Duration::from_secs(120),
        || scan_read(&world),
    );
    let mut asked: Vec<u64> = (0..12).map(|n| world.ask(n)).collect();
    wait(
        &world.processes,
        "an answer streaming while a scan is read",
        Duration::from_secs(120),
        || {
            let found = replies(&world.discord);
            let mid_answer = asked
                .iter()
                .any(|q| found.get(q).is_some_and(|r| r.iter().any(streaming)));
            mid_answer && scan_read(&world)
        },
    );

    world.postgres().stop();
    let (status, body) = http_get(world.api, "/readyz");
    assert_eq!(status, 503, "{body}");
    let reason: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(
        reason["reason"].as_str().unwrap().starts_with("store:"),
        "{body}"
    );
    // Questions and files arriving while it is down.
    asked.extend((12..16).map(|n| world.ask(n)));
    posted.push(world.post_file(
        "kettle-care.md",
        b"# Kettle care\n\nThe office kettle is descaled on Fridays by facilities.\n",
    ));
    let gateway_log = world._dir.path().join("gateway.log");
    wait(
        &world.processes,
        "the gateway to hold the events until the store is back",
        Duration::from_secs(30),
        || {
            std::fs::read_to_string(&gateway_log)
                .is_ok_and(|log| log.contains("the store is unavailable; trying again"))
        },
    );
    world.postgres().start_again();

    wait(
        &world.processes,
        "/readyz to answer 200 again",
        Duration::from_secs(30),
        || http_get(world.api, "/readyz").0 == 200,
    );
    wait(
        &world.processes,
        "every worker pool to LISTEN again",
        Duration::from_secs(30),
        || world.listeners() >= listening,
    );
    // Asked after the restart: claimed through wake-ups on the new LISTEN sessions.
    asked.extend((16..20).map(|n| world.ask(n)));
    posted.push(world.post_file(
        "printer-paper.md",
        b"# Printer paper\n\nPaper for the printer is in the cupboard by the lifts.\n",
    ));

    world.wait_all_done(&asked, &posted);
    world.assert_once_each(&asked, &posted);
    let (documents, jobs) = world.rows();
    world.assert_indexed_once(&documents, posted.len());
    assert!(
        jobs.iter().all(|job| job.2 == "done"),
        "every job done: {jobs:#?}"
    );
    assert_eq!(jobs.iter().filter(|j| j.1 == "answer").count(), asked.len());
    assert_eq!(world.processes.exited(), Vec::<String>::new());
    world.processes.stop();
}

/// Two gateways on the same shard (as during a rolling restart) both receive every event; one
/// is SIGKILLed while a burst of questions and files arrives in one channel, holding events
/// it had taken but not acted on yet (their placeholders waiting for the channel's message
/// bucket). The other gateway, which Discord gave the same events, waits on the dead one's
/// holds and takes those events over when the holds run out. (Which gateway takes an event
/// first is a race, so the other is frozen through the burst: the one killed holds events.) A replacement gateway starts (a
/// new session: Discord replays nothing to it), then every connection is cut while more
/// events arrive: the sessions RESUME and Discord replays what they missed. Each question is
/// answered once, each file reported once, nothing is lost.
#[test]
fn a_gateway_killed_while_events_arrive_leaves_each_to_another_once() {
    let mut world = World::start(&[
        ("gateway-1", "gateway"),
        ("gateway-2", "gateway"),
        ("chat-1", "chat"),
        ("ingest-1", "ingest"),
    ]);
    let mut posted = vec![world.post_file("parking.md", PARKING)];
    world.wait_all_done(&[], &posted);

    // A burst in #team-0: the channel's message bucket (5 per 5 s) makes most placeholders
    // and reports wait, so each gateway holds events it has not acted on yet.
    let mut asked: Vec<u64> = Vec::new();
    world.processes.freeze("gateway-2");
    for n in 0..12 {
        asked.push(world.ask_in(0, n));
        if n % 4 == 0 {
            posted.push(world.post_note(&format!("burst-{n}")));
        }
    }
    let mut held = Vec::new();
    wait(
        &world.processes,
        "gateway-1 to hold events it has not acted on",
        Duration::from_secs(30),
        || {
            held = world.held_by("gateway-1");
            !held.is_empty()
        },
    );
    world.processes.sigkill("gateway-1");
    world.processes.thaw("gateway-2");
    // The dead session's share of what arrives next is kept for a RESUME that never comes.
    asked.extend((12..16).map(|n| world.ask_in(n as u64 % CHANNELS, n)));

    world.processes.spawn("gateway-3", "gateway");
    world
        .processes
        .wait_running("gateway-3", Duration::from_secs(30));
    // Its session ready (READY handled), so it has a session to resume when cut.
    world
        .processes
        .wait_logged("gateway-3", "Discord: connected", Duration::from_secs(30));
    // Every connection cut while more events arrive: each live session RESUMEs and Discord
    // replays the events it missed.
    assert!(world.discord.drop_connections() >= 2);
    asked.extend((16..20).map(|n| world.ask_in(n as u64 % CHANNELS, n)));
    posted.push(world.post_note("after-the-cut"));
    wait(
        &world.processes,
        "both live sessions to resume and get the events they missed",
        Duration::from_secs(60),
        || world.discord.resumes() >= 2 && world.discord.replayed_events() > 0,
    );

    world.wait_all_done(&asked, &posted);
    world.assert_once_each(&asked, &posted);
    let (documents, jobs) = world.rows();
    world.assert_indexed_once(&documents, posted.len());
    assert_eq!(jobs.iter().filter(|j| j.1 == "answer").count(), asked.len());
    assert_eq!(
        jobs.iter().filter(|j| j.1 == "ingest").count(),
        posted.len()
    );
    // What the killed gateway held and had not finished was acted on by another.
    let taken_over: Vec<(String, Option<String>)> = held
        .iter()
        .map(|event| (event.clone(), world.handled_by(event)))
        .collect();
    assert!(
        taken_over.iter().all(|(_, by)| by.is_some()),
        "every event acted on: {taken_over:?}"
    );
    assert!(
        taken_over.iter().any(|(_, by)| by
            .as_deref()
            .is_some_and(|by| !by.starts_with("gateway-1:"))),
        "another gateway took over an event gateway-1 held: {taken_over:?} ({} replies \
         found made already by their nonce)",
        world.discord.nonce_hits()
    );
    assert_eq!(world.processes.exited(), Vec::<String>::new());
    world.processes.stop();
}
