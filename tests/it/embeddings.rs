//! The embeddings client (real async-openai) against a local fake OpenAI-compatible server.

use engram::config::{EmbeddingsConfig, Secret};
use engram::llm::{Embedder, LlmError};

use crate::fakes::openai::{self as fake_openai, Behaviour};

fn config(base_url: String, dimensions: u32) -> EmbeddingsConfig {
    EmbeddingsConfig {
        base_url,
        api_key: Secret::new("sk-test-key-never-shown"),
        model: "test-embedder".into(),
        dimensions,
        local_model: String::new(),
    }
}

/// A fake endpoint behaving as told, and an embedder (64 dimensions) pointed at it.
async fn embedder_against(behaviour: Behaviour) -> (fake_openai::FakeOpenAi, Embedder) {
    let fake = fake_openai::start(behaviour).await;
    let embedder = Embedder::from_config(&config(fake.base_url(), 64))
        .unwrap()
        .unwrap();
    (fake, embedder)
}

#[tokio::test]
async fn vectors_come_back_in_order_in_batches() {
    let (fake, embedder) = embedder_against(Behaviour::default()).await;
    let texts: Vec<String> = (0..150)
        .map(|n| format!("chunk number {n} about apples"))
        .collect();
    let vectors = embedder.embed(&texts).await.unwrap();
    assert_eq!(vectors.len(), 150);
    assert_eq!(vectors[7], fake_openai::vector_for(&texts[7], 64));
    assert_eq!(
        fake.requests.load(std::sync::atomic::Ordering::SeqCst),
        3,
        "batches of 64"
    );
    assert_eq!(*fake.inputs.lock().unwrap(), texts);
}

#[tokio::test]
async fn server_errors_are_retried() {
    let (fake, embedder) = embedder_against(Behaviour {
        fail_first: 2,
        ..Behaviour::default()
    })
    .await;
    let vectors = embedder.embed(&["hello world".to_string()]).await.unwrap();
    assert_eq!(vectors.len(), 1);
    assert_eq!(fake.requests.load(std::sync::atomic::Ordering::SeqCst), 3);
}

#[tokio::test]
async fn a_refused_key_is_not_retried_and_not_shown() {
    let (fake, embedder) = embedder_against(Behaviour {
        always_status: Some(401),
        ..Behaviour::default()
    })
    .await;
    let error = embedder.embed(&["hello".to_string()]).await.unwrap_err();
    assert!(matches!(error, LlmError::Rejected(_)), "{error:?}");
    assert!(!error.is_transient());
    assert_eq!(fake.requests.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert!(!error.to_string().contains("sk-test-key-never-shown"));
}

#[tokio::test]
async fn a_wrong_dimension_is_reported() {
    let (_fake, embedder) = embedder_against(Behaviour {
        dimensions: Some(32),
        ..Behaviour::default()
    })
    .await;
    let error = embedder.embed(&["hello".to_string()]).await.unwrap_err();
    assert!(
        matches!(error, LlmError::Malformed(ref m) if m.contains("32")),
        "{error:?}"
    );
}

#[tokio::test]
async fn an_unreachable_endpoint_is_transient() {
    let embedder = Embedder::from_config(&config("http://127.0.0.1:1/v1".into(), 64))
        .unwrap()
        .unwrap();
    let error = embedder.embed(&["hello".to_string()]).await.unwrap_err();
    assert!(error.is_transient(), "{error:?}");
}

#[test]
fn no_base_url_means_no_embedder() {
    assert!(Embedder::from_config(&config(String::new(), 64))
        .unwrap()
        .is_none());
}
