//! Native streaming of an answer into its thread with `chat.startStream` /
//! `chat.appendStream` / `chat.stopStream`. The answer's growing text is appended in pieces
//! at the edit cadence, within the workspace's Tier 2 / Tier 4 budgets; a streamed message
//! that reaches `STREAM_MAX_CHARS` is stopped and the answer continues in a new one (a code fence
//! open at the cut is closed there and reopened in the next). Where
//! the workspace cannot stream (`chat.startStream` fails: an older plan, `unknown_method`,
//! `not_allowed`…) that is remembered and answers there are edited with `chat.update`
//! instead; so is an answer whose stream could not start soon (the Tier 2 budget is spent).
//! The last `chat.stopStream` of an answer carries its 👍/👎 buttons (blocks shown under the
//! finished message).

use std::time::Duration;

use slack_morphism::prelude::*;
use tokio::sync::watch;
use tokio::time::Instant;

use super::api::{
    error_code, message_id, platform_error, team_and_channel, ts_and_thread, SlackApi,
};
use super::budget::Tier;
use crate::chat::feedback::AnswerId;
use crate::chat::streamer::StreamOptions;
use crate::chat::{MessageRef, PlatformError};
use crate::render::{neutralise_mass_mentions, open_fence, FENCE_CLOSE};

/// Most characters in one streamed message (and so in one append).
const STREAM_MAX_CHARS: usize = 12_000;
/// How long an answer waits for a Tier 2 slot to start its stream before it is edited instead.
const MAX_START_WAIT: Duration = Duration::from_secs(2);
/// Tries of an append or a stop that fails for another reason than a rate limit.
const TRIES: u32 = 4;

/// Streams the answer natively, or says `None` (nothing written) where it cannot.
pub(super) async fn stream(
    api: &SlackApi,
    placeholder: &MessageRef,
    asker: &str,
    text: &mut watch::Receiver<String>,
    options: StreamOptions,
    answer: &AnswerId,
) -> Option<Result<Vec<MessageRef>, PlatformError>> {
    let (team, channel) = team_and_channel(&placeholder.channel).ok()?;
    if api
        .no_streaming
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .contains(team)
    {
        return None;
    }
    let (_, thread) = ts_and_thread(placeholder);
    // The stream starts with the answer's first words; an answer that ends without any (it
    // failed) is left to the placeholder.
    let (mut producer_gone, ready) = loop {
        let gone = text.changed().await.is_err();
        let ready = streamable(&text.borrow_and_update(), gone);
        if !ready.trim().is_empty() {
            break (gone, ready);
        }
        if gone {
            return None;
        }
    };
    let (tier2, key) = api.budgets.of(Tier::Two, team, channel);
    if !tier2.acquire_within(&key, MAX_START_WAIT).await {
        tracing::debug!("Slack: the streaming budget is spent; this answer is edited instead");
        return None;
    }
    let mut stream = Stream {
        api,
        team: team.to_string(),
        channel: channel.to_string(),
        thread: thread.to_string(),
        asker: asker.to_string(),
        messages: Vec::new(),
        current_chars: 0,
        sent: 0,
        last_write: None,
    };
    let first: String = ready
        .chars()
        .take(STREAM_MAX_CHARS - FENCE_CLOSE.len())
        .collect();
    match stream.start(&first).await {
        Ok(()) => {}
        Err(Refused::Unsupported(code)) => {
            tracing::info!(
                code,
                team,
                "Slack: no streaming in this workspace; answers are edited"
            );
            api.no_streaming
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(team.to_string());
            return None;
        }
        Err(Refused::Platform(error)) => {
            if let PlatformError::RateLimited { retry_after } = error {
                tier2.push_back(&key, retry_after);
            }
            tracing::debug!(%error, "Slack: cannot start a stream; this answer is edited instead");
            return None;
        }
    }
    // The placeholder said "thinking"; the stream says the rest.
    if let Err(error) = api.delete(placeholder).await {
        tracing::debug!(%error, "Slack: cannot delete the placeholder");
    }
    let result = async {
        loop {
            if !producer_gone {
                producer_gone = text.changed().await.is_err();
                if !producer_gone {
                    if let Some(last) = stream.last_write {
                        tokio::time::sleep_until(last + options.edit_interval).await;
                    }
                }
            }
            let latest = text.borrow_and_update().clone();
            let is_final = producer_gone || text.has_changed().is_err();
            stream.catch_up(&streamable(&latest, is_final)).await?;
            if is_final {
                stream.stop(answer.get()).await?;
                return Ok(stream.messages.clone());
            }
        }
    }
    .await;
    Some(result)
}

/// Why a stream did not start.
enum Refused {
    /// The workspace cannot stream (Slack's error code).
    Unsupported(String),
    Platform(PlatformError),
}

struct Stream<'a> {
    api: &'a SlackApi,
    team: String,
    channel: String,
    thread: String,
    asker: String,
    /// The streamed messages, the last one open.
    messages: Vec<MessageRef>,
    /// Characters in the open message.
    current_chars: usize,
    /// Characters of the answer sent so far.
    sent: usize,
    last_write: Option<Instant>,
}

