//! OpenAI-compatible endpoints: streamed chat completions (first-token and total timeouts,
//! retries only before the first token, usage) and embeddings (batched, with timeouts and
//! bounded retries), or the local model (`local_model.rs`) when no endpoint is set. The only
//! user of async-openai and of the OpenAI wire format.

use std::sync::Arc;
use std::time::Duration;

use async_openai::config::OpenAIConfig;
use async_openai::error::OpenAIError;
use async_openai::types::chat::CreateChatCompletionRequest;
use async_openai::types::embeddings::{CreateEmbeddingRequest, EmbeddingInput};
use async_openai::Client;
use futures_util::StreamExt as _;
use serde::Serialize;

use crate::config::EmbeddingsConfig;
use crate::local_model::LocalModel;

/// Texts per embeddings request.
const BATCH: usize = 64;
/// Attempts per batch; only transient failures are retried.
const ATTEMPTS: u32 = 3;
/// Limit for one embeddings request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// What went wrong with an endpoint, in the terms an admin acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LlmFault {
    /// HTTP 401: the API key is wrong, revoked or missing.
    Key,
    /// HTTP 403: the key may not use this model or endpoint.
    Permission,
    /// HTTP 404: the endpoint does not know the model (or the base URL is wrong).
    Model,
    /// HTTP 429: too many requests, or the account's quota is used up.
    RateLimited,
    /// No answer, or no first token, in time.
    Timeout,
    /// Nothing answers at the address (connection refused, DNS, TLS).
    Unreachable,
    /// HTTP 5xx: the endpoint failed.
    Server,
    /// Another refusal of the request (HTTP 400, 413, 422, …).
    Refused,
    /// An answer engram cannot read, or not what the config promised.
    Malformed,
}

impl LlmFault {
    /// The fault from an HTTP status of a failed request.
    pub fn from_status(status: u16) -> Self {
        match status {
            401 => LlmFault::Key,
            403 => LlmFault::Permission,
            404 => LlmFault::Model,
            429 => LlmFault::RateLimited,
            408 => LlmFault::Timeout,
            500..=599 => LlmFault::Server,
            _ => LlmFault::Refused,
        }
    }

    /// Whether trying again later may help.
    fn is_transient(self) -> bool {
        matches!(
            self,
            LlmFault::RateLimited | LlmFault::Timeout | LlmFault::Unreachable | LlmFault::Server
        )
    }

    /// One short sentence for the person who asked (no addresses, no provider text).
    pub fn notice(self) -> &'static str {
        match self {
            LlmFault::Key => {
                "The LLM rejected engram's API key — an admin can run `engram doctor`."
            }
            LlmFault::Permission => {
                "The LLM refused engram's API key access to its model — an admin can run \
                 `engram doctor`."
            }
            LlmFault::Model => {
                "The LLM does not know the configured model — an admin can run `engram doctor`."
            }
            LlmFault::RateLimited => {
                "The LLM is rate-limiting engram (too many requests, or its quota is used up) — \
                 try again in a while."
            }
            LlmFault::Timeout => {
                "The LLM did not answer in time — an admin can run `engram doctor`."
            }
            LlmFault::Unreachable => {
                "engram cannot reach the LLM — an admin can run `engram doctor`."
            }
            LlmFault::Server => "The LLM failed with a server error — try again in a while.",
            LlmFault::Refused => "The LLM refused the request — an admin can run `engram doctor`.",
            LlmFault::Malformed => {
                "The LLM answered with something engram cannot read — an admin can run \
                 `engram doctor`."
            }
        }
    }
}

/// A failed call: what kind of fault, and the details for the log (never the API key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub fault: LlmFault,
    pub detail: String,
}

impl Failure {
    pub fn new(fault: LlmFault, detail: impl Into<String>) -> Self {
        Self {
            fault,
            detail: detail.into(),
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.detail)
    }
}

/// Why an endpoint call failed; never contains the API key.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LlmError {
    /// Unreachable, timed out, rate limited or a server error: try again later.
    #[error("the model endpoint is unavailable: {0}")]
    Unavailable(Failure),
    /// The endpoint refused the request (bad key, unknown model, …): retrying will not help.
    #[error("the model endpoint refused the request: {0}")]
    Rejected(Failure),
    /// The answer was not what the config promised (wrong count or dimension).
    #[error("the model endpoint answered unexpectedly: {0}")]
    Malformed(String),
    /// The local embedding model cannot be loaded or failed (`embeddings.local_model`).
    #[error("the local embedding model failed: {0}")]
    Local(String),
    /// The stream broke after text had arrived; `partial` is what arrived.
    #[error("the answer was cut off: {reason}")]
    Interrupted { partial: String, reason: String },
}

