//! The `engram` command line as people and scripts use it: brains, jobs, config errors, help.

use std::process::{Command, Output};
use std::time::Duration;

use engram::jobs::{JobKind, NewJob};
use serde_json::json;

use crate::support::{engram, store_config};

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn brains_are_created_listed_shown_and_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let created = engram(dir.path(), &["brain", "create", "handbook"]);
    assert!(created.status.success(), "{}", stderr(&created));
    assert!(stdout(&created).contains("created brain `handbook`"));

    let again = engram(dir.path(), &["brain", "create", "handbook"]);
    assert!(!again.status.success());
    assert!(
        stderr(&again).contains("already exists"),
        "{}",
        stderr(&again)
    );

    let bad = engram(dir.path(), &["brain", "create", "Bad Name"]);
    assert!(!bad.status.success());
    assert!(
        stderr(&bad).contains("not a valid brain name"),
        "{}",
        stderr(&bad)
    );

    engram(
        dir.path(),
        &["brain", "create", "ops", "--tenant", "slack:T1"],
    );
    let listed = engram(dir.path(), &["brain", "list", "--json"]);
    let lines: Vec<serde_json::Value> = stdout(&listed)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(lines.len(), 1, "only the local tenant's brains: {lines:?}");
    assert_eq!(lines[0]["name"], "handbook");

    let info = engram(dir.path(), &["brain", "info", "handbook", "--json"]);
    let info: serde_json::Value = serde_json::from_str(stdout(&info).trim()).unwrap();
    assert_eq!(info["documents"], 0);

    let missing = engram(dir.path(), &["brain", "info", "nope"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        stderr(&missing).contains("no brain named `nope`"),
        "{}",
        stderr(&missing)
    );

    let deleted = engram(dir.path(), &["brain", "delete", "handbook"]);
    assert!(deleted.status.success(), "{}", stderr(&deleted));
    let listed = engram(dir.path(), &["brain", "list"]);
    assert!(
        stdout(&listed).contains("no brains yet"),
        "{}",
        stdout(&listed)
    );
}

#[tokio::test]
async fn dead_jobs_show_their_reason_and_can_be_retried() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/engram.db", dir.path().display());
    let store = engram::store::open(&store_config(&url)).await.unwrap();
    let id = store
        .enqueue(&NewJob::new(
            JobKind::Ingest,
            json!({"file": "scan.png"}),
            1,
        ))
        .await
        .unwrap()
        .id();
    let job = store
        .claim(JobKind::Ingest, "w", Duration::from_secs(30))
        .await
        .unwrap()
        .unwrap();
    store
        .fail(&job.lease(), "PDF is truncated: no trailer", None)
        .await
        .unwrap();
    store.close().await;

    let path = dir.path().to_path_buf();
    let run = move |args: &[&str]| {
        let path = path.clone();
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        async move {
            tokio::task::spawn_blocking(move || {
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                engram(&path, &args)
            })
            .await
            .unwrap()
        }
    };
    let listed = run(&["jobs", "--state", "dead"]).await;
    assert!(listed.status.success(), "{}", stderr(&listed));
    let text = stdout(&listed);
    assert!(text.contains("PDF is truncated: no trailer"), "{text}");
    assert!(text.contains("dead"), "{text}");

    let id_text = id.to_string();
    let retry_args = ["jobs", "retry", id_text.as_str()];
    let retried = run(&retry_args).await;
    assert!(retried.status.success(), "{}", stderr(&retried));
    assert!(stdout(&retried).contains("queued again"));
    let again = run(&retry_args).await;
    assert!(!again.status.success());
    assert!(
        stderr(&again).contains("only failed or dead jobs"),
        "{}",
        stderr(&again)
    );
    let unknown = run(&["jobs", "retry", "99999"]).await;
    assert!(
        stderr(&unknown).contains("no job 99999"),
        "{}",
        stderr(&unknown)
    );
    let queued = run(&["jobs", "--state", "queued", "--json"]).await;
    let job: serde_json::Value = serde_json::from_str(stdout(&queued).trim()).unwrap();
    assert_eq!(job["id"], id);
    assert_eq!(job["state"], "queued");
}

