//! The gateway core (`gateway`), platform-agnostic, end to end in one process: events as
//! an adapter hands them over, acted on once; questions answered by the chat role; files
//! learned by the ingest role (the real extractor) with ⏳ / ✅ / ❌ and a summary; `/brain`
//! commands with the permission check and tenant isolation.

use std::sync::Arc;
use std::time::Duration;

use engram::app;
use engram::brain::{BindingMode, BrainName, TenantKey};
use engram::chat::{ChannelKey, MessageRef};
use engram::config::{Config, StoreUrl};
use engram::gateway::{
    BrainCommand, ChatEvent, Gateway, Handled, Origin, PostedFile, DONE, FAILED, UNBOUND_HINT,
    WORKING,
};
use engram::jobs::{JobKind, RetryPolicy};
use engram::telemetry::Metrics;
use engram::worker::{self, Shutdown, WorkerOptions};

use crate::answers::{chat_role, llm_reply, World, Write};
use crate::fakes::openai as fake_openai;
use crate::support::eventually;

fn gateway(world: &World) -> Gateway {
    let mut config = Config::defaults();
    config.ingest.max_file_bytes = 1024 * 1024;
    Gateway {
        store: world.store.clone(),
        index: world.index.clone(),
        outlet: world.outlet.clone(),
        ingest: config.ingest,
        max_attempts: 3,
        metrics: Default::default(),
        learn_messages: true,
        budgets: config.budgets,
    }
}

fn origin(event: &str, tenant: &str, channel: &str, user: &str) -> Origin {
    let channel = ChannelKey(channel.into());
    Origin {
        platform: "test".into(),
        event_id: event.into(),
        tenant: TenantKey::parse(tenant).unwrap(),
        channel: channel.clone(),
        parent: None,
        message: Some(MessageRef {
            channel,
            id: format!("msg-{event}"),
        }),
        user: user.into(),
    }
}