impl LlmError {
    pub fn is_transient(&self) -> bool {
        matches!(self, LlmError::Unavailable(_))
    }

    /// What kind of fault this is; a stream cut after text counts as unreachable.
    pub fn fault(&self) -> LlmFault {
        match self {
            LlmError::Unavailable(failure) | LlmError::Rejected(failure) => failure.fault,
            LlmError::Malformed(_) | LlmError::Local(_) => LlmFault::Malformed,
            LlmError::Interrupted { .. } => LlmFault::Unreachable,
        }
    }

    fn from_failure(failure: Failure) -> Self {
        if failure.fault.is_transient() {
            LlmError::Unavailable(failure)
        } else {
            LlmError::Rejected(failure)
        }
    }
}

impl crate::worker::Transience for LlmError {
    fn is_transient(&self) -> bool {
        LlmError::is_transient(self)
    }
}

impl From<OpenAIError> for LlmError {
    fn from(error: OpenAIError) -> Self {
        match error {
            OpenAIError::ApiError(response) => {
                let status = response.status_code;
                let message = format!("HTTP {status}: {}", response.api_error.message);
                LlmError::from_failure(Failure::new(
                    LlmFault::from_status(status.as_u16()),
                    message,
                ))
            }
            OpenAIError::Reqwest(error) => {
                let fault = if error.is_timeout() {
                    LlmFault::Timeout
                } else if let Some(status) = error.status() {
                    LlmFault::from_status(status.as_u16())
                } else {
                    LlmFault::Unreachable
                };
                // reqwest's Display includes the URL but never headers, so no key leaks; the
                // causes (connection refused, DNS, TLS) say what went wrong.
                let error = error.without_url();
                let mut detail = error.to_string();
                let mut cause = std::error::Error::source(&error);
                while let Some(inner) = cause {
                    detail.push_str(": ");
                    detail.push_str(&inner.to_string());
                    cause = inner.source();
                }
                LlmError::from_failure(Failure::new(fault, detail))
            }
            OpenAIError::JSONDeserialize(error, _) => LlmError::Malformed(error.to_string()),
            other => LlmError::Malformed(other.to_string()),
        }
    }
}

/// No answer within `limit`.
fn timed_out(limit: Duration) -> LlmError {
    LlmError::Unavailable(Failure::new(
        LlmFault::Timeout,
        format!("no answer within {:.1} s", limit.as_secs_f64()),
    ))
}

/// An async-openai client for an OpenAI-compatible endpoint, with connect (and optionally
/// whole-request) timeouts.
fn client(
    base_url: &str,
    api_key: &crate::config::Secret,
    request_timeout: Option<Duration>,
) -> Result<Client<OpenAIConfig>, LlmError> {
    let mut http = reqwest::Client::builder().connect_timeout(CONNECT_TIMEOUT);
    if let Some(timeout) = request_timeout {
        http = http.timeout(timeout);
    }
    let http = http
        .build()
        .map_err(|error| LlmError::Malformed(format!("cannot build an HTTP client: {error}")))?;
    let openai = OpenAIConfig::new()
        .with_api_base(base_url.trim_end_matches('/'))
        .with_api_key(api_key.expose());
    Ok(Client::build(http, openai))
}

/// The width of the configured embeddings, without starting anything: `embeddings.dimensions`
/// for an endpoint, the local model's from its `config.json`; `None` without embeddings.
pub fn embedding_dimensions(config: &EmbeddingsConfig) -> Result<Option<usize>, LlmError> {
    if !config.base_url.is_empty() {
        return Ok(Some(config.dimensions as usize));
    }
    if config.local_model.is_empty() {
        return Ok(None);
    }
    LocalModel::dimensions_in(std::path::Path::new(&config.local_model))
        .map(Some)
        .map_err(|error| LlmError::Local(error.0))
}

/// Turns texts into vectors with the configured model: an OpenAI-compatible endpoint
/// (`embeddings.base_url`) or, when that is empty, the local model
/// (`embeddings.local_model`, run in this process).
#[derive(Debug, Clone)]
pub struct Embedder {
    backend: Backend,
}

#[derive(Debug, Clone)]
enum Backend {
    Remote(Box<RemoteEmbedder>),
    Local(Arc<LocalModel>),
}