#[test]
fn a_bad_config_stops_with_the_key_and_status_1() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("engram.toml"),
        "[chat]\nedit_interval = 5\n",
    )
    .unwrap();
    let output = engram(dir.path(), &["brain", "list"]);
    assert_eq!(output.status.code(), Some(1));
    let message = stderr(&output);
    assert!(message.contains("chat.edit_interval"), "{message}");
    assert_eq!(message.lines().count(), 1, "one line: {message}");
}

#[test]
fn every_command_has_help() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &["--help"][..],
        &["serve", "--help"],
        &["demo", "--help"],
        &["brain", "--help"],
        &["brain", "create", "--help"],
        &["brain", "list", "--help"],
        &["brain", "info", "--help"],
        &["brain", "delete", "--help"],
        &["jobs", "--help"],
        &["jobs", "retry", "--help"],
        &["ingest", "--help"],
        &["extract", "--help"],
        &["ask", "--help"],
        &["doctor", "--help"],
        &["migrate", "--help"],
    ] {
        let output = engram(dir.path(), args);
        assert!(output.status.success(), "{args:?}: {}", stderr(&output));
        assert!(stdout(&output).contains("Usage: engram"), "{args:?}");
    }
    let roles = engram(dir.path(), &["serve", "--roles", "chat,pager"]);
    assert!(!roles.status.success());
    assert!(
        stderr(&roles).contains("unknown role `pager`"),
        "{}",
        stderr(&roles)
    );
}

#[test]
fn doctor_checks_the_store_and_never_prints_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let run = |command: &str| {
        let output = Command::new(env!("CARGO_BIN_EXE_engram"))
            .arg(command)
            .current_dir(dir.path())
            .env(
                "ENGRAM__STORE__URL",
                format!("sqlite://{}/d.db", dir.path().display()),
            )
            .output()
            .unwrap();
        let text = format!("{}{}", stdout(&output), stderr(&output));
        assert!(output.status.success(), "{text}");
        assert!(!text.contains("xoxb-doctor-secret"), "{text}");
        text
    };
    let fresh = run("doctor");
    assert!(fresh.contains("does not exist yet"), "{fresh}");
    assert!(!dir.path().join("d.db").exists(), "doctor creates nothing");
    let latest = engram::store::SQLITE_MIGRATIONS
        .iter()
        .map(|m| m.version)
        .max()
        .unwrap();
    let schema = format!("schema at version {latest}");
    assert!(run("migrate").contains(&schema));
    let migrated = run("doctor");
    assert!(migrated.contains("[ok  ] store"), "{migrated}");
    assert!(migrated.contains(&schema), "{migrated}");
    assert!(migrated.contains("[ok  ] slack"), "{migrated}");

    // A Slack token that cannot be checked fails the doctor, naming the key, never the token.
    let slack = Command::new(env!("CARGO_BIN_EXE_engram"))
        .arg("doctor")
        .current_dir(dir.path())
        .env(
            "ENGRAM__STORE__URL",
            format!("sqlite://{}/d.db", dir.path().display()),
        )
        .env("ENGRAM__SLACK__BOT_TOKEN", "xoxb-doctor-secret")
        .env("ENGRAM__SLACK__API_URL", "http://127.0.0.1:1/api")
        .output()
        .unwrap();
    let text = format!("{}{}", stdout(&slack), stderr(&slack));
    assert_eq!(slack.status.code(), Some(1), "{text}");
    // Nothing answers at slack.api_url: the network is named, not the token; and Socket Mode
    // without slack.app_token (which `serve` refuses) is flagged without any request.
    assert!(
        text.contains("[FAIL] slack ") && text.contains("check slack.api_url"),
        "{text}"
    );
    assert!(!text.contains("check slack.bot_token"), "{text}");
    assert!(
        text.contains("[FAIL] slack-app") && text.contains("needs slack.app_token"),
        "{text}"
    );
    assert!(!text.contains("xoxb-doctor-secret"), "{text}");

    let unreachable = Command::new(env!("CARGO_BIN_EXE_engram"))
        .arg("doctor")
        .current_dir(dir.path())
        .env(
            "ENGRAM__STORE__URL",
            "postgres://engram:pw-secret@127.0.0.1:1/engram",
        )
        .output()
        .unwrap();
    let text = format!("{}{}", stdout(&unreachable), stderr(&unreachable));
    assert_eq!(unreachable.status.code(), Some(1), "{text}");
    assert!(text.contains("[FAIL] store"), "{text}");
    assert!(!text.contains("pw-secret"), "{text}");
}
