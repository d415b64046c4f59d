//! The edit streamer: one task per answer grows the answer's message to the latest text the
//! producer put in a `watch` — at most once per `edit_interval`, and only when the channel's
//! budget allows — so stale intermediate states are dropped, never queued. Text past the
//! platform's limit continues in new messages. When the producer is done (drops its sender),
//! the final text is delivered whatever it takes (retried on rate limits).

use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use super::budget::RateBudget;
use super::{ChatPlatform, MessageRef, PlatformError};
use crate::render::{neutralise_mass_mentions, split_message};

/// How an answer is streamed.
#[derive(Debug, Clone, Copy)]
pub struct StreamOptions {
    /// Least time between two writes of one answer (`chat.edit_interval_ms`).
    pub edit_interval: Duration,
    /// Tries per write of the final text.
    pub final_attempts: u32,
}

impl StreamOptions {
    pub fn new(edit_interval: Duration) -> Self {
        Self {
            edit_interval,
            final_attempts: 8,
        }
    }
}

/// Grows `placeholder` (and, past the limit, new messages after it) to follow `text` until
/// its sender is dropped, then delivers the last text. Returns every message of the answer.
pub async fn stream_answer(
    platform: &dyn ChatPlatform,
    budget: &RateBudget,
    placeholder: MessageRef,
    mut text: watch::Receiver<String>,
    options: StreamOptions,
) -> Result<Vec<MessageRef>, PlatformError> {
    let mut answer = Answer {
        platform,
        budget,
        messages: vec![placeholder],
        shown: vec![String::new()],
        last_write: None,
        options,
    };
    loop {
        let producer_gone = text.changed().await.is_err();
        if !producer_gone {
            // Wait out the interval; whatever arrives meanwhile replaces what is pending.
            if let Some(last) = answer.last_write {
                tokio::time::sleep_until(last + options.edit_interval).await;
            }
        }
        let latest = text.borrow_and_update().clone();
        let is_final = producer_gone || text.has_changed().is_err();
        answer.show(&latest, is_final).await?;
        if is_final {
            return Ok(answer.messages);
        }
    }
}

struct Answer<'a> {
    platform: &'a dyn ChatPlatform,
    budget: &'a RateBudget,
    messages: Vec<MessageRef>,
    /// What each message shows now.
    shown: Vec<String>,
    /// When the platform last answered a write of this answer.
    last_write: Option<Instant>,
    options: StreamOptions,
}

