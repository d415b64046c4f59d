//! Answers as jobs, end to end in one process: a question is queued through the real store
//! (`gateway::ask`), claimed by the chat role's worker pool, answered from the embedded
//! index by the real async-openai client against the fake OpenAI server, and streamed into the
//! placeholder on a recording platform (what sits across the network). Covers sources,
//! usage, conversations, fairness and positions, the per-user limit, a cut-off stream and a
//! chat process that dies mid-answer.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use engram::answer::{Answerer, RetrievalOptions};
use engram::brain::{AddedDocument, BrainId, BrainName, NewDocument, TenantId, TenantKey};
use engram::chat::budget::RateBudget;
use engram::chat::pool::{AnswerPool, UserRateLimit};
use engram::chat::service::{AnswerService, Outlet, Outlets, THINKING};
use engram::chat::streamer::StreamOptions;
use engram::chat::{ChannelKey, ChatPlatform, MessageRef, PlatformError};
use engram::config::{Config, LlmConfig, Secret};
use engram::gateway::{ask, NewQuestion};
use engram::index::{EmbeddedIndex, Index, IndexedDocument};
use engram::jobs::{JobId, JobKind, JobState, RetryPolicy};
use engram::llm::ChatModel;
use engram::render::Limits;
use engram::store::{self, Store};
use engram::telemetry::Metrics;
use engram::text::{count_tokens, ChunkDraft};
use engram::worker::{self, Shutdown, WorkerOptions};
use tokio::time::Instant;

use crate::fakes::openai::{self as fake_openai, Behaviour, FakeOpenAi};
use crate::support::{eventually, store_config};

/// A write the platform received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Write {
    Post {
        id: String,
        text: String,
        reply_to: Option<String>,
    },
    Edit {
        id: String,
        text: String,
    },
}

/// A chat platform that records every write with its time, and serves posted files from
/// memory.
#[derive(Debug, Default)]
pub struct Recorder {
    writes: Mutex<Vec<(Instant, Write)>>,
    next_id: Mutex<u32>,
    /// Reactions now on each message, in the order added.
    pub reactions: Mutex<HashMap<String, Vec<String>>>,
    /// Downloadable files by URL.
    pub files: Mutex<HashMap<String, Vec<u8>>>,
    /// The messages given 👍/👎 buttons, with the answer they vote on.
    pub voted: Mutex<Vec<(String, i64)>>,
}

impl Recorder {
    /// The text a message shows now.
    pub fn text_of(&self, id: &str) -> Option<String> {
        let writes = self.writes.lock().unwrap();
        writes.iter().rev().find_map(|(_, write)| match write {
            Write::Post { id: i, text, .. } | Write::Edit { id: i, text } if i == id => {
                Some(text.clone())
            }
            _ => None,
        })
    }

    /// Times of the edits of one message.
    fn edit_times(&self, id: &str) -> Vec<Instant> {
        let writes = self.writes.lock().unwrap();
        writes
            .iter()
            .filter_map(|(at, write)| match write {
                Write::Edit { id: i, .. } if i == id => Some(*at),
                _ => None,
            })
            .collect()
    }

    /// Every text a message has shown, in order.
    fn history_of(&self, id: &str) -> Vec<String> {
        let writes = self.writes.lock().unwrap();
        writes
            .iter()
            .filter_map(|(_, write)| match write {
                Write::Post { id: i, text, .. } | Write::Edit { id: i, text } if i == id => {
                    Some(text.clone())
                }
                _ => None,
            })
            .collect()
    }

    pub fn posts(&self) -> Vec<Write> {
        let writes = self.writes.lock().unwrap();
        writes
            .iter()
            .filter(|(_, write)| matches!(write, Write::Post { .. }))
            .map(|(_, write)| write.clone())
            .collect()
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
        reply_to: Option<&MessageRef>,
    ) -> Result<MessageRef, PlatformError> {
        let id = {
            let mut next = self.next_id.lock().unwrap();
            *next += 1;
            format!("m{next}")
        };
        self.writes.lock().unwrap().push((
            Instant::now(),
            Write::Post {
                id: id.clone(),
                text: text.into(),
                reply_to: reply_to.map(|m| m.id.clone()),
            },
        ));
        Ok(MessageRef {
            channel: channel.clone(),
            id,
        })
    }

