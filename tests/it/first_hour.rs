//! A new user's first hour with the real `engram` binary: Ctrl-C during ingest, retrying a dead
//! job, folder walks, a closed stdout, which store a command uses, config mistakes, usage
//! errors, doctor's checks and what a closed embeddings port looks like.

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

use engram::brain::{BrainName, TenantKey};
use engram::config::{Config, Sources};
use engram::jobs::{JobKind, JobState, RetryPolicy};
use engram::telemetry::Metrics;
use engram::worker::{self, Shutdown, WorkerOptions};
use serde_json::Value;

use crate::ingest::extractor;
use crate::support::{engram, eventually};

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// `dir/engram.toml`: a SQLite store in `dir`, the given extractor, and `extra` keys.
fn configure(dir: &Path, extractor: &Path, extra: &str) {
    let store = format!("[store]\nurl = \"sqlite://{}/engram.db\"\n", dir.display());
    configure_with(dir, &store, extractor, extra);
}

/// `dir/engram.toml` with `store` (the `[store]` and `[index]` sections) first.
fn configure_with(dir: &Path, store: &str, extractor: &Path, extra: &str) {
    std::fs::write(
        dir.join("engram.toml"),
        format!(
            "{store}[ingest]\nextractor = \"{}\"\n{extra}",
            extractor.display()
        ),
    )
    .unwrap();
}

fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}")))
        .collect()
}

fn is_alive(pid: &str) -> bool {
    Command::new("kill")
        .args(["-0", pid])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

fn staged_copies(tmp: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(tmp)
        .unwrap()
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.to_string_lossy().contains("engram-ingest-"))
        .collect()
}

