//! A local stand-in for an OpenAI-compatible server (what sits across the network): streamed
//! chat completions (SSE) and embeddings, with injectable delays and faults.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};

/// How the fake answers.
#[derive(Debug, Default, Clone)]
pub struct Behaviour {
    /// The first this-many requests get HTTP 500.
    pub fail_first: usize,
    /// Every request gets this status (e.g. 401) instead of vectors.
    pub always_status: Option<u16>,
    /// Vectors of this many dimensions (default 64).
    pub dimensions: Option<usize>,
    /// What chat completions answer, streamed a word at a time.
    pub reply: String,
    /// Wait before the first chat chunk.
    pub first_token_delay: Duration,
    /// Wait between chat chunks.
    pub token_interval: Duration,
    /// Drop the connection after this many words.
    pub drop_after_words: Option<usize>,
}

#[derive(Debug)]
pub struct FakeOpenAi {
    pub addr: SocketAddr,
    pub requests: Arc<AtomicUsize>,
    /// Every input text received, in order.
    pub inputs: Arc<std::sync::Mutex<Vec<String>>>,
}

impl FakeOpenAi {
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }
}

#[derive(Clone)]
struct Shared {
    behaviour: Arc<Behaviour>,
    requests: Arc<AtomicUsize>,
    inputs: Arc<std::sync::Mutex<Vec<String>>>,
}

pub async fn start(behaviour: Behaviour) -> FakeOpenAi {
    let requests = Arc::new(AtomicUsize::new(0));
    let inputs = Arc::new(std::sync::Mutex::new(Vec::new()));
    let shared = Shared {
        behaviour: Arc::new(behaviour),
        requests: requests.clone(),
        inputs: inputs.clone(),
    };
    let app = Router::new()
        .route("/v1/embeddings", post(embeddings))
        .route("/v1/chat/completions", post(chat))
        .with_state(shared);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    FakeOpenAi {
        addr,
        requests,
        inputs,
    }
}

/// A deterministic bag-of-words vector: texts sharing words point the same way.
pub fn vector_for(text: &str, dimensions: usize) -> Vec<f32> {
    let mut vector = vec![0f32; dimensions];
    for word in text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| w.len() > 2)
    {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in word.to_lowercase().bytes() {
            hash = (hash ^ u64::from(byte)).wrapping_mul(0x100_0000_01b3);
        }
        vector[(hash % dimensions as u64) as usize] += 1.0;
    }
    let norm = vector.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-6);
    vector.iter().map(|x| x / norm).collect()
}

async fn embeddings(State(shared): State<Shared>, Json(body): Json<Value>) -> Response {
    let n = shared.requests.fetch_add(1, Ordering::SeqCst);
    if let Some(status) = shared.behaviour.always_status {
        let status = StatusCode::from_u16(status).unwrap();
        let error = json!({"error": {"message": "invalid api key", "type": "invalid_request_error",
                                     "param": null, "code": "invalid_api_key"}});
        return (status, Json(error)).into_response();
    }
    if n < shared.behaviour.fail_first {
        let error = json!({"error": {"message": "overloaded", "type": "server_error",
                                     "param": null, "code": null}});
        return (StatusCode::INTERNAL_SERVER_ERROR, Json(error)).into_response();
    }
    let texts: Vec<String> = match &body["input"] {
        Value::String(text) => vec![text.clone()],
        Value::Array(items) => items
            .iter()
            .map(|item| item.as_str().unwrap_or_default().to_string())
            .collect(),
        _ => Vec::new(),
    };
    shared.inputs.lock().unwrap().extend(texts.iter().cloned());
    let dimensions = shared.behaviour.dimensions.unwrap_or(64);
    let data: Vec<Value> = texts
        .iter()
        .enumerate()
        .map(|(index, text)| {
            json!({"object": "embedding", "index": index, "embedding": vector_for(text, dimensions)})
        })
        .collect();
    Json(json!({
        "object": "list", "data": data, "model": body["model"],
        "usage": {"prompt_tokens": 1, "total_tokens": 1}
    }))
    .into_response()
}

fn sse(value: &Value) -> Bytes {
    Bytes::from(format!("data: {value}\n\n"))
}

fn chunk(model: &Value, content: Option<&str>, usage: Option<Value>) -> Value {
    let choices = match content {
        Some(text) => json!([{"index": 0, "delta": {"content": text}, "finish_reason": null}]),
        None => json!([]),
    };
    let mut chunk = json!({"id": "chatcmpl-fake", "object": "chat.completion.chunk",
                           "created": 0, "model": model, "choices": choices});
    if let Some(usage) = usage {
        chunk["usage"] = usage;
    }
    chunk
}

async fn chat(State(shared): State<Shared>, Json(body): Json<Value>) -> Response {
    let n = shared.requests.fetch_add(1, Ordering::SeqCst);
    if let Some(status) = shared.behaviour.always_status {
        let error = json!({"error": {"message": "invalid api key", "type": "invalid_request_error",
                                     "param": null, "code": "invalid_api_key"}});
        return (StatusCode::from_u16(status).unwrap(), Json(error)).into_response();
    }
    if n < shared.behaviour.fail_first {
        return (StatusCode::INTERNAL_SERVER_ERROR, "upstream overloaded").into_response();
    }
    if let Some(messages) = body["messages"].as_array() {
        let mut inputs = shared.inputs.lock().unwrap();
        for message in messages {
            inputs.push(message["content"].as_str().unwrap_or_default().to_string());
        }
    }
    let words: Vec<String> = shared
        .behaviour
        .reply
        .split_inclusive(' ')
        .map(str::to_string)
        .collect();
    let behaviour = shared.behaviour.clone();
    let model = body["model"].clone();
    let stream = futures_util::stream::unfold(0usize, move |i| {
        let behaviour = behaviour.clone();
        let words = words.clone();
        let model = model.clone();
        async move {
            let delay = if i == 0 {
                behaviour.first_token_delay
            } else {
                behaviour.token_interval
            };
            tokio::time::sleep(delay).await;
            if behaviour.drop_after_words == Some(i) {
                let cut = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "dropped");
                return Some((Err(cut), usize::MAX));
            }
            if i == usize::MAX || i > words.len() + 1 {
                return None;
            }
            let bytes = if i < words.len() {
                sse(&chunk(&model, Some(&words[i]), None))
            } else if i == words.len() {
                let usage = json!({"prompt_tokens": 12, "completion_tokens": words.len(),
                                   "total_tokens": 12 + words.len()});
                sse(&chunk(&model, None, Some(usage)))
            } else {
                Bytes::from("data: [DONE]\n\n")
            };
            Some((Ok::<_, std::io::Error>(bytes), i + 1))
        }
    });
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(Body::from_stream(stream))
        .unwrap()
}
