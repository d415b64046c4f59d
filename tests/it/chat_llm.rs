//! The streaming chat client (real async-openai) against a local fake OpenAI-compatible server,
//! and each fault of the chat endpoint as the asker and the admin see it: `engram ask` (the real
//! binary) prints the fault's notice and the quoted passages, `--json` carries an `error`, the
//! exit status is 1; `engram doctor` names what fails.

use std::path::Path;
use std::process::Output;
use std::sync::atomic::Ordering;
use std::time::Duration;

use engram::config::{LlmConfig, Secret};
use engram::llm::{ChatMessage, ChatModel, LlmError, LlmFault, Role};
use serde_json::Value;

use crate::fakes::openai::{self as fake_openai, Behaviour};

fn model(base_url: String, first_token_timeout_ms: u64) -> ChatModel {
    ChatModel::from_config(&LlmConfig {
        base_url,
        api_key: Secret::new("sk-chat-key-never-shown"),
        model: "fake-model".into(),
        first_token_timeout_ms,
        total_timeout_ms: 20_000,
        system_prompt: String::new(),
        context_tokens: 4000,
        prices: Vec::new(),
    })
    .unwrap()
    .unwrap()
}

fn question() -> Vec<ChatMessage> {
    vec![ChatMessage {
        role: Role::User,
        content: "What is the answer?".into(),
    }]
}

fn reply() -> Behaviour {
    Behaviour {
        reply: "The answer is forty-two, see [1].".into(),
        token_interval: Duration::from_millis(5),
        ..Behaviour::default()
    }
}

#[tokio::test]
async fn a_streamed_answer_is_assembled_with_its_usage() {
    let fake = fake_openai::start(reply()).await;
    let mut pieces = Vec::new();
    let completion = model(fake.base_url(), 5000)
        .stream(&question(), None, |piece| pieces.push(piece.to_string()))
        .await
        .unwrap();
    assert_eq!(completion.text, "The answer is forty-two, see [1].");
    assert_eq!(pieces.concat(), completion.text);
    assert_eq!(pieces.len(), 6, "one piece per streamed word");
    let usage = completion.usage.expect("usage was asked for in the stream");
    assert_eq!((usage.prompt_tokens, usage.completion_tokens), (12, 6));
    assert_eq!(completion.model, "fake-model");
    assert_eq!(
        fake.inputs.lock().unwrap().as_slice(),
        ["What is the answer?"]
    );
}