#[derive(Debug, Clone)]
struct RemoteEmbedder {
    client: Client<OpenAIConfig>,
    model: String,
    dimensions: u32,
}

impl Embedder {
    /// `None` when neither `embeddings.base_url` nor `embeddings.local_model` is set (keyword
    /// retrieval only).
    pub fn from_config(config: &EmbeddingsConfig) -> Result<Option<Self>, LlmError> {
        if config.base_url.is_empty() {
            if config.local_model.is_empty() {
                return Ok(None);
            }
            let model = LocalModel::open(std::path::Path::new(&config.local_model))
                .map_err(|error| LlmError::Local(error.0))?;
            return Ok(Some(Self {
                backend: Backend::Local(model),
            }));
        }
        // Without async-openai's own retries (three, with backoff, on refused connections
        // too): `embed_batch` decides what is worth another try.
        let client = client(&config.base_url, &config.api_key, Some(REQUEST_TIMEOUT))?;
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|error| {
                LlmError::Malformed(format!("cannot build an HTTP client: {error}"))
            })?;
        let client = client.with_http_service(async_openai::middleware::ReqwestService::new(http));
        Ok(Some(Self {
            backend: Backend::Remote(Box::new(RemoteEmbedder {
                client,
                model: config.model.clone(),
                dimensions: config.dimensions,
            })),
        }))
    }

    /// Width of the vectors: `embeddings.dimensions` for an endpoint, the local model's own.
    pub fn dimensions(&self) -> usize {
        match &self.backend {
            Backend::Remote(remote) => remote.dimensions as usize,
            Backend::Local(model) => model.dimensions(),
        }
    }

    /// What identifies the vectors this embedder makes, recorded with a brain's vectors:
    /// `local:<directory>@<hash>` for the local model, the model's name and width for an
    /// endpoint.
    pub fn identity(&self) -> String {
        match &self.backend {
            Backend::Remote(remote) => format!("{}/{}", remote.model, remote.dimensions),
            Backend::Local(model) => model.identity(),
        }
    }

    /// The local model, when that is what embeds.
    pub fn local_model(&self) -> Option<&LocalModel> {
        match &self.backend {
            Backend::Remote(_) => None,
            Backend::Local(model) => Some(model),
        }
    }

    /// One vector per text, in order, in batches (64 per request to an endpoint, 4 per pass
    /// of the local model).
    pub async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, LlmError> {
        match &self.backend {
            Backend::Remote(remote) => {
                let mut vectors = Vec::with_capacity(texts.len());
                for batch in texts.chunks(BATCH) {
                    vectors.extend(remote.embed_batch(batch).await?);
                }
                Ok(vectors)
            }
            Backend::Local(model) => model
                .embed(texts)
                .await
                .map_err(|error| LlmError::Local(error.0)),
        }
    }

    /// The vector of a question; the local model runs it ahead of ingestion's batches.
    pub async fn embed_question(&self, question: &str) -> Result<Vec<f32>, LlmError> {
        match &self.backend {
            Backend::Remote(remote) => remote
                .embed_batch(&[question.to_string()])
                .await?
                .pop()
                .ok_or_else(|| LlmError::Malformed("no vector in the answer".into())),
            Backend::Local(model) => model
                .embed_question(question)
                .await
                .map_err(|error| LlmError::Local(error.0)),
        }
    }

    /// One tiny request (one short input, no retry) for `engram doctor`: the width of the
    /// vector the endpoint returns, whatever `embeddings.dimensions` says. The local model
    /// embeds the same input (waiting for its weights to load).
    pub async fn probe(&self, limit: Duration) -> Result<usize, LlmError> {
        let remote = match &self.backend {
            Backend::Remote(remote) => remote,
            Backend::Local(model) => {
                let vector = tokio::time::timeout(limit, model.embed_question("engram doctor"))
                    .await
                    .map_err(|_| timed_out(limit))?
                    .map_err(|error| LlmError::Local(error.0))?;
                return Ok(vector.len());
            }
        };
        let request = remote.embedding_request(vec!["engram doctor".to_string()]);
        let response = tokio::time::timeout(limit, remote.client.embeddings().create(request))
            .await
            .map_err(|_| timed_out(limit))??;
        response
            .data
            .first()
            .map(|embedding| embedding.embedding.len())
            .ok_or_else(|| LlmError::Malformed("no vector in the answer".into()))
    }
}