/// Runs the ingest role (the real pipeline and extractor) on the world's store.
async fn ingest_role(world: &World) -> Shutdown {
    let mut config = Config::defaults();
    config.store.url = StoreUrl::new(world.url.clone());
    config.ingest.extractor = crate::ingest::extractor().display().to_string();
    let pipeline = app::ingest_pipeline(&config, world.store.clone())
        .await
        .unwrap();
    let shutdown = Shutdown::default();
    tokio::spawn(worker::run(
        world.store.clone(),
        Arc::new(pipeline),
        WorkerOptions {
            kind: JobKind::Ingest,
            concurrency: 2,
            lease: Duration::from_secs(30),
            retry: RetryPolicy {
                base: Duration::from_millis(50),
                max: Duration::from_millis(200),
            },
            name: "ingest".into(),
            idle_recheck: Duration::from_millis(200),
        },
        shutdown.clone(),
        Arc::new(Metrics::default()),
    ));
    shutdown
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_question_is_answered_once_however_often_it_is_delivered() {
    let world = World::new().await;
    let (tenant, brain) = world.tenant("discord:1").await;
    world
        .store
        .bind_channel(tenant, "discord:10", brain, BindingMode::Ask)
        .await
        .unwrap();
    let llm = fake_openai::start(llm_reply(
        "Use the HR portal [1].",
        Duration::from_millis(1),
    ))
    .await;
    let shutdown = chat_role(&world, world.service(&llm, 4), 8);
    let gateway = gateway(&world);
    let event = ChatEvent::Question {
        origin: origin("e1", "discord:1", "discord:10", "ann"),
        text: "How do I request vacation?".into(),
        conversation: None,
        continues: None,
        attachments: Vec::new(),
    };

    let first = gateway.handle(event.clone()).await.unwrap();
    let Handled::Asked {
        job,
        placeholder: Some(placeholder),
    } = first
    else {
        panic!("expected an answer job, got {first:?}")
    };
    assert_eq!(
        gateway.handle(event.clone()).await.unwrap(),
        Handled::Duplicate
    );
    world.wait_done(&[job], Duration::from_secs(20)).await;
    assert_eq!(
        gateway.handle(event).await.unwrap(),
        Handled::Duplicate,
        "a replay after the answer is still a duplicate"
    );
    shutdown.stop_claiming.cancel();

    assert_eq!(
        world.platform.posts().len(),
        1,
        "one placeholder, one answer"
    );
    assert!(world
        .platform
        .text_of(&placeholder.id)
        .unwrap()
        .starts_with("Use the HR portal [1].\n\n**Sources**"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_question_in_an_unbound_channel_gets_a_hint_and_no_job() {
    let world = World::new().await;
    let (tenant, brain) = world.tenant("discord:1").await;
    world
        .store
        .bind_channel(tenant, "discord:11", brain, BindingMode::Knowledge)
        .await
        .unwrap();
    let gateway = gateway(&world);
    for (event, channel) in [("e1", "discord:10"), ("e2", "discord:11")] {
        let handled = gateway
            .handle(ChatEvent::Question {
                origin: origin(event, "discord:1", channel, "ann"),
                text: "How do I request vacation?".into(),
                conversation: None,
                continues: None,
                attachments: Vec::new(),
            })
            .await
            .unwrap();
        assert_eq!(handled, Handled::Unbound, "{channel}");
    }
    let posts = world.platform.posts();
    assert_eq!(posts.len(), 2);
    assert!(
        matches!(&posts[0], Write::Post { text, reply_to: Some(to), .. }
        if text == UNBOUND_HINT && to == "msg-e1")
    );
    assert!(world.store.jobs(None, 10).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_posted_in_a_knowledge_channel_are_learned_with_reactions_and_a_summary() {
    let world = World::new().await;
    let (tenant, brain) = world.tenant("discord:1").await;
    world
        .store
        .bind_channel(tenant, "discord:10", brain, BindingMode::Knowledge)
        .await
        .unwrap();
    let shutdown = ingest_role(&world).await;
    let gateway = gateway(&world);
    {
        let mut files = world.platform.files.lock().unwrap();
        files.insert(
            "cdn://notes.md".into(),
            b"# Parking\n\nVisitors park on level two of the garage.\n".to_vec(),
        );
        files.insert(
            "cdn://blob.bin".into(),
            vec![0x00, 0x9f, 0x13, 0x37, 0x00, 0xff],
        );
    }
    let post = |event: &str, name: &str, url: &str| ChatEvent::Files {
        origin: origin(event, "discord:1", "discord:10", "ann"),
        files: vec![PostedFile {
            name: name.into(),
            size: 64,
            url: url.into(),
            link: Some(format!("https://chat.example/{event}")),
        }],
    };

    assert_eq!(
        gateway
            .handle(post("f1", "notes.md", "cdn://notes.md"))
            .await
            .unwrap(),
        Handled::Files(1)
    );
    assert_eq!(
        world.platform.reactions.lock().unwrap()["msg-f1"],
        [WORKING],
        "⏳ at once"
    );
    gateway
        .handle(post("f2", "blob.bin", "cdn://blob.bin"))
        .await
        .unwrap();
    gateway
        .handle(post("f3", "expired.pdf", "cdn://gone"))
        .await
        .unwrap();

    let replies = || {
        world
            .platform
            .posts()
            .into_iter()
            .filter_map(|write| match write {
                Write::Post {
                    text,
                    reply_to: Some(to),
                    ..
                } => Some((to, text)),
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    let all_replied = eventually(Duration::from_secs(30), || async { replies().len() == 3 }).await;
    assert!(all_replied, "{:?}", replies());
    let reply_to = |message: &str| {
        replies()
            .into_iter()
            .find(|(to, _)| to == message)
            .map(|(_, text)| text)
            .unwrap()
    };
    assert_eq!(reply_to("msg-f1"), "📚 Learned notes.md: 1 page, 1 chunk.");
    assert!(
        reply_to("msg-f2").starts_with("❌ I couldn't learn blob.bin: ")
            && reply_to("msg-f2").contains("unsupported"),
        "{}",
        reply_to("msg-f2")
    );
    assert!(
        reply_to("msg-f3").contains("cannot download it"),
        "{}",
        reply_to("msg-f3")
    );
    {
        let reactions = world.platform.reactions.lock().unwrap();
        assert_eq!(reactions["msg-f1"], [DONE], "⏳ replaced by ✅");
        assert_eq!(reactions["msg-f2"], [FAILED]);
    }

    // The same bytes again, in a new message: "already known", nothing queued.
    let jobs_before = world.store.jobs(None, 100).await.unwrap().len();
    gateway
        .handle(post("f4", "notes-copy.md", "cdn://notes.md"))
        .await
        .unwrap();
    let known = eventually(Duration::from_secs(10), || async {
        replies().iter().any(|(to, _)| to == "msg-f4")
    })
    .await;
    assert!(known);
    assert!(
        reply_to("msg-f4").contains("already known"),
        "{}",
        reply_to("msg-f4")
    );
    assert_eq!(
        world.store.jobs(None, 100).await.unwrap().len(),
        jobs_before
    );
    shutdown.stop_claiming.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn brain_commands_check_permissions_and_stay_within_the_tenant() {
    let world = World::new().await;
    world.tenant("discord:2").await; // another server with its own `handbook`
    let gateway = gateway(&world);
    let here = origin("c1", "discord:1", "discord:10", "ann");
    let run = |can_manage: bool, command: BrainCommand| {
        let (gateway, here) = (&gateway, &here);
        async move { gateway.command(here, can_manage, command).await.unwrap() }
    };
    let handbook = BrainName::parse("handbook").unwrap();

    let refused = run(
        false,
        BrainCommand::Create {
            name: handbook.clone(),
        },
    )
    .await;
    assert!(
        refused.private && refused.text.contains("manage"),
        "{refused:?}"
    );
    let linked_elsewhere = run(
        true,
        BrainCommand::Link {
            name: handbook.clone(),
            mode: BindingMode::Both,
            messages: None,
        },
    )
    .await;
    assert!(
        linked_elsewhere
            .text
            .contains("There is no brain `handbook` here"),
        "another server's brain of the same name is invisible: {linked_elsewhere:?}"
    );
    let created = run(
        true,
        BrainCommand::Create {
            name: handbook.clone(),
        },
    )
    .await;
    assert!(
        !created.private && created.text.contains("Created"),
        "{created:?}"
    );
    let linked = run(
        true,
        BrainCommand::Link {
            name: handbook,
            mode: BindingMode::Both,
            messages: None,
        },
    )
    .await;
    assert!(
        linked.text.contains("now uses the brain `handbook`"),
        "{linked:?}"
    );
    let info = run(false, BrainCommand::Info).await;
    assert!(
        info.text
            .starts_with("Brain `handbook` (both here): 0 files"),
        "reading needs no permission: {info:?}"
    );
    let prompt = run(
        true,
        BrainCommand::Prompt {
            text: "Answer like a pirate.".into(),
        },
    )
    .await;
    assert!(prompt.text.contains("updated"), "{prompt:?}");
    let tenant = world
        .store
        .find_tenant(&TenantKey::parse("discord:1").unwrap())
        .await
        .unwrap()
        .unwrap();
    let brain = world
        .store
        .brain_by_name(tenant, &BrainName::parse("handbook").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        brain.system_prompt.as_deref(),
        Some("Answer like a pirate.")
    );
    let forget = run(
        true,
        BrainCommand::Forget {
            file: "missing.pdf".into(),
        },
    )
    .await;
    assert!(forget.private && forget.text.contains("no file `missing.pdf`"));
    let unlinked = run(true, BrainCommand::Unlink).await;
    assert!(unlinked.text.contains("no longer linked"), "{unlinked:?}");
    let usage = run(false, BrainCommand::Usage).await;
    assert!(
        usage
            .text
            .starts_with("No questions in this team this month (since "),
        "{usage:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_carry_their_conversation_into_replies_and_threads_opened_on_them() {
    let world = World::new().await;
    let (tenant, brain) = world.tenant("discord:1").await;
    world.tenant("discord:2").await;
    world
        .store
        .bind_channel(tenant, "discord:10", brain, BindingMode::Ask)
        .await
        .unwrap();
    let gateway = gateway(&world);
    let conversation_of = |job| {
        let store = world.store.clone();
        async move {
            let job = store.job(job).await.unwrap().unwrap();
            job.payload["conversation"].as_str().map(str::to_string)
        }
    };
    let asked = |handled: Handled| match handled {
        Handled::Asked {
            job,
            placeholder: Some(placeholder),
        } => (job, placeholder),
        other => panic!("expected an answer job, got {other:?}"),
    };

    // `/ask` names no conversation: the answer starts one, keyed by its placeholder.
    let (job, first) = asked(
        gateway
            .handle(ChatEvent::Question {
                origin: Origin {
                    message: None,
                    ..origin("e1", "discord:1", "discord:10", "ann")
                },
                text: "How do I request vacation?".into(),
                conversation: None,
                continues: None,
                attachments: Vec::new(),
            })
            .await
            .unwrap(),
    );
    let key = format!("discord:10:{}", first.id);
    assert_eq!(conversation_of(job).await.as_deref(), Some(key.as_str()));

    // A reply to the answer continues it, whatever conversation the adapter guessed.
    let (job, second) = asked(
        gateway
            .handle(ChatEvent::Question {
                origin: origin("e2", "discord:1", "discord:10", "bob"),
                text: "And for part-time staff?".into(),
                conversation: Some("discord:10:guess".into()),
                continues: Some(first.clone()),
                attachments: Vec::new(),
            })
            .await
            .unwrap(),
    );
    assert_eq!(conversation_of(job).await.as_deref(), Some(key.as_str()));

    // Talk in a thread opened on the second answer is a question in the same conversation,
    // answered in the thread, its binding the parent's.
    let in_thread =
        |event: &str, tenant: &str, parent: &str, opened_on: &MessageRef| ChatEvent::InThread {
            origin: Origin {
                parent: Some(ChannelKey(parent.into())),
                ..origin(event, tenant, &format!("discord:{}", second.id), "cy")
            },
            text: "How many days do I get?".into(),
            opened_on: opened_on.clone(),
            attachments: Vec::new(),
        };
    let (job, placeholder) = asked(
        gateway
            .handle(in_thread("e3", "discord:1", "discord:10", &second))
            .await
            .unwrap(),
    );
    assert_eq!(conversation_of(job).await.as_deref(), Some(key.as_str()));
    assert_eq!(placeholder.channel.0, format!("discord:{}", second.id));

    // Not a thread on an answer, the answer of another tenant, a parent that does not match:
    // ignored, and nothing is posted.
    let posts = world.platform.posts().len();
    let elsewhere = MessageRef {
        channel: ChannelKey("discord:10".into()),
        id: "msg-e2".into(),
    };
    for event in [
        in_thread("e4", "discord:1", "discord:10", &elsewhere),
        in_thread("e5", "discord:2", "discord:10", &second),
        in_thread("e6", "discord:1", "discord:11", &second),
    ] {
        assert_eq!(gateway.handle(event).await.unwrap(), Handled::Ignored);
    }
    assert_eq!(world.platform.posts().len(), posts);
    assert!(
        world.store.first_sighting("test", "e4").await.unwrap(),
        "ignored thread talk is not recorded as seen"
    );
}