/// An extractor that starts a child of its own and hangs; the file it returns lists their
/// pids, which must be gone once engram stops.
fn hanging_extractor(dir: &Path) -> (PathBuf, PathBuf) {
    let pids = dir.join("pids");
    let hanging = dir.join("hanging-extract");
    std::fs::write(
        &hanging,
        format!(
            "#!/bin/sh\necho $$ >> {0}\nsleep 300 &\necho $! >> {0}\nwait\n",
            pids.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        &hanging,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    (hanging, pids)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_during_extract_kills_the_extractor() {
    let dir = tempfile::tempdir().unwrap();
    let (hanging, pids) = hanging_extractor(dir.path());
    configure(dir.path(), &hanging, "");
    let file = dir.path().join("plan.md");
    std::fs::write(&file, "# Plan\n").unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_engram"))
        .arg("--config")
        .arg(dir.path().join("engram.toml"))
        .arg("extract")
        .arg(&file)
        .current_dir(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let busy = eventually(Duration::from_secs(30), || async {
        std::fs::read_to_string(&pids).is_ok_and(|text| text.lines().count() >= 2)
    })
    .await;
    assert!(busy, "the extractor started");
    let started = std::fs::read_to_string(&pids).unwrap();
    assert!(Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap()
        .success());
    let output = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(130), "{}", stderr(&output));
    for pid in started.lines() {
        let gone = eventually(Duration::from_secs(10), || async { !is_alive(pid) }).await;
        assert!(gone, "extractor process {pid} was left running");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_during_ingest_cleans_up_and_the_next_run_continues() {
    let dir = tempfile::tempdir().unwrap();
    let store = format!(
        "[store]\nurl = \"sqlite://{}/engram.db\"\n",
        dir.path().display()
    );
    ctrl_c_during_ingest(dir.path(), &store).await;
}

/// The same on PostgreSQL (with Qdrant, which a PostgreSQL store needs): the jobs are given
/// back in the shared database at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_during_ingest_on_postgres_gives_the_jobs_back() {
    let dir = tempfile::tempdir().unwrap();
    let db = crate::support::TestDb::postgres().await;
    let collection = crate::qdrant_server::TestCollection::shared("ctrlc");
    let store = format!(
        "[store]\nurl = \"{}\"\n[index]\nkind = \"qdrant\"\nqdrant_url = \"{}\"\n\
         collection = \"{}\"\n",
        db.url, collection.url, collection.name
    );
    ctrl_c_during_ingest(dir.path(), &store).await;
}

async fn ctrl_c_during_ingest(dir: &Path, store: &str) {
    let tmp = dir.join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let (hanging, pids) = hanging_extractor(dir);
    configure_with(dir, store, &hanging, "[jobs]\nlease_ms = 60000\n");
    assert!(engram(dir, &["brain", "create", "notes"]).status.success());
    let files = dir.join("files");
    std::fs::create_dir(&files).unwrap();
    std::fs::write(files.join("a.md"), "# A\n\nThe first note.\n").unwrap();
    std::fs::write(files.join("b.md"), "# B\n\nThe second note, longer.\n").unwrap();

    let child = Command::new(env!("CARGO_BIN_EXE_engram"))
        .arg("--config")
        .arg(dir.join("engram.toml"))
        .args(["ingest", "notes"])
        .arg(&files)
        .current_dir(dir)
        .env("TMPDIR", &tmp)
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let busy = eventually(Duration::from_secs(60), || async {
        std::fs::read_to_string(&pids).is_ok_and(|text| text.lines().count() >= 2)
            && !staged_copies(&tmp).is_empty()
    })
    .await;
    assert!(busy, "the extractor started on a staged copy");
    let started: Vec<String> = std::fs::read_to_string(&pids)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let output = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    let message = stderr(&output);
    assert_eq!(output.status.code(), Some(130), "{message}");
    assert!(
        message.contains("interrupted: 0 of 2 files done, run again to continue"),
        "{message}"
    );
    assert_eq!(
        message
            .lines()
            .filter(|line| !line.trim().is_empty())
            .count(),
        1,
        "one line: {message}"
    );
    assert!(!message.contains("panicked"), "{message}");
    for pid in &started {
        let gone = eventually(Duration::from_secs(10), || async { !is_alive(pid) }).await;
        assert!(gone, "extractor process {pid} was left running");
    }
    assert!(
        staged_copies(&tmp).is_empty(),
        "staged copies left: {:?}",
        staged_copies(&tmp)
    );
    let jobs = engram(dir, &["jobs", "--json"]);
    let jobs = json_lines(&stdout(&jobs));
    assert_eq!(jobs.len(), 2, "{jobs:?}");
    assert!(
        jobs.iter().all(|job| job["state"] == "queued"),
        "released at once, not left running: {jobs:?}"
    );

    // The next run (with a working extractor) takes the same jobs and finishes them.
    configure_with(dir, store, &extractor(), "");
    let again = engram(dir, &["ingest", "--json", "notes", files.to_str().unwrap()]);
    assert!(again.status.success(), "{}", stderr(&again));
    let results = json_lines(&stdout(&again));
    assert_eq!(results.len(), 2);
    assert!(results.iter().all(|result| result["status"] == "ingested"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_ingest_job_keeps_its_bytes_and_is_retried() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("not-installed/engram-extract");
    configure(dir.path(), &missing, "[jobs]\nmax_attempts = 1\n");
    assert!(engram(dir.path(), &["brain", "create", "notes"])
        .status
        .success());
    let file = dir.path().join("plan.md");
    std::fs::write(&file, "# Plan\n\nShip the retry fix on Tuesday.\n").unwrap();
    let failed = engram(dir.path(), &["ingest", "notes", file.to_str().unwrap()]);
    assert_eq!(failed.status.code(), Some(1), "{}", stderr(&failed));
    assert!(
        stdout(&failed).contains("cannot start the extractor"),
        "{}",
        stdout(&failed)
    );
    assert!(!stderr(&failed).contains("WARN"), "{}", stderr(&failed));
    let dead = json_lines(&stdout(&engram(
        dir.path(),
        &["jobs", "--state", "dead", "--json"],
    )));
    assert_eq!(dead.len(), 1, "{dead:?}");
    let id = dead[0]["id"].to_string();

    // Fixed: the extractor is installed. The dead job comes back and runs to the end.
    configure(dir.path(), &extractor(), "");
    let retried = engram(dir.path(), &["jobs", "retry", &id]);
    assert!(retried.status.success(), "{}", stderr(&retried));
    assert!(stdout(&retried).contains("queued again"));
    let config = Config::load(&Sources {
        file: Some(dir.path().join("engram.toml")),
        ..Sources::default()
    })
    .unwrap();
    let store = engram::store::open(&config.store).await.unwrap();
    let pipeline = engram::app::ingest_pipeline(&config, store.clone())
        .await
        .unwrap();
    let shutdown = Shutdown::default();
    let workers = tokio::spawn(worker::run(
        store.clone(),
        Arc::new(pipeline),
        WorkerOptions {
            kind: JobKind::Ingest,
            concurrency: 1,
            lease: Duration::from_secs(30),
            retry: RetryPolicy::from(&config.jobs),
            name: "retrytest".into(),
            idle_recheck: Duration::from_millis(200),
        },
        shutdown.clone(),
        Arc::new(Metrics::default()),
    ));
    let job_id = dead[0]["id"].as_i64().unwrap();
    let settled = eventually(Duration::from_secs(60), || async {
        let state = store.job(job_id).await.unwrap().unwrap().state;
        matches!(state, JobState::Done | JobState::Dead)
    })
    .await;
    shutdown.stop_claiming.cancel();
    shutdown.abandon.cancel();
    workers.await.unwrap();
    assert!(settled, "the retried job ended");
    let job = store.job(job_id).await.unwrap().unwrap();
    assert_eq!(job.state, JobState::Done, "{job:?}");
    let tenant = store
        .find_tenant(&TenantKey::local())
        .await
        .unwrap()
        .unwrap();
    let brain = store
        .brain_by_name(tenant, &BrainName::parse("notes").unwrap())
        .await
        .unwrap()
        .unwrap();
    let stats = store.brain_stats(brain.id).await.unwrap();
    assert_eq!((stats.documents, stats.failed_documents), (1, 0));
    assert!(stats.chunks > 0);
    let sha = engram::ingest::sha256_hex(&std::fs::read(&file).unwrap());
    assert!(
        store.file(&sha).await.unwrap().is_none(),
        "indexed: the bytes are dropped"
    );
}

#[test]
fn folders_skip_hidden_ignored_and_unsupported_files_and_missing_paths_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    configure(dir.path(), &extractor(), "");
    assert!(engram(dir.path(), &["brain", "create", "notes"])
        .status
        .success());
    let notes = dir.path().join("notes");
    for folder in [".git", "build"] {
        std::fs::create_dir_all(notes.join(folder)).unwrap();
    }
    for (name, text) in [
        (".git/HEAD.md", "ref: refs/heads/main"),
        (".gitignore", "build/\n"),
        ("build/out.md", "generated"),
        (".secret.md", "hidden"),
        ("archive.zip", "PK"),
        ("plan.md", "# Plan\n\nShip on Tuesday.\n"),
    ] {
        std::fs::write(notes.join(name), text).unwrap();
    }
    let gone = dir.path().join("gone.md");
    let output = engram(
        dir.path(),
        &[
            "ingest",
            "--json",
            "notes",
            gone.to_str().unwrap(),
            notes.to_str().unwrap(),
        ],
    );
    let message = stderr(&output);
    let results = json_lines(&stdout(&output));
    assert_eq!(results.len(), 1, "only plan.md: {results:?}");
    assert!(results[0]["file"].as_str().unwrap().ends_with("plan.md"));
    assert_eq!(results[0]["status"], "ingested");
    assert!(
        message.contains("gone.md: no such file or folder"),
        "{message}"
    );
    assert!(
        message.contains("skipped 1 file of types engram does not read (.zip)"),
        "{message}"
    );
    assert_eq!(
        output.status.code(),
        Some(1),
        "a path could not be read: {message}"
    );
    let documents = engram(dir.path(), &["brain", "info", "notes", "--json"]);
    let info: Value = serde_json::from_str(stdout(&documents).trim()).unwrap();
    assert_eq!(
        info["failed_documents"], 0,
        "skipped files are not failures"
    );

    // Nothing readable, or only a link loop: said, and exit status 1.
    let zips = dir.path().join("zips");
    std::fs::create_dir(&zips).unwrap();
    std::fs::write(zips.join("a.zip"), "PK").unwrap();
    let looped = dir.path().join("loop");
    std::fs::create_dir(&looped).unwrap();
    std::os::unix::fs::symlink(&looped, looped.join("again")).unwrap();
    for (folder, says) in [
        (&zips, "1 file of types engram does not read"),
        (&looped, "symbolic link loop"),
    ] {
        let output = engram(dir.path(), &["ingest", "notes", folder.to_str().unwrap()]);
        let message = stderr(&output);
        assert_eq!(output.status.code(), Some(1), "{message}");
        assert!(message.contains(says), "{message}");
        assert!(message.contains("nothing to ingest"), "{message}");
    }

    // A file named on the command line is taken whatever its name: the extractor decides by
    // its content (this "zip" is text).
    let named = engram(
        dir.path(),
        &[
            "ingest",
            "--json",
            "notes",
            zips.join("a.zip").to_str().unwrap(),
        ],
    );
    let results = json_lines(&stdout(&named));
    assert_eq!(results.len(), 1, "{}", stderr(&named));
    assert!(results[0]["file"].as_str().unwrap().ends_with("a.zip"));
}

/// Runs `engram ARGS` with its stdout closed before it writes anything.
fn with_stdout_closed(dir: &Path, args: &[&str]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_engram"))
        .arg("--config")
        .arg(dir.join("engram.toml"))
        .args(args)
        .current_dir(dir)
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let mut errors = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut errors)
        .unwrap();
    let status = child.wait().unwrap();
    Output {
        status,
        stdout: Vec::new(),
        stderr: errors.into_bytes(),
    }
}

#[test]
fn a_closed_stdout_ends_quietly() {
    let dir = tempfile::tempdir().unwrap();
    configure(dir.path(), &extractor(), "");
    assert!(engram(dir.path(), &["brain", "create", "notes"])
        .status
        .success());
    let text = dir.path().join("long.txt");
    let mut file = std::fs::File::create(&text).unwrap();
    for n in 0..5000 {
        writeln!(file, "Line {n} of a long text that goes on.").unwrap();
    }
    for args in [
        &["brain", "list"][..],
        &["jobs"],
        &["extract", text.to_str().unwrap()],
    ] {
        let output = with_stdout_closed(dir.path(), args);
        assert_eq!(
            output.status.code(),
            Some(0),
            "{args:?}: {}",
            stderr(&output)
        );
        assert_eq!(stderr(&output), "", "{args:?}");
    }
}

#[test]
fn read_only_commands_never_create_a_store_and_say_where_they_looked() {
    let dir = tempfile::tempdir().unwrap();
    let elsewhere = dir.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    std::fs::write(
        elsewhere.join("engram.toml"),
        "[store]\nurl = \"sqlite://data/engram.db\"\n",
    )
    .unwrap();
    for args in [
        &["brain", "list"][..],
        &["brain", "info", "notes"],
        &["jobs"],
        &["ask", "notes", "what is the plan?"],
        &["ingest", "notes", "plan.md"],
    ] {
        let output = engram(&elsewhere, args);
        let message = stderr(&output);
        assert_eq!(output.status.code(), Some(1), "{args:?}: {message}");
        let expected = format!("no store at {}", elsewhere.join("data/engram.db").display());
        assert!(message.contains(&expected), "{args:?}: {message}");
        assert!(
            message.contains("relative to the current folder"),
            "{message}"
        );
        assert!(!elsewhere.join("data").exists(), "{args:?} created a store");
    }
    // `brain create` starts one, and `brain list` then says how to reach chat tenants.
    assert!(engram(&elsewhere, &["brain", "create", "notes"])
        .status
        .success());
    assert!(elsewhere.join("data/engram.db").exists());
    let listed = engram(&elsewhere, &["brain", "list", "--tenant", "slack:T1"]);
    assert!(
        stdout(&listed).contains("--tenant discord:<guild id>"),
        "{}",
        stdout(&listed)
    );
}

#[test]
fn config_mistakes_point_at_the_line_and_usage_errors_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("engram.toml"),
        "[store]\nurl = \"sqlite://x.db\n",
    )
    .unwrap();
    let broken = engram(dir.path(), &["brain", "list"]);
    let message = stderr(&broken);
    assert_eq!(broken.status.code(), Some(1), "{message}");
    assert!(message.contains("line 2, column"), "{message}");
    assert_eq!(message.trim().lines().count(), 1, "{message}");

    let missing = Command::new(env!("CARGO_BIN_EXE_engram"))
        .args(["--config", "nope.toml", "brain", "list"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let message = stderr(&missing);
    assert_eq!(missing.status.code(), Some(1), "{message}");
    assert_eq!(
        message.trim(),
        "engram: cannot read config file nope.toml: no such file"
    );

    let usage = engram(dir.path(), &["brain", "frobnicate"]);
    assert_eq!(usage.status.code(), Some(2), "{}", stderr(&usage));
}

#[test]
fn doctor_fails_a_missing_extractor_and_names_a_timeout() {
    let dir = tempfile::tempdir().unwrap();
    // A server that accepts connections and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = silent.local_addr().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_engram"))
        .arg("doctor")
        .current_dir(dir.path())
        .env(
            "ENGRAM__STORE__URL",
            format!("sqlite://{}/d.db", dir.path().display()),
        )
        .env(
            "ENGRAM__INGEST__EXTRACTOR",
            dir.path().join("no-such-extract"),
        )
        .env("ENGRAM__SLACK__BOT_TOKEN", "xoxb-doctor-secret")
        .env("ENGRAM__SLACK__APP_TOKEN", "xapp-doctor-secret")
        .env("ENGRAM__SLACK__API_URL", format!("http://{address}/api"))
        .output()
        .unwrap();
    drop(silent);
    let text = format!("{}{}", stdout(&output), stderr(&output));
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(
        text.contains("[FAIL] extractor") && text.contains("cannot start the extractor"),
        "{text}"
    );
    assert!(
        text.contains("[FAIL] slack") && text.contains("timed out"),
        "{text}"
    );
    assert!(!text.contains("check slack.bot_token"), "{text}");
    assert!(!text.contains("doctor-secret"), "{text}");
}

#[test]
fn embeddings_on_a_closed_port_fail_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    configure(
        dir.path(),
        &extractor(),
        &format!(
            "[embeddings]\nbase_url = \"http://127.0.0.1:{port}/v1\"\n\
             [jobs]\nmax_attempts = 2\nbackoff_base_ms = 10\nbackoff_max_ms = 10\n"
        ),
    );
    assert!(engram(dir.path(), &["brain", "create", "notes"])
        .status
        .success());
    let file = dir.path().join("plan.md");
    std::fs::write(&file, "# Plan\n\nShip on Tuesday.\n").unwrap();
    let output = engram(dir.path(), &["ingest", "notes", file.to_str().unwrap()]);
    let message = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{message}");
    let result = stdout(&output);
    assert!(
        result.contains("failed") && result.contains("unavailable"),
        "{result}"
    );
    assert!(!message.contains("WARN"), "no wall of warnings: {message}");
    assert_eq!(message.trim().lines().count(), 1, "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_writing_one_sqlite_file_wait_for_each_other() {
    use engram::brain::{AddedDocument, NewDocument};
    use engram::index::embedded::EmbeddedIndex;
    use engram::index::{Index, IndexedDocument};
    use engram::ingest::chunk::{chunk_pages, ChunkOptions, PageText};

    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/engram.db", dir.path().display());
    let config = crate::support::store_config(&url);
    let store = engram::store::open(&config).await.unwrap();
    let tenant = store.ensure_tenant(&TenantKey::local()).await.unwrap();
    let brain = store
        .create_brain(tenant, &BrainName::parse("notes").unwrap())
        .await
        .unwrap();
    let mut documents = Vec::new();
    for name in ["a.md", "b.md"] {
        let added = store
            .add_document(&NewDocument {
                brain: brain.id,
                sha256: engram::ingest::sha256_hex(name.as_bytes()),
                file_name: name.into(),
                source_link: None,
                scope: String::new(),
                added_by: None,
            })
            .await
            .unwrap();
        let AddedDocument::Pending(document) = added else {
            panic!("new")
        };
        documents.push(document.id);
    }
    let chunks = chunk_pages(
        &[PageText {
            page: None,
            text: "# Notes\n\nEvery write reads first, then writes. ".repeat(40),
        }],
        &ChunkOptions::default(),
    );
    // Two indexes with their own connections, as `engram serve` and `engram ingest` have: each
    // re-indexes its document over and over while the other does the same.
    let mut writers = Vec::new();
    for document in documents {
        let index = EmbeddedIndex::open(&config, None).await.unwrap();
        let chunks = chunks.clone();
        let brain = brain.id;
        writers.push(tokio::spawn(async move {
            for _ in 0..40 {
                index
                    .index_document(IndexedDocument {
                        brain,
                        document,
                        pages: 1,
                        ocr_pages: 0,
                        chunks: &chunks,
                        vectors: None,
                    })
                    .await?;
            }
            Ok::<(), engram::index::IndexError>(())
        }));
    }
    for writer in writers {
        let result = writer.await.unwrap();
        assert!(result.is_ok(), "a writer failed: {result:?}");
    }
}

#[test]
fn past_the_budget_a_failed_files_bytes_are_not_kept_and_posting_it_again_works() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("not-installed/engram-extract");
    configure(
        dir.path(),
        &missing,
        "kept_failed_bytes = 10\n[jobs]\nmax_attempts = 1\n",
    );
    assert!(engram(dir.path(), &["brain", "create", "notes"])
        .status
        .success());
    let file = dir.path().join("plan.md");
    std::fs::write(&file, "# Plan\n\nShip the retry fix on Tuesday.\n").unwrap();
    let failed = engram(dir.path(), &["ingest", "notes", file.to_str().unwrap()]);
    assert_eq!(failed.status.code(), Some(1));
    let line = stdout(&failed);
    assert!(
        line.contains("cannot start the extractor")
            && line.contains("its bytes were not kept for a retry")
            && line.contains("ingest.kept_failed_bytes"),
        "{line}"
    );
    configure(dir.path(), &extractor(), "");
    let again = engram(
        dir.path(),
        &["ingest", "--json", "notes", file.to_str().unwrap()],
    );
    assert!(again.status.success(), "{}", stderr(&again));
    assert_eq!(json_lines(&stdout(&again))[0]["status"], "ingested");
}

/// A failed document's bytes stay for a retry; an indexed one's go; the budget's counters and
/// the hourly prune see them. On both stores.
async fn failed_files_keep_their_bytes_until_they_are_not_needed(db: crate::support::TestDb) {
    use engram::brain::{AddedDocument, NewDocument};
    use engram::store::Retention;

    let store = db.store();
    let tenant = store.ensure_tenant(&TenantKey::local()).await.unwrap();
    let brain = store
        .create_brain(tenant, &BrainName::parse("notes").unwrap())
        .await
        .unwrap();
    let bytes = b"some bytes that failed".to_vec();
    let sha = engram::ingest::sha256_hex(&bytes);
    let AddedDocument::Pending(document) = store
        .add_document(&NewDocument {
            brain: brain.id,
            sha256: sha.clone(),
            file_name: "f.md".into(),
            source_link: None,
            scope: String::new(),
            added_by: None,
        })
        .await
        .unwrap()
    else {
        panic!("new")
    };
    store.put_file(&sha, &bytes).await.unwrap();
    store
        .fail_document(document.id, "no extractor")
        .await
        .unwrap();
    store.release_file(&sha).await.unwrap();
    assert_eq!(store.file(&sha).await.unwrap(), Some(bytes.clone()));
    assert_eq!(
        store.file_size(&sha).await.unwrap(),
        Some(bytes.len() as u64)
    );
    assert_eq!(store.failed_file_bytes().await.unwrap(), bytes.len() as u64);
    let far_future = engram::clock::now_ms() + 10 * 3_600_000;
    let pruned = store
        .prune(far_future, &Retention::default())
        .await
        .unwrap();
    assert_eq!(pruned.files, 0, "still needed by the failed document");
    assert!(store.file(&sha).await.unwrap().is_some());

    // Past the budget the bytes are given up.
    store.drop_file_bytes(&sha).await.unwrap();
    assert_eq!(store.file(&sha).await.unwrap(), None);
    assert_eq!(store.failed_file_bytes().await.unwrap(), 0);

    // Bytes nobody needs (the brain was deleted) are pruned.
    store.put_file(&sha, &bytes).await.unwrap();
    store.delete_brain(brain.id).await.unwrap();
    let pruned = store
        .prune(far_future, &Retention::default())
        .await
        .unwrap();
    assert_eq!(pruned.files, 1);
    assert_eq!(store.file(&sha).await.unwrap(), None);
}

#[tokio::test]
async fn failed_files_keep_their_bytes_on_sqlite() {
    failed_files_keep_their_bytes_until_they_are_not_needed(crate::support::TestDb::sqlite().await)
        .await;
}

#[tokio::test]
async fn failed_files_keep_their_bytes_on_postgres() {
    failed_files_keep_their_bytes_until_they_are_not_needed(
        crate::support::TestDb::postgres().await,
    )
    .await;
}