impl RemoteEmbedder {
    async fn embed_batch(&self, batch: &[String]) -> Result<Vec<Vec<f32>>, LlmError> {
        let mut attempt = 1;
        loop {
            match self.request(batch).await {
                Ok(vectors) => return Ok(vectors),
                // A refused connection or an unknown host is not retried here: the job's own
                // retries (with their backoff) cover an endpoint that is restarting, and a
                // wrong URL fails in one line instead of a wall of warnings.
                Err(error)
                    if error.is_transient()
                        && error.fault() != LlmFault::Unreachable
                        && attempt < ATTEMPTS =>
                {
                    tracing::warn!(%error, attempt, "embeddings request failed; retrying");
                    tokio::time::sleep(Duration::from_millis(500) * 2u32.pow(attempt - 1)).await;
                    attempt += 1;
                }
                Err(error) => return Err(error),
            }
        }
    }

    fn embedding_request(&self, input: Vec<String>) -> CreateEmbeddingRequest {
        CreateEmbeddingRequest {
            model: self.model.clone(),
            input: EmbeddingInput::StringArray(input),
            encoding_format: None,
            user: None,
            // Only models that can shorten their vectors accept this; others are asked for
            // their native size, which must then match `embeddings.dimensions`.
            dimensions: self
                .model
                .starts_with("text-embedding-3")
                .then_some(self.dimensions),
        }
    }

    async fn request(&self, batch: &[String]) -> Result<Vec<Vec<f32>>, LlmError> {
        let request = self.embedding_request(batch.to_vec());
        let response =
            tokio::time::timeout(REQUEST_TIMEOUT, self.client.embeddings().create(request))
                .await
                .map_err(|_| {
                    LlmError::Unavailable(Failure::new(
                        LlmFault::Timeout,
                        format!("no answer within {} s", REQUEST_TIMEOUT.as_secs()),
                    ))
                })??;
        let mut data = response.data;
        if data.len() != batch.len() {
            return Err(LlmError::Malformed(format!(
                "asked for {} vectors, got {}",
                batch.len(),
                data.len()
            )));
        }
        data.sort_by_key(|embedding| embedding.index);
        let expected = self.dimensions as usize;
        data.into_iter()
            .map(|embedding| {
                if embedding.embedding.len() == expected {
                    Ok(embedding.embedding)
                } else {
                    Err(LlmError::Malformed(format!(
                        "vectors have {} dimensions; embeddings.dimensions is {expected}",
                        embedding.embedding.len()
                    )))
                }
            })
            .collect()
    }
}

/// Who says a chat message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    System,
    User,
    Assistant,
}

impl Role {
    fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }
}

/// One message of a chat prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatMessage {
    pub role: Role,
    pub content: String,
}

/// Tokens a completion used, as the endpoint reported them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Usage {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
}

/// A finished completion.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    pub text: String,
    /// `None` when the endpoint did not report usage.
    pub usage: Option<Usage>,
    pub model: String,
}

/// Streams chat completions from the configured model.
#[derive(Debug, Clone)]
pub struct ChatModel {
    client: Client<OpenAIConfig>,
    model: String,
    first_token_timeout: Duration,
    total_timeout: Duration,
}

/// Attempts of a chat request whose first token does not come in time.
const CHAT_ATTEMPTS: u32 = 3;

impl ChatModel {
    /// `None` when `llm.base_url` is empty (extractive answers).
    pub fn from_config(config: &crate::config::LlmConfig) -> Result<Option<Self>, LlmError> {
        if config.base_url.is_empty() {
            return Ok(None);
        }
        // No whole-request timeout: a stream is bounded by the first-token and total timeouts.
        Ok(Some(Self {
            client: client(&config.base_url, &config.api_key, None)?,
            model: config.model.clone(),
            first_token_timeout: Duration::from_millis(config.first_token_timeout_ms),
            total_timeout: Duration::from_millis(config.total_timeout_ms),
        }))
    }

    pub fn model(&self) -> &str {
        &self.model
    }

    /// One tiny real request for `engram doctor`: a one-token completion of the configured
    /// model, no retry, within `limit`. Succeeds when the endpoint accepts the request.
    pub async fn probe(&self, limit: Duration) -> Result<(), LlmError> {
        let request: CreateChatCompletionRequest = serde_json::from_value(serde_json::json!({
            "model": self.model,
            "messages": [{"role": "user", "content": "Say OK."}],
            "max_completion_tokens": 1,
            "stream": true,
        }))
        .map_err(|error| LlmError::Malformed(format!("cannot build the request: {error}")))?;
        let probe = async {
            let mut stream = self.client.chat().create_stream(request).await?;
            match stream.next().await {
                Some(Err(error)) => Err(LlmError::from(error)),
                _ => Ok::<(), LlmError>(()),
            }
        };
        tokio::time::timeout(limit, probe)
            .await
            .map_err(|_| timed_out(limit))?
    }

