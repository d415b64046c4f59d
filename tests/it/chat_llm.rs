//! The streaming chat client (real async-openai) against a local fake OpenAI-compatible server.

use std::sync::atomic::Ordering;
use std::time::Duration;

use engram::config::{LlmConfig, Secret};
use engram::llm::{ChatMessage, ChatModel, LlmError, Role};

use crate::fake_openai::{self, Behaviour};

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
        matches!(&error, LlmError::Unavailable(m) if m.contains("first token")),
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
