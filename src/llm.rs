//! OpenAI-compatible endpoints: embeddings (batched, with timeouts and bounded retries). The
//! only user of async-openai and of the OpenAI wire format.

use std::time::Duration;

use async_openai::config::OpenAIConfig;
use async_openai::error::OpenAIError;
use async_openai::types::embeddings::{CreateEmbeddingRequest, EmbeddingInput};
use async_openai::Client;

use crate::config::EmbeddingsConfig;

/// Texts per embeddings request.
const BATCH: usize = 64;
/// Attempts per batch; only transient failures are retried.
const ATTEMPTS: u32 = 3;
/// Limit for one embeddings request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why an endpoint call failed; never contains the API key.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LlmError {
    /// Unreachable, timed out, rate limited or a server error: try again later.
    #[error("the embeddings endpoint is unavailable: {0}")]
    Unavailable(String),
    /// The endpoint refused the request (bad key, unknown model, …): retrying will not help.
    #[error("the embeddings endpoint refused the request: {0}")]
    Rejected(String),
    /// The answer was not what the config promised (wrong count or dimension).
    #[error("the embeddings endpoint answered unexpectedly: {0}")]
    Malformed(String),
}

impl LlmError {
    pub fn is_transient(&self) -> bool {
        matches!(self, LlmError::Unavailable(_))
    }
}

impl From<OpenAIError> for LlmError {
    fn from(error: OpenAIError) -> Self {
        match error {
            OpenAIError::ApiError(response) => {
                let status = response.status_code;
                let message = format!("HTTP {status}: {}", response.api_error.message);
                if status.is_server_error() || status.as_u16() == 429 || status.as_u16() == 408 {
                    LlmError::Unavailable(message)
                } else {
                    LlmError::Rejected(message)
                }
            }
            OpenAIError::Reqwest(error) => {
                // reqwest's Display includes the URL but never headers, so no key leaks.
                LlmError::Unavailable(error.without_url().to_string())
            }
            OpenAIError::JSONDeserialize(error, _) => LlmError::Malformed(error.to_string()),
            other => LlmError::Malformed(other.to_string()),
        }
    }
}

/// Turns texts into vectors with the configured model.
#[derive(Debug, Clone)]
pub struct Embedder {
    client: Client<OpenAIConfig>,
    model: String,
    dimensions: u32,
}

impl Embedder {
    /// `None` when `embeddings.base_url` is empty (keyword retrieval only).
    pub fn from_config(config: &EmbeddingsConfig) -> Result<Option<Self>, LlmError> {
        if config.base_url.is_empty() {
            return Ok(None);
        }
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .build()
            .map_err(|error| LlmError::Rejected(format!("cannot build an HTTP client: {error}")))?;
        let openai = OpenAIConfig::new()
            .with_api_base(config.base_url.trim_end_matches('/'))
            .with_api_key(config.api_key.expose());
        Ok(Some(Self {
            client: Client::build(http, openai),
            model: config.model.clone(),
            dimensions: config.dimensions,
        }))
    }

    pub fn dimensions(&self) -> usize {
        self.dimensions as usize
    }

    /// One vector per text, in order, in batches of 64.
    pub async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, LlmError> {
        let mut vectors = Vec::with_capacity(texts.len());
        for batch in texts.chunks(BATCH) {
            vectors.extend(self.embed_batch(batch).await?);
        }
        Ok(vectors)
    }

    async fn embed_batch(&self, batch: &[String]) -> Result<Vec<Vec<f32>>, LlmError> {
        let mut attempt = 1;
        loop {
            match self.request(batch).await {
                Ok(vectors) => return Ok(vectors),
                Err(error) if error.is_transient() && attempt < ATTEMPTS => {
                    tracing::warn!(%error, attempt, "embeddings request failed; retrying");
                    tokio::time::sleep(Duration::from_millis(500) * 2u32.pow(attempt - 1)).await;
                    attempt += 1;
                }
                Err(error) => return Err(error),
            }
        }
    }

    async fn request(&self, batch: &[String]) -> Result<Vec<Vec<f32>>, LlmError> {
        let request = CreateEmbeddingRequest {
            model: self.model.clone(),
            input: EmbeddingInput::StringArray(batch.to_vec()),
            encoding_format: None,
            user: None,
            // Only models that can shorten their vectors accept this; others are asked for
            // their native size, which must then match `embeddings.dimensions`.
            dimensions: self
                .model
                .starts_with("text-embedding-3")
                .then_some(self.dimensions),
        };
        let response =
            tokio::time::timeout(REQUEST_TIMEOUT, self.client.embeddings().create(request))
                .await
                .map_err(|_| {
                    LlmError::Unavailable(format!(
                        "no answer within {} s",
                        REQUEST_TIMEOUT.as_secs()
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