    /// Streams a completion of `messages` with `model` (or the configured one), calling
    /// `on_text` with each piece of text as it arrives. No first token in time is retried (up
    /// to 3 attempts within the total timeout; async-openai itself retries 429s, server errors
    /// and failed connections 3 times with backoff); after the first token, the error carries
    /// the partial text so the caller can end the message with a notice.
    pub async fn stream(
        &self,
        messages: &[ChatMessage],
        model: Option<&str>,
        mut on_text: impl FnMut(&str) + Send,
    ) -> Result<Completion, LlmError> {
        let model = model.unwrap_or(&self.model).to_string();
        let request: CreateChatCompletionRequest = serde_json::from_value(serde_json::json!({
            "model": model,
            "messages": messages
                .iter()
                .map(|m| serde_json::json!({"role": m.role.as_str(), "content": m.content}))
                .collect::<Vec<_>>(),
            "stream": true,
            "stream_options": {"include_usage": true},
        }))
        .map_err(|error| LlmError::Malformed(format!("cannot build the request: {error}")))?;
        let deadline = tokio::time::Instant::now() + self.total_timeout;
        let mut attempt = 1;
        loop {
            match self.attempt(&request, deadline, &mut on_text).await {
                Ok(completion) => return Ok(completion),
                // async-openai already retries 429s, 5xx and failed connections three times
                // with backoff; a missing first token is retried here.
                Err(error) if error.fault() == LlmFault::Timeout && attempt < CHAT_ATTEMPTS => {
                    tracing::warn!(%error, attempt, "LLM request failed before the first token; retrying");
                    let pause = Duration::from_millis(250) * 2u32.pow(attempt - 1);
                    if tokio::time::Instant::now() + pause >= deadline {
                        return Err(error);
                    }
                    tokio::time::sleep(pause).await;
                    attempt += 1;
                }
                Err(error) => return Err(error),
            }
        }
    }

    async fn attempt(
        &self,
        request: &CreateChatCompletionRequest,
        deadline: tokio::time::Instant,
        on_text: &mut (impl FnMut(&str) + Send),
    ) -> Result<Completion, LlmError> {
        let first_token_by = (tokio::time::Instant::now() + self.first_token_timeout).min(deadline);
        let no_first_token = || {
            LlmError::Unavailable(Failure::new(
                LlmFault::Timeout,
                format!(
                    "no first token within {} ms (llm.first_token_timeout_ms)",
                    self.first_token_timeout.as_millis()
                ),
            ))
        };
        let mut stream = tokio::time::timeout_at(
            first_token_by,
            self.client.chat().create_stream(request.clone()),
        )
        .await
        .map_err(|_| no_first_token())??;
        let mut text = String::new();
        let mut usage = None;
        let mut model = request.model.clone();
        loop {
            let by = if text.is_empty() {
                first_token_by
            } else {
                deadline
            };
            let next = match tokio::time::timeout_at(by, stream.next()).await {
                Ok(next) => next,
                Err(_) if text.is_empty() => return Err(no_first_token()),
                Err(_) => {
                    return Err(LlmError::Interrupted {
                        partial: text,
                        reason: format!(
                            "no end within {} ms (llm.total_timeout_ms)",
                            self.total_timeout.as_millis()
                        ),
                    })
                }
            };
            let chunk = match next {
                None => break,
                Some(Ok(chunk)) => chunk,
                Some(Err(error)) if text.is_empty() => return Err(error.into()),
                Some(Err(error)) => {
                    return Err(LlmError::Interrupted {
                        partial: text,
                        reason: LlmError::from(error).to_string(),
                    })
                }
            };
            model = chunk.model;
            if let Some(reported) = chunk.usage {
                usage = Some(Usage {
                    prompt_tokens: reported.prompt_tokens,
                    completion_tokens: reported.completion_tokens,
                });
            }
            for choice in chunk.choices {
                if let Some(piece) = choice.delta.content.filter(|piece| !piece.is_empty()) {
                    on_text(&piece);
                    text.push_str(&piece);
                }
            }
        }
        if text.is_empty() {
            return Err(LlmError::Malformed(
                "the stream ended without any text".into(),
            ));
        }
        Ok(Completion { text, usage, model })
    }
}