    async fn edit(&self, message: &MessageRef, text: &str) -> Result<(), PlatformError> {
        self.writes.lock().unwrap().push((
            Instant::now(),
            Write::Edit {
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

    async fn react(&self, message: &MessageRef, emoji: &str) -> Result<(), PlatformError> {
        let mut reactions = self.reactions.lock().unwrap();
        reactions
            .entry(message.id.clone())
            .or_default()
            .push(emoji.into());
        Ok(())
    }

    async fn unreact(&self, message: &MessageRef, emoji: &str) -> Result<(), PlatformError> {
        let mut reactions = self.reactions.lock().unwrap();
        if let Some(on) = reactions.get_mut(&message.id) {
            on.retain(|e| e != emoji);
        }
        Ok(())
    }

    async fn download(&self, url: &str, max_bytes: u64) -> Result<Vec<u8>, PlatformError> {
        let files = self.files.lock().unwrap();
        let bytes = files
            .get(url)
            .ok_or_else(|| PlatformError::Gone(format!("{url}: 404")))?;
        if bytes.len() as u64 > max_bytes {
            return Err(PlatformError::Other("larger than allowed".into()));
        }
        Ok(bytes.clone())
    }
}

const HANDBOOK: &str = "Vacation requests go through the HR portal at least two weeks \
                        ahead. Your manager approves them within three working days.";

/// A SQLite store and embedded index holding one brain per tenant with the handbook.
pub struct World {
    pub store: Arc<dyn Store>,
    pub index: Arc<dyn Index>,
    pub platform: Arc<Recorder>,
    pub outlet: Outlet,
    /// The store's URL, for opening more of engram on the same file.
    pub url: String,
    _dir: tempfile::TempDir,
}

impl World {
    pub async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/engram.db", dir.path().display());
        let config = store_config(&url);
        let store = store::open(&config).await.unwrap();
        let index: Arc<dyn Index> = Arc::new(EmbeddedIndex::open(&config, None).await.unwrap());
        let platform = Arc::new(Recorder::default());
        let outlet = Outlet {
            platform: platform.clone(),
            // Roomy enough that the budget never delays these tests.
            budget: Arc::new(RateBudget::new(50, Duration::from_secs(1))),
        };
        Self {
            store,
            index,
            platform,
            outlet,
            url,
            _dir: dir,
        }
    }

    /// A tenant with a `handbook` brain that knows the handbook.
    pub async fn tenant(&self, key: &str) -> (TenantId, BrainId) {
        let tenant = self
            .store
            .ensure_tenant(&TenantKey::parse(key).unwrap())
            .await
            .unwrap();
        let brain = self
            .store
            .create_brain(tenant, &BrainName::parse("handbook").unwrap())
            .await
            .unwrap();
        let (AddedDocument::Pending(document) | AddedDocument::Known(document)) = self
            .store
            .add_document(&NewDocument {
                brain: brain.id,
                sha256: format!("sha-{key}"),
                file_name: "handbook.md".into(),
                source_link: Some("https://chat.example/files/1".into()),
                scope: String::new(),
                added_by: None,
            })
            .await
            .unwrap();
        let chunk = ChunkDraft {
            ordinal: 0,
            page: None,
            heading: Some("Time off".into()),
            text: HANDBOOK.into(),
            tokens: count_tokens(HANDBOOK) as u32,
        };
        self.index
            .index_document(IndexedDocument {
                brain: brain.id,
                document: document.id,
                pages: 1,
                ocr_pages: 0,
                chunks: &[chunk],
                vectors: None,
            })
            .await
            .unwrap();
        (tenant, brain.id)
    }

    pub fn service(&self, llm: &FakeOpenAi, max_in_flight: usize) -> AnswerService {
        let llm = LlmConfig {
            base_url: llm.base_url(),
            api_key: Secret::new("sk-never-shown"),
            model: "fake-model".into(),
            first_token_timeout_ms: 5_000,
            total_timeout_ms: 20_000,
            ..Config::defaults().llm
        };
        let mut outlets = Outlets::default();
        outlets.insert("test", self.outlet.clone());
        AnswerService {
            answerer: Answerer {
                store: self.store.clone(),
                index: self.index.clone(),
                embedder: None,
                chat: ChatModel::from_config(&llm).unwrap(),
                llm,
                retrieval: RetrievalOptions::default(),
                budgets: engram::config::BudgetsConfig::NONE,
                metrics: Arc::new(Metrics::default()),
                slow_answer: Duration::from_secs(15),
            },
            outlets,
            pool: AnswerPool::new(max_in_flight),
            rate_limit: None,
            stream: StreamOptions::new(Duration::from_millis(100)),
            attachments: engram::chat::attachments::AttachmentReader::from_config(
                &Config::defaults().ingest,
            ),
        }
    }

    async fn ask(&self, tenant: TenantId, brain: BrainId, user: &str, text: &str) -> Asked {
        self.ask_in(tenant, brain, user, text, None).await
    }

    async fn ask_in(
        &self,
        tenant: TenantId,
        brain: BrainId,
        user: &str,
        text: &str,
        conversation: Option<&str>,
    ) -> Asked {
        let question = NewQuestion {
            bound_channel: None,
            platform: "test".into(),
            tenant,
            brain,
            channel: ChannelKey(format!("test:{}", tenant.0)),
            reply_to: Some(MessageRef {
                channel: ChannelKey(format!("test:{}", tenant.0)),
                id: format!("question-from-{user}"),
            }),
            conversation: conversation.map(str::to_string),
            user: user.into(),
            text: text.into(),
            attachments: Vec::new(),
        };
        let asked = ask(self.store.as_ref(), &self.outlet, question, 3)
            .await
            .unwrap();
        Asked {
            job: asked.job,
            placeholder: asked.placeholder.expect("the placeholder was posted").id,
        }
    }

    pub async fn state(&self, job: JobId) -> JobState {
        self.store.job(job).await.unwrap().unwrap().state
    }

    pub async fn wait_done(&self, jobs: &[JobId], limit: Duration) {
        let all_done = eventually(limit, || async {
            for job in jobs {
                if self.state(*job).await != JobState::Done {
                    return false;
                }
            }
            true
        })
        .await;
        let mut states = Vec::new();
        for job in jobs {
            states.push(self.store.job(*job).await.unwrap().unwrap());
        }
        assert!(all_done, "answer jobs did not finish: {states:#?}");
    }
}

struct Asked {
    job: JobId,
    placeholder: String,
}

fn options(name: &str, concurrency: usize, lease: Duration) -> WorkerOptions {
    WorkerOptions {
        kind: JobKind::Answer,
        concurrency,
        lease,
        retry: RetryPolicy {
            base: Duration::from_millis(50),
            max: Duration::from_millis(200),
        },
        name: name.into(),
        idle_recheck: Duration::from_millis(200),
    }
}

/// Runs the chat role's worker pool with `service` until the returned shutdown is cancelled.
pub fn chat_role(world: &World, service: AnswerService, concurrency: usize) -> Shutdown {
    let shutdown = Shutdown::default();
    tokio::spawn(worker::run(
        world.store.clone(),
        Arc::new(service),
        options("chat", concurrency, Duration::from_secs(30)),
        shutdown.clone(),
        Arc::new(Metrics::default()),
    ));
    shutdown
}

pub fn llm_reply(reply: &str, token_interval: Duration) -> Behaviour {
    Behaviour {
        reply: reply.into(),
        token_interval,
        ..Behaviour::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_question_streams_into_its_placeholder_with_sources_and_usage() {
    let world = World::new().await;
    let (tenant, brain) = world.tenant("discord:1").await;
    let reply = "Request it in the HR portal two weeks ahead [1]. Your manager approves it.";
    let llm = fake_openai::start(llm_reply(reply, Duration::from_millis(40))).await;
    let shutdown = chat_role(&world, world.service(&llm, 4), 8);

    let asked = world
        .ask(tenant, brain, "ann", "How do I request vacation?")
        .await;
    assert_eq!(
        world.platform.posts()[0],
        Write::Post {
            id: asked.placeholder.clone(),
            text: THINKING.into(),
            reply_to: Some("question-from-ann".into()),
        },
        "the placeholder replies to the question at once"
    );
    world.wait_done(&[asked.job], Duration::from_secs(20)).await;
    shutdown.stop_claiming.cancel();

    let shown = world.platform.text_of(&asked.placeholder).unwrap();
    assert_eq!(
        shown,
        format!(
            "{reply}\n\n**Sources**\n[1] [handbook.md](<https://chat.example/files/1>) — Time off"
        )
    );
    let history = world.platform.history_of(&asked.placeholder);
    assert!(
        history.len() > 3,
        "the answer grew by edits over ~0.5 s: {history:#?}"
    );
    let edits = world.platform.edit_times(&asked.placeholder);
    for pair in edits.windows(2) {
        assert!(
            pair[1] - pair[0] >= Duration::from_millis(95),
            "edits at most every edit_interval: {:?}",
            pair[1] - pair[0]
        );
    }
    assert_eq!(world.platform.posts().len(), 1, "one message: no rollover");
    let usage = world.store.usage_totals(tenant, 0).await.unwrap();
    assert_eq!(usage.len(), 1);
    assert_eq!(usage[0].model, "fake-model");
    assert_eq!(
        usage[0].completion_tokens, 14,
        "one token per streamed word"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follow_up_in_the_conversation_is_answered_in_context() {
    let world = World::new().await;
    let (tenant, brain) = world.tenant("discord:1").await;
    let llm = fake_openai::start(llm_reply(
        "Through the HR portal [1].",
        Duration::from_millis(1),
    ))
    .await;
    let shutdown = chat_role(&world, world.service(&llm, 4), 8);

    let thread = Some("thread-7");
    let first = world
        .ask_in(tenant, brain, "ann", "How do I request vacation?", thread)
        .await;
    world.wait_done(&[first.job], Duration::from_secs(20)).await;
    let follow_up = world
        .ask_in(
            tenant,
            brain,
            "ann",
            "And who approves the vacation?",
            thread,
        )
        .await;
    world
        .wait_done(&[follow_up.job], Duration::from_secs(20))
        .await;
    shutdown.stop_claiming.cancel();

    // The history turns are messages of their own, so only the follow-up's prompt has them.
    let inputs = llm.inputs.lock().unwrap().clone();
    assert!(
        inputs
            .iter()
            .any(|input| input == "How do I request vacation?"),
        "the follow-up's prompt carries the first question: {inputs:#?}"
    );
    assert!(
        inputs
            .iter()
            .any(|input| input == "Through the HR portal [1]."),
        "and the first answer: {inputs:#?}"
    );
    let turns = world
        .store
        .recent_turns(tenant, "thread-7", 10)
        .await
        .unwrap();
    assert_eq!(turns.len(), 4, "two questions and two answers");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_questions_are_told_their_place_and_tenants_take_turns() {
    let world = World::new().await;
    let (busy, busy_brain) = world.tenant("discord:1").await;
    let (quiet, quiet_brain) = world.tenant("discord:2").await;
    let llm = fake_openai::start(llm_reply(
        "Use the HR portal [1] two weeks ahead.",
        Duration::from_millis(60),
    ))
    .await;
    // One answer at a time; the pool holds the rest.
    let shutdown = chat_role(&world, world.service(&llm, 1), 16);

    let mut busy_asks = Vec::new();
    for n in 0..4 {
        busy_asks.push(
            world
                .ask(
                    busy,
                    busy_brain,
                    &format!("b{n}"),
                    "How do I request vacation?",
                )
                .await,
        );
    }
    // Let the pool take the busy tenant's questions before the quiet one asks.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let quiet_ask = world
        .ask(quiet, quiet_brain, "q", "How do I request vacation?")
        .await;
    let mut all: Vec<JobId> = busy_asks.iter().map(|a| a.job).collect();
    all.push(quiet_ask.job);
    world.wait_done(&all, Duration::from_secs(30)).await;
    shutdown.stop_claiming.cancel();

    let waited = world.platform.history_of(&busy_asks[2].placeholder);
    assert!(
        waited.iter().any(|text| text.contains("in line")),
        "a waiting question is told its place: {waited:#?}"
    );
    let finished = |placeholder: &str| *world.platform.edit_times(placeholder).last().unwrap();
    assert!(
        finished(&quiet_ask.placeholder) < finished(&busy_asks[3].placeholder),
        "the quiet tenant is served before the busy tenant's last question"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_over_the_limit_is_told_politely_and_nothing_is_asked() {
    let world = World::new().await;
    let (tenant, brain) = world.tenant("discord:1").await;
    let llm = fake_openai::start(llm_reply("Yes [1].", Duration::from_millis(1))).await;
    let mut service = world.service(&llm, 4);
    service.rate_limit = Some(UserRateLimit::new(2, Duration::from_secs(60)));
    let shutdown = chat_role(&world, service, 8);

    let mut asks = Vec::new();
    for _ in 0..3 {
        let asked = world
            .ask(tenant, brain, "ann", "How do I request vacation?")
            .await;
        world.wait_done(&[asked.job], Duration::from_secs(20)).await;
        asks.push(asked);
    }
    let other = world
        .ask(tenant, brain, "bob", "How do I request vacation?")
        .await;
    world.wait_done(&[other.job], Duration::from_secs(20)).await;
    shutdown.stop_claiming.cancel();

    let third = world.platform.text_of(&asks[2].placeholder).unwrap();
    assert!(
        third.contains("try again in"),
        "the third question in a minute is refused politely: {third}"
    );
    assert_eq!(
        llm.requests.load(std::sync::atomic::Ordering::SeqCst),
        3,
        "two of ann's questions and bob's reached the LLM"
    );
    assert!(world
        .platform
        .text_of(&other.placeholder)
        .unwrap()
        .starts_with("Yes [1]."));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_cut_mid_answer_ends_the_message_with_a_notice() {
    let world = World::new().await;
    let (tenant, brain) = world.tenant("discord:1").await;
    let llm = fake_openai::start(Behaviour {
        drop_after_words: Some(3),
        ..llm_reply(
            "Use the HR portal two weeks ahead.",
            Duration::from_millis(5),
        )
    })
    .await;
    let shutdown = chat_role(&world, world.service(&llm, 4), 8);
    let asked = world
        .ask(tenant, brain, "ann", "How do I request vacation?")
        .await;
    world.wait_done(&[asked.job], Duration::from_secs(20)).await;
    shutdown.stop_claiming.cancel();
    let shown = world.platform.text_of(&asked.placeholder).unwrap();
    assert!(
        shown.starts_with("Use the HR \n\n[The answer was cut off:"),
        "{shown}"
    );
    assert!(shown.contains("**Sources**"), "{shown}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chat_process_that_dies_mid_answer_is_replaced_and_the_answer_completes_once() {
    let world = World::new().await;
    let (tenant, brain) = world.tenant("discord:1").await;
    let reply = "Request it in the HR portal two weeks ahead [1], then wait for approval.";
    let llm = fake_openai::start(llm_reply(reply, Duration::from_millis(100))).await;

    // The first chat "process": its own runtime, killed mid-answer with everything on it.
    let doomed = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    doomed.spawn(worker::run(
        world.store.clone(),
        Arc::new(world.service(&llm, 4)),
        options("doomed", 4, Duration::from_millis(600)),
        Shutdown::default(),
        Arc::new(Metrics::default()),
    ));
    let asked = world
        .ask(tenant, brain, "ann", "How do I request vacation?")
        .await;
    let started = eventually(Duration::from_secs(10), || async {
        world
            .platform
            .text_of(&asked.placeholder)
            .is_some_and(|text| text.starts_with("Request"))
    })
    .await;
    assert!(started, "the first process began streaming");
    doomed.shutdown_background();

    let survivor = Shutdown::default();
    tokio::spawn(worker::run(
        world.store.clone(),
        Arc::new(world.service(&llm, 4)),
        options("survivor", 4, Duration::from_millis(600)),
        survivor.clone(),
        Arc::new(Metrics::default()),
    ));
    world.wait_done(&[asked.job], Duration::from_secs(30)).await;
    survivor.stop_claiming.cancel();

    let job = world.store.job(asked.job).await.unwrap().unwrap();
    assert_eq!(
        job.attempts, 2,
        "the lease ran out and another worker took over"
    );
    assert_eq!(
        job.worker.as_deref().map(|w| w.starts_with("survivor")),
        Some(true)
    );
    let shown = world.platform.text_of(&asked.placeholder).unwrap();
    assert!(shown.starts_with(reply), "{shown}");
    assert_eq!(
        world.platform.posts().len(),
        1,
        "the answer is completed in the same message, never a second answer"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_for_a_platform_this_process_lacks_is_dead_with_a_reason() {
    let world = World::new().await;
    let (tenant, brain) = world.tenant("discord:1").await;
    let llm = fake_openai::start(llm_reply("Yes.", Duration::from_millis(1))).await;
    let mut service = world.service(&llm, 4);
    service.outlets = Outlets::default();
    let shutdown = chat_role(&world, service, 4);
    let asked = world
        .ask(tenant, brain, "ann", "How do I request vacation?")
        .await;
    let dead = eventually(Duration::from_secs(10), || async {
        world.state(asked.job).await == JobState::Dead
    })
    .await;
    shutdown.stop_claiming.cancel();
    assert!(dead);
    let job = world.store.job(asked.job).await.unwrap().unwrap();
    assert!(
        job.last_error
            .as_deref()
            .is_some_and(|e| e.contains("no `test` connection")),
        "{:?}",
        job.last_error
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_llm_is_named_in_chat_before_the_quoted_passages() {
    let world = World::new().await;
    let (tenant, brain) = world.tenant("discord:1").await;
    let llm = fake_openai::start(Behaviour {
        api_key: Some("sk-the-right-key".into()),
        ..llm_reply("never sent", Duration::from_millis(5))
    })
    .await;
    let shutdown = chat_role(&world, world.service(&llm, 4), 8);
    let asked = world
        .ask(tenant, brain, "ann", "How do I request vacation?")
        .await;
    world.wait_done(&[asked.job], Duration::from_secs(20)).await;
    shutdown.stop_claiming.cancel();
    let shown = world.platform.text_of(&asked.placeholder).unwrap();
    assert_eq!(
        shown,
        format!(
            "⚠️ The LLM rejected engram's API key — an admin can run `engram doctor`.\n\n\
             Here is what the documents say:\n\n> Vacation requests go through the HR portal at \
             least two weeks ahead. [1]\n\n**Sources**\n\
             [1] [handbook.md](<https://chat.example/files/1>) — Time off"
        )
    );
    assert!(!shown.contains("sk-"), "{shown}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_question_the_brain_cannot_answer_is_told_so_in_chat() {
    let world = World::new().await;
    let (tenant, brain) = world.tenant("discord:1").await;
    let mut service = world.service(&fake_openai::start(Behaviour::default()).await, 4);
    // No LLM: the extractive answer.
    service.answerer.chat = None;
    let shutdown = chat_role(&world, service, 8);
    let asked = world
        .ask(
            tenant,
            brain,
            "ann",
            "How many vacation days do new employees get in their first year?",
        )
        .await;
    world.wait_done(&[asked.job], Duration::from_secs(20)).await;
    shutdown.stop_claiming.cancel();
    let shown = world.platform.text_of(&asked.placeholder).unwrap();
    assert_eq!(
        shown,
        "I found nothing in this brain that answers that. The closest documents: handbook.md."
    );
}
