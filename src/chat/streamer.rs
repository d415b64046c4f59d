//! The edit streamer: one task per answer grows the answer's message to the latest text the
//! producer put in a `watch` — at most once per `edit_interval`, and only when the channel's
//! budget allows — so stale intermediate states are dropped, never queued. Text past the
//! platform's limit continues in new messages. When the producer is done (drops its sender),
//! the final text is delivered whatever it takes (retried on rate limits), its last message
//! with the answer's 👍/👎 buttons in the same write.

use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use super::budget::RateBudget;
use super::feedback::AnswerId;
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
/// its sender is dropped, then delivers the last text, with the buttons for `answer` (when
/// set by then) on its last message. Returns every message of the answer.
pub async fn stream_answer(
    platform: &dyn ChatPlatform,
    budget: &RateBudget,
    placeholder: MessageRef,
    mut text: watch::Receiver<String>,
    options: StreamOptions,
    answer: &AnswerId,
) -> Result<Vec<MessageRef>, PlatformError> {
    let answer_id = answer;
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
        let votes = if is_final { answer_id.get() } else { None };
        answer.show(&latest, is_final, votes).await?;
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
    /// Brings the messages to `text`, the last one with the buttons for `votes` when given.
    /// Intermediate states give up on a failed write (the next state will try again); the
    /// final state retries until delivered.
    async fn show(
        &mut self,
        text: &str,
        is_final: bool,
        votes: Option<i64>,
    ) -> Result<(), PlatformError> {
        let safe = neutralise_mass_mentions(text);
        if safe.trim().is_empty() {
            return Ok(());
        }
        let parts = split_message(&safe, self.platform.limits());
        let last = parts.len() - 1;
        for (i, part) in parts.iter().enumerate() {
            let votes = votes.filter(|_| i == last);
            if self.shown.get(i) == Some(part) && votes.is_none() {
                continue;
            }
            let attempts = if is_final {
                self.options.final_attempts
            } else {
                1
            };
            // A message is posted without buttons (a post cannot carry them here); the
            // buttons come with the edit that follows.
            let written = match (self.messages.get(i), votes) {
                (None, Some(_)) => match self.write(i, part, attempts, None).await {
                    Ok(()) => self.write(i, part, attempts, votes).await,
                    Err(error) => Err(error),
                },
                _ => self.write(i, part, attempts, votes).await,
            };
            match written {
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

    /// Edits message `i` (with the buttons for `votes` when given) or posts it, continuing
    /// the answer, with `part`.
    async fn write(
        &mut self,
        i: usize,
        part: &str,
        attempts: u32,
        votes: Option<i64>,
    ) -> Result<(), PlatformError> {
        let channel = self.messages[0].channel.clone();
        let mut attempt = 1;
        loop {
            self.budget.acquire(&channel).await;
            let result = match (self.messages.get(i), votes) {
                (Some(message), Some(answer)) => {
                    self.platform.edit_with_votes(message, part, answer).await
                }
                (Some(message), None) => self.platform.edit(message, part).await,
                (None, _) => {
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
        /// The messages given buttons, with the answer they vote on.
        voted: Mutex<Vec<(String, i64)>>,
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

        async fn edit_with_votes(
            &self,
            message: &MessageRef,
            text: &str,
            answer: i64,
        ) -> Result<(), PlatformError> {
            self.edit(message, text).await?;
            self.voted
                .lock()
                .unwrap()
                .push((message.id.clone(), answer));
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
            &AnswerId::default(),
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
                    &AnswerId::default(),
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

    /// Streams `words` as an answer recorded as answer 42 (set, as the producer does, before
    /// the sender is dropped).
    async fn run_recorded(platform: &Recorder, words: Vec<String>) -> Vec<MessageRef> {
        let budget = RateBudget::new(5, Duration::from_secs(5));
        let answer = AnswerId::default();
        let (sender, receiver) = watch::channel(String::new());
        let producer = {
            let answer = answer.clone();
            tokio::spawn(async move {
                let mut text = String::new();
                for word in words {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    text.push_str(&word);
                    sender.send_replace(text.clone());
                }
                answer.set(42);
            })
        };
        let messages = stream_answer(
            platform,
            &budget,
            placeholder("c"),
            receiver,
            StreamOptions::new(Duration::from_millis(1000)),
            &answer,
        )
        .await
        .unwrap();
        producer.await.unwrap();
        messages
    }

    #[tokio::test(start_paused = true)]
    async fn the_buttons_come_with_the_final_write_on_the_last_message_only() {
        for n in [3, 900] {
            let platform = Recorder::default();
            let messages = run_recorded(&platform, words(n)).await;
            let last = messages.last().unwrap().id.clone();
            assert_eq!(
                *platform.voted.lock().unwrap(),
                [(last, 42)],
                "{n} words in {} messages",
                messages.len()
            );
            let shown = platform.texts().concat();
            let expected = words(n).concat();
            assert!(
                shown.split_whitespace().eq(expected.split_whitespace()),
                "the whole answer is shown: {shown:?}"
            );
            // The buttons' write is the last write.
            let ops = platform.ops();
            let (_, Op::Edit { id, .. }) = ops.last().unwrap() else {
                panic!("the last write is an edit: {ops:?}");
            };
            assert_eq!(*id, messages.last().unwrap().id);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_answer_not_recorded_gets_no_buttons() {
        let platform = Recorder::default();
        let budget = RateBudget::new(5, Duration::from_secs(5));
        let text = produce(words(10), Duration::from_millis(50), "");
        run(&platform, &budget, placeholder("c"), text)
            .await
            .unwrap();
        assert!(platform.voted.lock().unwrap().is_empty());
    }
}