#[tokio::test]
async fn server_errors_before_the_first_token_are_retried() {
    let fake = fake_openai::start(Behaviour {
        fail_first: 2,
        ..reply()
    })
    .await;
    let completion = model(fake.base_url(), 5000)
        .stream(&question(), None, |_| {})
        .await
        .unwrap();
    assert_eq!(completion.text, "The answer is forty-two, see [1].");
    assert_eq!(fake.requests.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn a_connection_dropped_mid_stream_keeps_the_partial_answer() {
    let fake = fake_openai::start(Behaviour {
        drop_after_words: Some(3),
        ..reply()
    })
    .await;
    let mut shown = String::new();
    let error = model(fake.base_url(), 5000)
        .stream(&question(), None, |piece| shown.push_str(piece))
        .await
        .unwrap_err();
    let LlmError::Interrupted { partial, .. } = &error else {
        panic!("expected an interrupted answer, got {error:?}")
    };
    assert_eq!(partial, "The answer is ");
    assert_eq!(&shown, partial);
    assert_eq!(
        fake.requests.load(Ordering::SeqCst),
        1,
        "never retried after the first token"
    );
}

#[tokio::test]
async fn the_first_token_timeout_is_honoured() {
    let fake = fake_openai::start(Behaviour {
        first_token_delay: Duration::from_secs(30),
        ..reply()
    })
    .await;
    let error = model(fake.base_url(), 200)
        .stream(&question(), None, |_| {})
        .await
        .unwrap_err();
    assert!(
        matches!(&error, LlmError::Unavailable(m) if m.detail.contains("first token")),
        "{error:?}"
    );
    assert_eq!(
        fake.requests.load(Ordering::SeqCst),
        3,
        "retried: no token had arrived"
    );
}

#[tokio::test]
async fn a_refused_key_is_not_retried_and_not_shown() {
    let fake = fake_openai::start(Behaviour {
        always_status: Some(401),
        ..reply()
    })
    .await;
    let error = model(fake.base_url(), 5000)
        .stream(&question(), None, |_| {})
        .await
        .unwrap_err();
    assert!(matches!(error, LlmError::Rejected(_)), "{error:?}");
    assert_eq!(fake.requests.load(Ordering::SeqCst), 1);
    assert!(!error.to_string().contains("sk-chat-key-never-shown"));
}

#[tokio::test]
async fn each_refusal_is_named_and_only_passing_trouble_is_retried() {
    // 429s and server errors: the first request and async-openai's three retries.
    for (status, fault, attempts) in [
        (401, LlmFault::Key, 1),
        (403, LlmFault::Permission, 1),
        (404, LlmFault::Model, 1),
        (400, LlmFault::Refused, 1),
        (429, LlmFault::RateLimited, 4),
        (503, LlmFault::Server, 4),
    ] {
        let fake = fake_openai::start(Behaviour {
            always_status: Some(status),
            ..reply()
        })
        .await;
        let error = model(fake.base_url(), 5000)
            .stream(&question(), None, |_| {})
            .await
            .unwrap_err();
        assert_eq!(error.fault(), fault, "HTTP {status}: {error:?}");
        assert_eq!(
            fake.requests.load(Ordering::SeqCst),
            attempts,
            "HTTP {status}"
        );
    }
}

#[tokio::test]
async fn a_server_that_never_answers_is_a_timeout() {
    let fake = fake_openai::start(Behaviour {
        hang: true,
        ..reply()
    })
    .await;
    let error = model(fake.base_url(), 200)
        .stream(&question(), None, |_| {})
        .await
        .unwrap_err();
    assert_eq!(error.fault(), LlmFault::Timeout, "{error:?}");
}

#[tokio::test]
async fn nothing_listening_is_unreachable() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let error = model(format!("http://{addr}/v1"), 2000)
        .stream(&question(), None, |_| {})
        .await
        .unwrap_err();
    assert_eq!(error.fault(), LlmFault::Unreachable, "{error:?}");
}

/// A folder with a config (SQLite store, the extractor, `extra`) and a `team` brain that knows
/// the demo handbook.
fn brain_with_handbook(dir: &Path, extra: &str) {
    std::fs::write(
        dir.join("engram.toml"),
        format!(
            "[store]\nurl = \"sqlite://{}/engram.db\"\n[ingest]\nextractor = \"{}\"\n{extra}",
            dir.display(),
            crate::ingest::extractor().display()
        ),
    )
    .unwrap();
    let handbook = crate::support::crate_dir().join("demo/handbook.md");
    for args in [
        vec!["brain", "create", "team"],
        vec!["ingest", "team", handbook.to_str().unwrap()],
    ] {
        let output = crate::support::engram(dir, &args);
        assert!(output.status.success(), "{args:?}: {output:?}");
    }
}

fn llm_section(base_url: &str, model: &str) -> String {
    format!(
        "[llm]\nbase_url = \"{base_url}\"\napi_key = \"sk-wrong-key-never-shown\"\n\
         model = \"{model}\"\nfirst_token_timeout_ms = 1500\ntotal_timeout_ms = 4000\n"
    )
}

async fn engram_async(dir: &Path, args: &[&str]) -> Output {
    let dir = dir.to_path_buf();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        crate::support::engram(&dir, &args)
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ask_names_each_llm_fault_then_quotes_the_passages_and_exits_1() {
    let cases = [
        (
            Behaviour {
                api_key: Some("sk-the-right-key".into()),
                ..reply()
            },
            "The LLM rejected engram's API key — an admin can run `engram doctor`.",
        ),
        (
            Behaviour {
                always_status: Some(403),
                ..reply()
            },
            "The LLM refused engram's API key access to its model",
        ),
        (
            Behaviour {
                models: vec!["gpt-4o".into()],
                ..reply()
            },
            "The LLM does not know the configured model",
        ),
        (
            Behaviour {
                always_status: Some(429),
                ..reply()
            },
            "The LLM is rate-limiting engram",
        ),
        (
            Behaviour {
                hang: true,
                ..reply()
            },
            "The LLM did not answer in time",
        ),
    ];
    for (behaviour, notice) in cases {
        let fake = fake_openai::start(behaviour).await;
        let dir = tempfile::tempdir().unwrap();
        brain_with_handbook(dir.path(), &llm_section(&fake.base_url(), "gpt-4o-mini"));

        let text = engram_async(dir.path(), &["ask", "team", "How do I request vacation?"]).await;
        let stdout = String::from_utf8_lossy(&text.stdout);
        let stderr = String::from_utf8_lossy(&text.stderr);
        assert_eq!(text.status.code(), Some(1), "{notice}: {stdout} {stderr}");
        assert!(stdout.starts_with(&format!("⚠️ {notice}")), "{stdout}");
        assert!(
            stdout.contains("Here is what the documents say:\n\n> "),
            "the passages follow the notice: {stdout}"
        );
        assert!(stdout.contains("Sources:\n  [1] handbook.md"), "{stdout}");
        assert!(!stdout.contains("No LLM is configured"), "{stdout}");
        assert!(stderr.contains(notice), "{stderr}");
        for output in [&stdout, &stderr] {
            assert!(!output.contains("sk-wrong-key-never-shown"));
        }

        let json = engram_async(
            dir.path(),
            &["ask", "--json", "team", "How do I request vacation?"],
        )
        .await;
        assert_eq!(json.status.code(), Some(1));
        let answer: Value = serde_json::from_slice(&json.stdout).unwrap();
        assert!(
            answer["error"].as_str().unwrap().starts_with(notice),
            "{answer}"
        );
        assert!(
            answer["answer"].as_str().unwrap().contains("> "),
            "{answer}"
        );
        assert_eq!(answer["sources"][0]["cited"], true, "{answer}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_llm_answer_lists_only_the_sources_it_cites() {
    let fake = fake_openai::start(Behaviour {
        reply: "Ask in the HR portal [2].".into(),
        ..Behaviour::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    brain_with_handbook(dir.path(), &llm_section(&fake.base_url(), "gpt-4o-mini"));
    let release = crate::support::crate_dir().join("demo/release-notes.txt");
    assert!(
        crate::support::engram(dir.path(), &["ingest", "team", release.to_str().unwrap()])
            .status
            .success()
    );
    let question = "What changed in the release, and how do I request vacation?";
    let json = engram_async(dir.path(), &["ask", "--json", "team", question]).await;
    assert!(json.status.success(), "{json:?}");
    let answer: Value = serde_json::from_slice(&json.stdout).unwrap();
    let sources = answer["sources"].as_array().unwrap();
    assert!(sources.len() >= 2, "{answer}");
    assert_eq!(sources[0]["n"], 2, "the cited source comes first: {answer}");
    assert_eq!(sources[0]["cited"], true);
    assert!(sources[1..].iter().all(|s| s["cited"] == false), "{answer}");
    assert!(answer["error"].is_null());

    let text = engram_async(dir.path(), &["ask", "team", question]).await;
    let stdout = String::from_utf8_lossy(&text.stdout);
    let listed = stdout.split("Sources:\n").nth(1).unwrap_or_default();
    assert_eq!(listed.lines().count(), 1, "only the cited source: {stdout}");
    assert!(listed.starts_with("  [2] "), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_makes_one_real_request_per_endpoint_and_names_what_fails() {
    let cases: [(Behaviour, &str, &str); 5] = [
        (reply(), "gpt-4o-mini", "[ok  ] llm"),
        (
            Behaviour {
                api_key: Some("sk-the-right-key".into()),
                ..reply()
            },
            "gpt-4o-mini",
            "the API key was rejected (HTTP 401): check llm.api_key",
        ),
        (
            Behaviour {
                models: vec!["gpt-4o".into()],
                ..reply()
            },
            "gpt-5-nonexistent",
            "model `gpt-5-nonexistent` not found (HTTP 404): check llm.model",
        ),
        (
            Behaviour {
                hang: true,
                ..reply()
            },
            "gpt-4o-mini",
            "no answer within 5 s",
        ),
        (
            Behaviour {
                always_status: Some(403),
                ..reply()
            },
            "gpt-4o-mini",
            "the API key may not use model `gpt-4o-mini` (HTTP 403)",
        ),
    ];
    for (behaviour, model, expected) in cases {
        let fake = fake_openai::start(behaviour).await;
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("engram.toml"),
            format!(
                "[store]\nurl = \"sqlite://{}/engram.db\"\n{}",
                dir.path().display(),
                llm_section(&fake.base_url(), model)
            ),
        )
        .unwrap();
        let output = engram_async(dir.path(), &["doctor"]).await;
        let stdout = String::from_utf8_lossy(&output.stdout);
        let line = stdout
            .lines()
            .find(|line| line.contains("] llm "))
            .unwrap_or_default();
        assert!(line.contains(expected), "{expected}: {stdout}");
        assert!(!stdout.contains("sk-wrong-key-never-shown"));
        assert!(
            !stdout.contains("sk-***"),
            "the provider's echo of the key is not shown"
        );
        assert_eq!(
            fake.requests.load(Ordering::SeqCst),
            1,
            "one request, no retry: {stdout}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_names_an_unreachable_endpoint() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("engram.toml"),
        format!(
            "[store]\nurl = \"sqlite://{}/engram.db\"\n{}",
            dir.path().display(),
            llm_section(&format!("http://{addr}/v1"), "gpt-4o-mini")
        ),
    )
    .unwrap();
    let output = engram_async(dir.path(), &["doctor"]).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("[FAIL] llm ") && stdout.contains("unreachable ("),
        "{stdout}"
    );
    assert!(!output.status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_checks_the_embeddings_width_against_the_config() {
    let fake = fake_openai::start(Behaviour {
        dimensions: Some(384),
        ..Behaviour::default()
    })
    .await;
    for (dimensions, expected) in [
        (384, "[ok  ] embeddings  "),
        (
            1536,
            "returns 384-dimensional vectors, but embeddings.dimensions is 1536",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("engram.toml"),
            format!(
                "[store]\nurl = \"sqlite://{}/engram.db\"\n[embeddings]\nbase_url = \"{}\"\n\
                 model = \"all-minilm\"\ndimensions = {dimensions}\n",
                dir.path().display(),
                fake.base_url()
            ),
        )
        .unwrap();
        let output = engram_async(dir.path(), &["doctor"]).await;
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(stdout.contains(expected), "{expected}: {stdout}");
    }
}