impl Answer<'_> {
    /// Brings the messages to `text`. Intermediate states give up on a failed write (the next
    /// state will try again); the final state retries until delivered.
    async fn show(&mut self, text: &str, is_final: bool) -> Result<(), PlatformError> {
        let safe = neutralise_mass_mentions(text);
        if safe.trim().is_empty() {
            return Ok(());
        }
        let parts = split_message(&safe, self.platform.limits());
        for (i, part) in parts.iter().enumerate() {
            if self.shown.get(i) == Some(part) {
                continue;
            }
            let attempts = if is_final {
                self.options.final_attempts
            } else {
                1
            };
            match self.write(i, part, attempts).await {
                Ok(()) => {}
                Err(PlatformError::Gone(reason)) => return Err(PlatformError::Gone(reason)),
                Err(error) if is_final => return Err(error),
                Err(error) => {
                    tracing::debug!(%error, "intermediate edit skipped");
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// Edits message `i` (or posts it, continuing the answer) with `part`.
    async fn write(&mut self, i: usize, part: &str, attempts: u32) -> Result<(), PlatformError> {
        let channel = self.messages[0].channel.clone();
        let mut attempt = 1;
        loop {
            self.budget.acquire(&channel).await;
            let result = match self.messages.get(i) {
                Some(message) => self.platform.edit(message, part).await,
                None => {
                    let previous = self.messages.last().cloned();
                    self.platform
                        .post(&channel, part, previous.as_ref())
                        .await
                        .map(|message| {
                            self.messages.push(message);
                            self.shown.push(String::new());
                        })
                }
            };
            // Counted from when the platform answered: it saw this write before answering, so
            // the next write reaches it at least `edit_interval` later, whatever the latency.
            self.last_write = Some(Instant::now());
            match result {
                Ok(()) => {
                    self.shown[i] = part.to_string();
                    return Ok(());
                }
                Err(PlatformError::RateLimited { retry_after }) => {
                    self.budget.rate_limited(&channel, retry_after);
                    if attempt >= attempts {
                        return Err(PlatformError::RateLimited { retry_after });
                    }
                }
                Err(PlatformError::Gone(reason)) => return Err(PlatformError::Gone(reason)),
                Err(other) => {
                    if attempt >= attempts {
                        return Err(other);
                    }
                    tokio::time::sleep(Duration::from_millis(500) * attempt).await;
                }
            }
            attempt += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::{Arc, Mutex};

    use async_trait::async_trait;

    use super::*;
    use crate::chat::ChannelKey;
    use crate::render::Limits;

    #[derive(Debug, Clone, PartialEq, Eq)]
    enum Op {
        Post { id: String, text: String },
        Edit { id: String, text: String },
    }

    /// Records every write with its (paused-clock) time; fails writes as planned.
    #[derive(Debug, Default)]
    struct Recorder {
        log: Mutex<Vec<(Instant, Op)>>,
        failures: Mutex<VecDeque<Option<PlatformError>>>,
        next_id: Mutex<u32>,
    }

    impl Recorder {
        fn planned_failure(&self) -> Option<PlatformError> {
            self.failures.lock().unwrap().pop_front().flatten()
        }

        fn ops(&self) -> Vec<(Instant, Op)> {
            self.log.lock().unwrap().clone()
        }

        /// The final text of each message, in order of creation.
        fn texts(&self) -> Vec<String> {
            let mut texts: Vec<(String, String)> = vec![("placeholder".into(), String::new())];
            for (_, op) in self.ops() {
                match op {
                    Op::Post { id, text } => texts.push((id, text)),
                    Op::Edit { id, text } => {
                        texts.iter_mut().find(|(i, _)| *i == id).unwrap().1 = text;
                    }
                }
            }
            texts.into_iter().map(|(_, text)| text).collect()
        }
    }

    #[async_trait]
    impl ChatPlatform for Recorder {
        fn limits(&self) -> Limits {
            Limits::DISCORD
        }

        async fn post(
            &self,
            channel: &ChannelKey,
            text: &str,
            _reply_to: Option<&MessageRef>,
        ) -> Result<MessageRef, PlatformError> {
            if let Some(error) = self.planned_failure() {
                return Err(error);
            }
            let mut next = self.next_id.lock().unwrap();
            *next += 1;
            let id = format!("m{next}");
            self.log.lock().unwrap().push((
                Instant::now(),
                Op::Post {
                    id: id.clone(),
                    text: text.into(),
                },
            ));
            Ok(MessageRef {
                channel: channel.clone(),
                id,
            })
        }

        async fn edit(&self, message: &MessageRef, text: &str) -> Result<(), PlatformError> {
            if let Some(error) = self.planned_failure() {
                return Err(error);
            }
            self.log.lock().unwrap().push((
                Instant::now(),
                Op::Edit {
                    id: message.id.clone(),
                    text: text.into(),
                },
            ));
            Ok(())
        }

        async fn react(&self, _message: &MessageRef, _emoji: &str) -> Result<(), PlatformError> {
            Ok(())
        }

        async fn unreact(&self, _message: &MessageRef, _emoji: &str) -> Result<(), PlatformError> {
            Ok(())
        }

        async fn download(&self, _url: &str, _max_bytes: u64) -> Result<Vec<u8>, PlatformError> {
            Err(PlatformError::Other("no files here".into()))
        }
    }

    fn placeholder(channel: &str) -> MessageRef {
        MessageRef {
            channel: ChannelKey(channel.into()),
            id: "placeholder".into(),
        }
    }

    /// Streams `words` into a watch, one every `every`, then `footer`, then drops the sender.
    fn produce(
        words: Vec<String>,
        every: Duration,
        footer: &'static str,
    ) -> watch::Receiver<String> {
        let (sender, receiver) = watch::channel(String::new());
        tokio::spawn(async move {
            let mut text = String::new();
            for word in words {
                tokio::time::sleep(every).await;
                text.push_str(&word);
                sender.send_replace(text.clone());
            }
            text.push_str(footer);
            sender.send_replace(text);
        });
        receiver
    }

    /// Streams `text` into `start` with a 1 s edit interval.
    async fn run(
        platform: &Recorder,
        budget: &RateBudget,
        start: MessageRef,
        text: watch::Receiver<String>,
    ) -> Result<Vec<MessageRef>, PlatformError> {
        stream_answer(
            platform,
            budget,
            start,
            text,
            StreamOptions::new(Duration::from_millis(1000)),
        )
        .await
    }

    fn words(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("word{i} ")).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn edits_keep_the_cadence_and_the_final_text_is_exact() {
        let platform = Recorder::default();
        let budget = RateBudget::new(5, Duration::from_secs(5));
        let text = produce(
            words(100),
            Duration::from_millis(50),
            "\n\nSources: [1] a.pdf",
        );
        let messages = run(&platform, &budget, placeholder("c"), text)
            .await
            .unwrap();
        assert_eq!(messages.len(), 1);
        let expected: String = words(100).concat() + "\n\nSources: [1] a.pdf";
        assert_eq!(platform.texts(), [expected]);
        let ops = platform.ops();
        assert!(
            ops.len() >= 4 && ops.len() <= 7,
            "about one edit a second: {}",
            ops.len()
        );
        for pair in ops.windows(2) {
            assert!(
                pair[1].0 - pair[0].0 >= Duration::from_millis(1000),
                "edited too soon"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_rate_limit_pushes_the_next_edit_back_and_the_end_still_lands() {
        let platform = Recorder::default();
        platform.failures.lock().unwrap().extend([
            None,
            Some(PlatformError::RateLimited {
                retry_after: Duration::from_secs(3),
            }),
        ]);
        let budget = RateBudget::new(5, Duration::from_secs(5));
        let text = produce(words(60), Duration::from_millis(50), " [done]");
        run(&platform, &budget, placeholder("c"), text)
            .await
            .unwrap();
        let ops = platform.ops();
        assert!(
            ops[1].0 - ops[0].0 >= Duration::from_secs(4),
            "1 s interval + 3 s retry-after"
        );
        assert!(
            platform.texts()[0].ends_with("word59  [done]"),
            "{:?}",
            platform.texts()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_final_text_is_retried_until_delivered() {
        let platform = Recorder::default();
        let budget = RateBudget::new(5, Duration::from_secs(5));
        let (sender, receiver) = watch::channel(String::new());
        sender.send_replace("All done.".into());
        drop(sender);
        platform.failures.lock().unwrap().extend([
            Some(PlatformError::RateLimited {
                retry_after: Duration::from_secs(2),
            }),
            Some(PlatformError::Other("502".into())),
        ]);
        run(&platform, &budget, placeholder("c"), receiver)
            .await
            .unwrap();
        assert_eq!(platform.texts(), ["All done."]);
    }

    #[tokio::test(start_paused = true)]
    async fn answers_in_one_channel_share_its_budget() {
        let platform = Arc::new(Recorder::default());
        let budget = Arc::new(RateBudget::new(5, Duration::from_secs(5)));
        let mut tasks = Vec::new();
        for n in 0..3 {
            let (platform, budget) = (platform.clone(), budget.clone());
            tasks.push(tokio::spawn(async move {
                let text = produce(words(80), Duration::from_millis(50), "");
                let mut start = placeholder("shared");
                start.id = format!("p{n}");
                stream_answer(
                    platform.as_ref(),
                    &budget,
                    start,
                    text,
                    StreamOptions::new(Duration::from_millis(1000)),
                )
                .await
                .unwrap();
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        let times: Vec<Instant> = platform.ops().into_iter().map(|(at, _)| at).collect();
        for (i, &at) in times.iter().enumerate() {
            let in_window = times[i..]
                .iter()
                .take_while(|&&later| later - at < Duration::from_secs(5))
                .count();
            assert!(
                in_window <= 5,
                "{in_window} writes within 5 s in one channel"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_long_answer_continues_in_new_messages_without_pinging() {
        let platform = Recorder::default();
        let budget = RateBudget::new(5, Duration::from_secs(5));
        let mut long: Vec<String> = (0..900).map(|i| format!("w{i} ")).collect();
        long.push("@everyone ".into());
        let text = produce(long.clone(), Duration::from_millis(5), "");
        let messages = run(&platform, &budget, placeholder("c"), text)
            .await
            .unwrap();
        assert!(messages.len() >= 3, "{} messages", messages.len());
        let texts = platform.texts();
        assert!(texts.iter().all(|t| t.chars().count() <= 2000));
        assert_eq!(
            texts.concat(),
            long.concat().replace("@everyone", "@\u{200B}everyone")
        );
    }
}
