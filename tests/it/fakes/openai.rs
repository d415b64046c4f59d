//! A local stand-in for an OpenAI-compatible server (what sits across the network): streamed
//! and plain chat completions (SSE) and embeddings, as strict as the real API where engram
//! relies on it (the bearer key and the model are checked when set, errors come in OpenAI's
//! JSON shape), with injectable delays and faults (status codes, a server that never
//! answers).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};

/// How the fake answers.
#[derive(Debug, Default, Clone)]
pub struct Behaviour {
    /// The first this-many requests get HTTP 500.
    pub fail_first: usize,
    /// Every request gets this status (401, 403, 404, 429, 5xx) with OpenAI's error body for
    /// it, instead of an answer.
    pub always_status: Option<u16>,
    /// When set, requests must carry `Authorization: Bearer <key>`; others get 401.
    pub api_key: Option<String>,
    /// When not empty, the models that exist; a request for another gets 404.
    pub models: Vec<String>,
    /// Never answer (hold the connection open): what a hung server does.
    pub hang: bool,
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
    /// When set, each chat stream takes a permit from it before its first word: the test
    /// holds the answers until it adds permits.
    pub gate: Option<Arc<tokio::sync::Semaphore>>,
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

/// OpenAI's error body for `status`, as its API sends it.
fn error_body(status: u16, key: &str, model: &str) -> Value {
    let (message, kind, code) = match status {
        401 => (
            format!("Incorrect API key provided: {}. You can find your API key in your account settings.", masked(key)),
            "invalid_request_error",
            json!("invalid_api_key"),
        ),
        403 => (
            format!("Project `proj_fake` does not have access to model `{model}`"),
            "invalid_request_error",
            json!("model_not_found"),
        ),
        404 => (
            format!("The model `{model}` does not exist or you do not have access to it."),
            "invalid_request_error",
            json!("model_not_found"),
        ),
        429 => (
            format!("Rate limit reached for {model} on requests per min (RPM): Limit 3, Used 3, Requested 1."),
            "requests",
            json!("rate_limit_exceeded"),
        ),
        _ => (
            "The server had an error while processing your request. Sorry about that!".to_string(),
            "server_error",
            Value::Null,
        ),
    };
    json!({"error": {"message": message, "type": kind, "param": null, "code": code}})
}

/// A key as OpenAI echoes it: the first 3 and last 4 characters.
fn masked(key: &str) -> String {
    let chars: Vec<char> = key.chars().collect();
    if chars.len() < 8 {
        return "***".into();
    }
    let head: String = chars[..3].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}***{tail}")
}

/// The fault to answer with instead of serving the request, if any: a hang, a forced status,
/// a missing or wrong key, an unknown model.
async fn fault(shared: &Shared, headers: &HeaderMap, body: &Value) -> Option<Response> {
    let behaviour = &shared.behaviour;
    if behaviour.hang {
        std::future::pending::<()>().await;
    }
    let key = headers
        .get("authorization")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .unwrap_or("");
    let model = body["model"].as_str().unwrap_or("");
    let status = behaviour.always_status.or_else(|| {
        if behaviour
            .api_key
            .as_deref()
            .is_some_and(|expected| expected != key)
        {
            Some(401)
        } else if !behaviour.models.is_empty() && !behaviour.models.iter().any(|m| m == model) {
            Some(404)
        } else {
            None
        }
    })?;
    let code = StatusCode::from_u16(status).unwrap();
    Some((code, Json(error_body(status, key, model))).into_response())
}

async fn embeddings(
    State(shared): State<Shared>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let n = shared.requests.fetch_add(1, Ordering::SeqCst);
    if let Some(response) = fault(&shared, &headers, &body).await {
        return response;
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

async fn chat(
    State(shared): State<Shared>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let n = shared.requests.fetch_add(1, Ordering::SeqCst);
    if let Some(response) = fault(&shared, &headers, &body).await {
        return response;
    }
    if n < shared.behaviour.fail_first {
        return (StatusCode::INTERNAL_SERVER_ERROR, "upstream overloaded").into_response();
    }
    if !body["messages"].is_array() || !body["model"].is_string() {
        let error = json!({"error": {"message": "'messages' and 'model' are required",
                                     "type": "invalid_request_error", "param": null, "code": null}});
        return (StatusCode::BAD_REQUEST, Json(error)).into_response();
    }
    if body.get("max_tokens").is_some() && body.get("max_completion_tokens").is_some() {
        let error = json!({"error": {"message": "max_tokens and max_completion_tokens cannot both be set",
                                     "type": "invalid_request_error", "param": "max_tokens", "code": null}});
        return (StatusCode::BAD_REQUEST, Json(error)).into_response();
    }
    // A completion limited to fewer tokens than the reply has stops there.
    let limit = body["max_completion_tokens"]
        .as_u64()
        .or_else(|| body["max_tokens"].as_u64())
        .map_or(usize::MAX, |limit| limit as usize);
    if body["stream"].as_bool() != Some(true) {
        let words: Vec<&str> = shared
            .behaviour
            .reply
            .split_inclusive(' ')
            .take(limit)
            .collect();
        return Json(json!({
            "id": "chatcmpl-fake", "object": "chat.completion", "created": 0,
            "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": words.concat()},
                         "finish_reason": if words.len() < limit { "stop" } else { "length" }}],
            "usage": {"prompt_tokens": 12, "completion_tokens": words.len(),
                      "total_tokens": 12 + words.len()}
        }))
        .into_response();
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
        .take(limit)
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
                if let Some(gate) = &behaviour.gate {
                    gate.acquire().await.expect("the gate stays open").forget();
                }
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