impl Stream<'_> {
    fn open_ts(&self) -> String {
        self.messages
            .last()
            .map(|message| ts_and_thread(message).0.to_string())
            .unwrap_or_default()
    }

    /// Starts a streamed message in the thread with `first`.
    async fn start(&mut self, first: &str) -> Result<(), Refused> {
        let mut request = SlackApiChatStartStreamRequest::new(self.channel.clone().into())
            .with_thread_ts(self.thread.clone().into())
            .with_recipient_user_id(self.asker.clone().into())
            .with_recipient_team_id(self.team.clone().into());
        if !first.is_empty() {
            request = request.with_markdown_text(first.to_string());
        }
        let session = self.api.session();
        let started =
            tokio::time::timeout(Duration::from_secs(15), session.chat_start_stream(&request))
                .await
                .map_err(|_| {
                    Refused::Platform(PlatformError::Other("Slack did not answer in time".into()))
                })?;
        self.last_write = Some(Instant::now());
        match started {
            Ok(started) => {
                self.messages.push(MessageRef {
                    channel: super::api::channel_key(&self.team, &self.channel),
                    id: message_id(&started.ts.0, Some(&self.thread)),
                });
                let chars = first.chars().count();
                self.current_chars = chars;
                self.sent += chars;
                Ok(())
            }
            Err(error) => match error_code(&error) {
                Some(code) if !matches!(code, "ratelimited" | "internal_error" | "fatal_error") => {
                    Err(Refused::Unsupported(code.to_string()))
                }
                _ => Err(Refused::Platform(platform_error(error))),
            },
        }
    }

    /// Sends what of `ready` is not sent yet.
    async fn catch_up(&mut self, ready: &str) -> Result<(), PlatformError> {
        let total = ready.chars().count();
        while self.sent < total {
            // Room is kept to close a code fence the cut may land in.
            let room = (STREAM_MAX_CHARS - FENCE_CLOSE.len()).saturating_sub(self.current_chars);
            if room == 0 {
                let rollover = Rollover::at(ready, self.sent);
                if rollover.close {
                    self.append(FENCE_CLOSE).await?;
                }
                self.stop(None).await?;
                let piece = rollover.next_message(ready, self.sent);
                let (tier2, key) = self.api.budgets.of(Tier::Two, &self.team, &self.channel);
                tier2.acquire(&key).await;
                match self.start(&piece).await {
                    Ok(()) => {
                        // The reopened fence is not part of the answer's text.
                        self.sent -= rollover.reopen.chars().count();
                        continue;
                    }
                    Err(Refused::Unsupported(code)) => {
                        return Err(PlatformError::Other(format!("Slack answered `{code}`")))
                    }
                    Err(Refused::Platform(error)) => return Err(error),
                }
            }
            let piece: String = ready.chars().skip(self.sent).take(room).collect();
            let count = piece.chars().count();
            self.append(&piece).await?;
            self.current_chars += count;
            self.sent += count;
        }
        Ok(())
    }

    async fn append(&mut self, piece: &str) -> Result<(), PlatformError> {
        let request = SlackApiChatAppendStreamRequest::new(
            self.channel.clone().into(),
            self.open_ts().into(),
        )
        .with_markdown_text(piece.to_string());
        let session = self.api.session();
        self.write(Tier::Four, || session.chat_append_stream(&request))
            .await
    }

    /// Ends the open streamed message, with the buttons for `votes` under it when given (the
    /// answer's last message).
    async fn stop(&mut self, votes: Option<i64>) -> Result<(), PlatformError> {
        let mut content = SlackMessageContent::new();
        if let Some(answer) = votes {
            content = content.with_blocks(vec![super::api::vote_buttons(answer)]);
        }
        let request = SlackApiChatStopStreamRequest::new(
            self.channel.clone().into(),
            self.open_ts().into(),
            content,
        );
        let session = self.api.session();
        self.write(Tier::Two, || session.chat_stop_stream(&request))
            .await?;
        self.current_chars = 0;
        Ok(())
    }

    /// One write to the open stream within the `tier` budget, tried up to `TRIES` times when
    /// it fails for another reason than a rate limit (which `call` waits out itself).
    async fn write<T, F, Fut>(&mut self, tier: Tier, call: F) -> Result<(), PlatformError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = ClientResult<T>>,
    {
        let mut tries = 0;
        loop {
            tries += 1;
            let result = self.api.call(tier, &self.team, &self.channel, &call).await;
            self.last_write = Some(Instant::now());
            match result {
                Ok(_) => return Ok(()),
                Err(PlatformError::Other(_)) if tries < TRIES => {
                    tokio::time::sleep(Duration::from_millis(500) * tries).await;
                }
                Err(error) => return Err(error),
            }
        }
    }
}

/// Where a streamed message full at `sent` characters of `ready` ends and the next begins: a
/// code fence open there is closed in this message and reopened, with its language, in the
/// next, so neither shows half a code block.
#[derive(Debug, PartialEq, Eq)]
struct Rollover {
    /// Close an open fence before stopping this message.
    close: bool,
    /// What the next message starts with before the answer goes on (the fence opener).
    reopen: String,
}

