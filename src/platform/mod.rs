//! Chat platform adapters: the only modules that know Discord (serenity) or Slack. They turn
//! platform events into the core's `ChatEvent`s and implement `ChatPlatform` for its writes.

pub mod connection;
pub mod discord;
pub mod slack;

use std::time::Duration;

use crate::chat::PlatformError;

/// A plain HTTP client for a platform's REST calls or downloads: `timeout` per request, 10 s
/// to connect.
pub(crate) fn http_client(timeout: Duration) -> Result<reqwest::Client, PlatformError> {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(Duration::from_secs(10))
        .build()
        .map_err(|error| PlatformError::Other(format!("cannot build the HTTP client: {error}")))
}

/// Sends a request for a posted file and reads its body, refusing more than `max_bytes`;
/// `refused` says what a non-success status likely means on this platform. Shared by both
/// adapters' `ChatPlatform::download`.
pub(crate) async fn download_capped(
    request: reqwest::RequestBuilder,
    max_bytes: u64,
    refused: &str,
) -> Result<Vec<u8>, PlatformError> {
    let mut response = request
        .send()
        .await
        .map_err(|error| PlatformError::Other(error.without_url().to_string()))?;
    if !response.status().is_success() {
        return Err(PlatformError::Gone(format!(
            "the file's link answered {} ({refused})",
            response.status()
        )));
    }
    let mut bytes = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|error| PlatformError::Other(error.without_url().to_string()))?
    {
        if (bytes.len() + chunk.len()) as u64 > max_bytes {
            return Err(PlatformError::TooLarge { limit: max_bytes });
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}