impl Rollover {
    fn at(ready: &str, sent: usize) -> Self {
        let sent_text: String = ready.chars().take(sent).collect();
        match open_fence(&sent_text) {
            Some(opener) => Self {
                close: true,
                reopen: format!("{opener}\n"),
            },
            None => Self {
                close: false,
                reopen: String::new(),
            },
        }
    }

    /// The first piece of the next message: the reopened fence, then as much of the rest of
    /// `ready` as fits with room to close a fence again.
    fn next_message(&self, ready: &str, sent: usize) -> String {
        let room = STREAM_MAX_CHARS - FENCE_CLOSE.len() - self.reopen.chars().count();
        let mut piece = self.reopen.clone();
        piece.extend(ready.chars().skip(sent).take(room));
        piece
    }
}

/// What of the answer may be streamed now, as Slack markdown: mass mentions neutralised,
/// links written for markdown, and — until the answer is final — nothing after its last
/// whitespace, so a word still growing (`<!her`…) is never sent before it can be neutralised,
/// nor anything from a link still being written (`<https://…|annual re`, no `>` yet): once
/// closed it becomes `[annual report.pdf](https://…)`, and what was sent must stay a prefix.
fn streamable(text: &str, is_final: bool) -> String {
    let safe = markdown_links(&neutralise_mass_mentions(text));
    if is_final {
        return safe;
    }
    // A `<http` left as it was with no `>` after it is a link not closed yet.
    let after_last_close = safe.rfind('>').map_or(0, |close| close + 1);
    let held = safe[after_last_close..]
        .find("<http")
        .map_or(safe.len(), |open| after_last_close + open);
    match safe[..held].rfind(char::is_whitespace) {
        Some(end) => safe[..end].to_string(),
        None => String::new(),
    }
}

/// `<url|text>` (Slack's mrkdwn link, as the sources footer writes it) → `[text](url)`.
fn markdown_links(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find("<http") {
        out.push_str(&rest[..open]);
        let candidate = &rest[open + 1..];
        let inner = candidate.find('>').map(|close| &candidate[..close]);
        let (url, label) = match inner {
            Some(inner) => inner.split_once('|').unwrap_or((inner, "")),
            None => ("", ""),
        };
        match inner {
            Some(inner) if !url.contains(char::is_whitespace) && !label.contains('<') => {
                if label.is_empty() {
                    out.push_str(&format!("<{inner}>"));
                } else {
                    out.push_str(&format!("[{label}]({url})"));
                }
                rest = &candidate[inner.len() + 1..];
            }
            _ => {
                out.push('<');
                rest = candidate;
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
#[path = "stream_randomized.rs"]
mod randomized_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_whole_words_are_streamed_until_the_end() {
        assert_eq!(
            streamable("Visitors park on lev", false),
            "Visitors park on"
        );
        assert_eq!(
            streamable("Visitors park on lev", true),
            "Visitors park on lev"
        );
        // A mass mention cut in two is held back until it can be neutralised.
        let partial = streamable("hey <!her", false);
        assert_eq!(partial, "hey");
        let whole = streamable("hey <!here> all", false);
        assert!(whole.starts_with(&partial) && !whole.contains("<!here"));
    }

    #[test]
    fn a_fence_open_at_a_rollover_is_closed_and_reopened() {
        let code = format!("Try this:\n```rust\n{}", "let x = 1;\n".repeat(2_000));
        let sent = STREAM_MAX_CHARS - FENCE_CLOSE.len();
        let rollover = Rollover::at(&code, sent);
        assert_eq!(
            rollover,
            Rollover {
                close: true,
                reopen: "```rust\n".into()
            }
        );
        let next = rollover.next_message(&code, sent);
        assert!(next.starts_with("```rust\n"), "{}", &next[..20]);
        assert!(next.chars().count() <= STREAM_MAX_CHARS - FENCE_CLOSE.len());
        let first: String = code.chars().take(sent).collect::<String>() + FENCE_CLOSE;
        assert_eq!(
            open_fence(&first),
            None,
            "the first message's fence is closed"
        );

        let prose = "word ".repeat(3_000);
        let rollover = Rollover::at(&prose, sent);
        assert!(!rollover.close && rollover.reopen.is_empty());
        assert_eq!(
            rollover.next_message(&prose, sent),
            prose.chars().skip(sent).take(sent).collect::<String>()
        );
    }

    #[test]
    fn footer_links_become_markdown() {
        assert_eq!(
            markdown_links("*Sources*\n[1] <https://x.slack.com/archives/C1/p1|a.pdf>, p. 2"),
            "*Sources*\n[1] [a.pdf](https://x.slack.com/archives/C1/p1), p. 2"
        );
        assert_eq!(markdown_links("a < b <http://x>"), "a < b <http://x>");
        assert_eq!(
            markdown_links("<https://x/f|annual report.pdf>"),
            "[annual report.pdf](https://x/f)"
        );
    }
}
