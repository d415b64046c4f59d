//! Budgets and usage in chat: `/brain budget` (show, set, clear, refused for people who cannot
//! manage, bad amounts), `/usage` and `/brain info` — through the gateway core on SQLite and
//! PostgreSQL against scripted answers and votes, and end to end through the real Discord and
//! Slack adapters against their fakes, where the cap `/brain budget` sets is the one the next
//! answers obey (the capped notice, no request at the fake LLM).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use engram::brain::{BindingMode, BrainId, BrainName, TenantId, TenantKey};
use engram::chat::ChannelKey;
use engram::clock::{format_day, format_utc, month_start_ms, next_month_start_ms, now_ms};
use engram::config::{BudgetsConfig, Config, Price, SlackMode, StoreConfig};
use engram::gateway::{BrainCommand, Gateway, Origin, Reply};
use engram::store::{AnswerRecord, Caps, Phases, Store, UsageEntry, UsageFilter, UsageRecord};
use engram::usage::{report, GroupBy, UsageRow};

use crate::answers::World;
use crate::fakes::discord::{
    SlashCommand, UserMessage, ALICE_ID, BOB_ID, BOT_ID, GENERAL_ID, GUILD_ID,
};

macro_rules! both_stores {
    ($($test:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    let db = crate::support::TestDb::sqlite().await;
                    super::$test(db.store()).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    let db = crate::support::TestDb::postgres().await;
                    super::$test(db.store()).await;
                }
            )*
        }
    };
}

both_stores!(
    usage_info_and_budgets_in_chat_equal_the_scripted_answers,
    budgets_are_set_and_cleared_by_managers_only,
);

/// The configured caps of these tests: $1 a month per tenant, 5 cents per brain, 20 LLM
/// answers a day per person.
fn configured() -> BudgetsConfig {
    BudgetsConfig {
        monthly_usd_per_tenant: 1.0,
        monthly_usd_per_brain: 0.05,
        daily_questions_per_user: 20,
        ..BudgetsConfig::NONE
    }
}

/// The gateway core on `store`. The index is an embedded one beside it, which these commands
/// never use (only `/brain forget` does).
fn gateway(store: Arc<dyn Store>, world: &World) -> Gateway {
    Gateway {
        store,
        index: world.index.clone(),
        outlet: world.outlet.clone(),
        ingest: Config::defaults().ingest,
        max_attempts: 3,
        budgets: configured(),
        metrics: Default::default(),
        learn_messages: true,
    }
}

fn origin(tenant: &str, channel: &str, user: &str) -> Origin {
    Origin {
        platform: "discord".into(),
        event_id: format!("interaction:{}", now_ms()),
        tenant: TenantKey::parse(tenant).unwrap(),
        channel: ChannelKey(channel.into()),
        parent: None,
        message: None,
        user: user.into(),
    }
}

async fn brain(store: &Arc<dyn Store>, tenant: &str, name: &str) -> (TenantId, BrainId) {
    let tenant = store
        .ensure_tenant(&TenantKey::parse(tenant).unwrap())
        .await
        .unwrap();
    let brain = store
        .create_brain(tenant, &BrainName::parse(name).unwrap())
        .await
        .unwrap();
    (tenant, brain.id)
}

/// An answer's row as the answerer writes it.
fn answer(
    tenant: TenantId,
    brain: BrainId,
    user: &str,
    model: &str,
    tokens: (u32, u32),
    cost_micros: i64,
    total_ms: i64,
) -> AnswerRecord {
    AnswerRecord {
        usage: UsageRecord {
            tenant,
            brain: Some(brain),
            user: user.into(),
            model: model.into(),
            prompt_tokens: tokens.0,
            completion_tokens: tokens.1,
            cost_micros,
        },
        platform: "discord".into(),
        outcome: if model.is_empty() { "quoted" } else { "llm" }.into(),
        question: "How do I request vacation?".into(),
        sources: vec!["handbook.md".into()],
        phases: Phases {
            queue_ms: Some(1),
            retrieval_ms: Some(2),
            first_token_ms: (!model.is_empty()).then_some(3),
            total_ms: Some(total_ms),
            tokens_per_s: None,
        },
    }
}

/// `2026-12-01 00:00 UTC`: when this month's budgets reset.
fn month_end() -> String {
    let text = format_utc(next_month_start_ms(now_ms()));
    format!("{} {} UTC", &text[..10], &text[11..16])
}

fn since() -> String {
    format_day(month_start_ms(now_ms()))
}

async fn usage_info_and_budgets_in_chat_equal_the_scripted_answers(store: Arc<dyn Store>) {
    let world = World::new().await;
    let (acme, hr) = brain(&store, "discord:1", "hr").await;
    let (_, ops) = brain(&store, "discord:1", "ops").await;
    let (globex, notes) = brain(&store, "slack:T9", "notes").await;
    store
        .bind_channel(acme, "discord:10", hr, BindingMode::Both)
        .await
        .unwrap();
    let none = Caps {
        tenant_micros: 0,
        brain_micros: 0,
        user_questions: 0,
        warn_at: 0.8,
    };
    let script = [
        answer(acme, hr, "ann", "gpt-4o-mini", (1200, 300), 12_000, 1200),
        answer(acme, hr, "bob", "gpt-4o-mini", (800, 200), 8_000, 800),
        answer(acme, hr, "ann", "", (0, 0), 0, 90),
        answer(acme, ops, "ann", "llama", (70, 30), 5_000, 3000),
        answer(globex, notes, "U1", "gpt-4o-mini", (999, 1), 150_000, 400),
    ];
    let mut ids = Vec::new();
    for row in &script {
        ids.push(
            store
                .record_answer(row, None, &none, now_ms())
                .await
                .unwrap()
                .id,
        );
    }
    assert!(store.record_vote(acme, ids[0], "bob", 1).await.unwrap());
    assert!(store.record_vote(acme, ids[1], "ann", -1).await.unwrap());
    assert!(store.record_vote(acme, ids[3], "carl", 1).await.unwrap());
    assert!(store.record_vote(globex, ids[4], "U2", 1).await.unwrap());

    let gateway = gateway(store.clone(), &world);
    let run = |tenant: &'static str, channel: &'static str, command: BrainCommand| {
        let gateway = gateway.clone();
        async move {
            gateway
                .command(&origin(tenant, channel, "bob"), false, command)
                .await
                .unwrap()
        }
    };

    // /usage: the tenant's month, the total then each model, as `engram usage` has them.
    let usage = run("discord:1", "discord:10", BrainCommand::Usage).await;
    assert!(usage.private);
    assert_eq!(
        usage.text,
        format!(
            "This server this month (since {}, UTC): 4 questions · 2,070 prompt + 530 \
             completion tokens · $0.0250 · answer time p50 800 ms, p95 3.0 s · 👍 2 👎 1.\n\
             By model:\n\
             • without the LLM: 1 question · 0 prompt + 0 completion tokens · $0.0000 · answer \
             time p50 90 ms, p95 90 ms · 👍 0 👎 0\n\
             • `gpt-4o-mini`: 2 questions · 2,000 prompt + 500 completion tokens · $0.0200 · \
             answer time p50 800 ms, p95 1.2 s · 👍 1 👎 1\n\
             • `llama`: 1 question · 70 prompt + 30 completion tokens · $0.0050 · answer time \
             p50 3.0 s, p95 3.0 s · 👍 1 👎 0",
            since()
        )
    );
    // The same figures as `engram usage --by model` computes from the store.
    let rows = report(
        &store
            .usage_entries(&UsageFilter {
                tenant: Some(acme),
                brain: None,
                since: month_start_ms(now_ms()),
            })
            .await
            .unwrap(),
        GroupBy::Model,
    );
    let total = rows.last().unwrap();
    assert_eq!(
        (
            total.questions,
            total.prompt_tokens,
            total.completion_tokens
        ),
        (4, 2070, 530)
    );
    assert_eq!(
        (total.p50_ms, total.p95_ms, total.up, total.down),
        (Some(800), Some(3000), 2, 1)
    );

    // Another tenant sees only its own.
    let other = run("slack:T9", "slack:T9:C1", BrainCommand::Usage).await;
    assert!(
        other
            .text
            .contains(": 1 question · 999 prompt + 1 completion tokens · $0.1500"),
        "{}",
        other.text
    );

    // /brain info: the brain's month, and the budgets that apply to it.
    let info = run("discord:1", "discord:10", BrainCommand::Info).await;
    let lines: Vec<&str> = info.text.lines().collect();
    assert!(
        lines[0].starts_with("Brain `hr` (both here): 0 files"),
        "{}",
        info.text
    );
    assert_eq!(
        lines[1],
        "This month: 3 questions · 2,000 prompt + 500 completion tokens · $0.0200 · answer time \
         p50 800 ms, p95 1.2 s · 👍 1 👎 1."
    );
    assert_eq!(
        lines[2],
        format!(
            "Budgets: the default for every brain: $0.02 of $0.05 spent (40%); all of this \
             server's brains: $0.03 of $1.00 spent (2%); each person: 20 LLM answers a day. The \
             month ends {}.",
            month_end()
        )
    );

    // /brain budget without an amount, for anyone: each cap, what is spent, when it resets.
    let shown = run(
        "discord:1",
        "discord:10",
        BrainCommand::budget(None).unwrap(),
    )
    .await;
    assert!(shown.private);
    assert_eq!(
        shown.text,
        format!(
            "LLM budgets of the brain `hr` this month (until {}):\n\
             • This brain: $0.02 of $0.05 spent (40%): the default budget for every brain.\n\
             • All of this server's brains together: $0.03 of $1.00 spent (2%).\n\
             • Each person: at most 20 LLM answers a day (until 00:00 UTC).\n\
             Once a budget is used up, questions are still answered, by quoting the documents \
             without the LLM.\n\
             A manager sets this brain's own monthly budget with `/brain budget usd:<amount>`; \
             `0` removes it.",
            month_end()
        )
    );
}

async fn budgets_are_set_and_cleared_by_managers_only(store: Arc<dyn Store>) {
    let world = World::new().await;
    let (acme, hr) = brain(&store, "discord:1", "hr").await;
    store
        .bind_channel(acme, "discord:10", hr, BindingMode::Both)
        .await
        .unwrap();
    store
        .record_answer(
            &answer(acme, hr, "ann", "gpt-4o-mini", (1200, 300), 20_000, 900),
            None,
            &Caps {
                tenant_micros: 0,
                brain_micros: 0,
                user_questions: 0,
                warn_at: 0.8,
            },
            now_ms(),
        )
        .await
        .unwrap();
    let gateway = gateway(store.clone(), &world);
    let run = |can_manage: bool, channel: &'static str, command: BrainCommand| {
        let gateway = gateway.clone();
        async move {
            gateway
                .command(&origin("discord:1", channel, "ann"), can_manage, command)
                .await
                .unwrap()
        }
    };
    let own_cap = || {
        let store = store.clone();
        async move { store.brain(acme, hr).await.unwrap().unwrap().budget_micros }
    };

    let refused = run(
        false,
        "discord:10",
        BrainCommand::budget(Some(3.0)).unwrap(),
    )
    .await;
    assert!(
        refused.private && refused.text.contains("manage"),
        "{refused:?}"
    );
    assert_eq!(own_cap().await, None, "nothing changed");

    let set = run(true, "discord:10", BrainCommand::budget(Some(3.0)).unwrap()).await;
    assert_eq!(
        set,
        Reply::public(format!(
            "This brain's monthly LLM budget is now $3.00; $0.02 is spent this month, which \
             ends {}.",
            month_end()
        ))
    );
    assert_eq!(own_cap().await, Some(3_000_000));
    let shown = run(false, "discord:10", BrainCommand::budget(None).unwrap()).await;
    assert!(
        shown
            .text
            .contains("• This brain: $0.02 of $3.00 spent (0%): its own budget."),
        "{}",
        shown.text
    );

    // Below what is spent already: said so.
    let below = run(
        true,
        "discord:10",
        BrainCommand::budget(Some(0.01)).unwrap(),
    )
    .await;
    assert!(
        below
            .text
            .starts_with("This brain's monthly LLM budget is now $0.01; $0.02 is spent")
            && below.text.ends_with(&format!(
                "It is already used up: until {}, questions are answered by quoting the \
                 documents, without the LLM.",
                month_end()
            )),
        "{}",
        below.text
    );
    assert_eq!(own_cap().await, Some(10_000));

    let cleared = run(true, "discord:10", BrainCommand::budget(Some(0.0)).unwrap()).await;
    assert_eq!(
        cleared,
        Reply::public(
            "This brain no longer has a budget of its own: the default for every brain applies \
             again ($0.05 a month; $0.02 is spent this month)."
        )
    );
    assert_eq!(own_cap().await, None, "0 removes the brain's own cap");

    // In a channel with no brain: the hint.
    let unbound = run(true, "discord:11", BrainCommand::budget(Some(3.0)).unwrap()).await;
    assert!(
        unbound.private && unbound.text.contains("/brain link"),
        "{unbound:?}"
    );
}

/// `engram usage`'s rule for an answer time in chat.
fn shown_ms(ms: i64) -> String {
    if ms < 1000 {
        format!("{ms} ms")
    } else {
        format!("{:.1} s", ms as f64 / 1000.0)
    }
}

/// The month's usage rows of a tenant by model, read from the store at `config`.
async fn month_rows(config: &StoreConfig, tenant: &str) -> (Vec<UsageRow>, Vec<UsageEntry>) {
    let store = engram::store::connect(config).await.unwrap();
    let tenant = store
        .find_tenant(&TenantKey::parse(tenant).unwrap())
        .await
        .unwrap()
        .unwrap();
    let entries = store
        .usage_entries(&UsageFilter {
            tenant: Some(tenant),
            brain: None,
            since: month_start_ms(now_ms()),
        })
        .await
        .unwrap();
    store.close().await;
    (report(&entries, GroupBy::Model), entries)
}

/// Records votes on the answers with these ids (the usage rows of a fresh store count from 1).
async fn vote(config: &StoreConfig, tenant: &str, votes: &[(i64, &str, i8)]) {
    let store = engram::store::connect(config).await.unwrap();
    let tenant = store
        .find_tenant(&TenantKey::parse(tenant).unwrap())
        .await
        .unwrap()
        .unwrap();
    for (answer, user, vote) in votes {
        assert!(store
            .record_vote(tenant, *answer, user, *vote)
            .await
            .unwrap());
    }
    store.close().await;
}

/// The brain `handbook`'s own cap as stored.
async fn own_cap(config: &StoreConfig, tenant: &str) -> Option<i64> {
    let store = engram::store::connect(config).await.unwrap();
    let tenant = store
        .find_tenant(&TenantKey::parse(tenant).unwrap())
        .await
        .unwrap()
        .unwrap();
    let brain = store
        .brain_by_name(tenant, &BrainName::parse("handbook").unwrap())
        .await
        .unwrap()
        .unwrap();
    store.close().await;
    brain.budget_micros
}

/// engram as these chat tests run it: priced so that one answer of the fake LLM (12 prompt and
/// a completion token per word) costs a cent or more, with the configured caps.
fn priced(config: &mut Config) {
    config.llm.prices = vec![Price {
        model: "fake-model".into(),
        prompt_usd_per_mtok: 1000.0,
        completion_usd_per_mtok: 1000.0,
    }];
    config.budgets = BudgetsConfig {
        monthly_usd_per_tenant: 100.0,
        monthly_usd_per_brain: 2.0,
        ..BudgetsConfig::NONE
    };
}

/// The figures `/usage` shows for a report's total row.
fn total_figures(row: &UsageRow) -> String {
    format!(
        "{} questions · {} prompt + {} completion tokens · ${:.4} · answer time p50 {}, p95 {} · \
         👍 {} 👎 {}",
        row.questions,
        row.prompt_tokens,
        row.completion_tokens,
        row.cost_usd,
        shown_ms(row.p50_ms.unwrap()),
        shown_ms(row.p95_ms.unwrap()),
        row.up,
        row.down
    )
}

#[test]
fn discord_brain_budget_usage_and_info() {
    use crate::discord::{quick_llm, Harness, REPLY};
    let h = Harness::start_with(Default::default(), quick_llm(), priced);
    let tenant = format!("discord:{GUILD_ID}");

    // Registered with the other `/brain` subcommands: an optional number of dollars.
    let commands = h.discord.commands(None);
    let brain = commands.iter().find(|c| c["name"] == "brain").unwrap();
    let budget = brain["options"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["name"] == "budget")
        .expect("/brain budget is registered");
    let usd = &budget["options"][0];
    assert_eq!((&usd["name"], &usd["type"]), (&"usd".into(), &10.into()));
    assert_ne!(usd["required"], true);
    assert_eq!(usd["min_value"], 0.0);

    h.link_general();
    h.teach_parking();
    let budget = |user: u64, usd: Option<serde_json::Value>| {
        let mut command = SlashCommand::new(GENERAL_ID, user, "brain").subcommand("budget");
        if let Some(usd) = usd {
            command = command.option("usd", usd);
        }
        h.command(command)
    };

    // Setting needs Manage Server; showing does not.
    let (refused, private) = budget(BOB_ID, Some(5.0.into()));
    assert!(private && refused.contains("manage"), "{refused}");
    let cap = |h: &Harness| h.fakes.block_on(own_cap(&h.store, &tenant));
    assert_eq!(cap(&h), None);
    let (shown, private) = budget(BOB_ID, None);
    assert!(private);
    assert!(
        shown.starts_with("LLM budgets of the brain `handbook` this month (until ")
            && shown.contains(
                "• This brain: $0.00 of $2.00 spent (0%): the default budget for every brain."
            )
            && shown.contains("• All of this server's brains together: $0.00 of $100.00 spent"),
        "{shown}"
    );

    // Bad amounts get a clear, private reply and change nothing.
    for (usd, reason) in [
        (serde_json::json!(-5.0), "can't be negative"),
        (serde_json::json!("five"), "isn't an amount"),
        (serde_json::json!(5_000_000.0), "at most $1,000,000"),
        (serde_json::json!(0.001), "smallest budget is $0.01"),
    ] {
        let (reply, private) = budget(ALICE_ID, Some(usd.clone()));
        assert!(private && reply.contains(reason), "{usd}: {reply}");
        assert!(reply.contains("US dollars"), "{reply}");
    }
    assert_eq!(cap(&h), None);

    // Set, for everyone to see; then cleared with 0, which says the default applies again.
    let (set, private) = budget(ALICE_ID, Some(12.5.into()));
    assert!(!private);
    assert!(
        set.starts_with("This brain's monthly LLM budget is now $12.50; "),
        "{set}"
    );
    assert_eq!(cap(&h), Some(12_500_000));
    let (cleared, _) = budget(ALICE_ID, Some(0.into()));
    assert!(
        cleared.contains("the default for every brain applies again ($2.00 a month"),
        "{cleared}"
    );
    assert_eq!(cap(&h), None);

    // A cap of a cent: the first answer spends past it, the next is made without the LLM.
    budget(ALICE_ID, Some(0.01.into()));
    assert_eq!(cap(&h), Some(10_000));
    let first =
        h.say(&UserMessage::new(GENERAL_ID, BOB_ID, "where do visitors park?").mentioning(BOT_ID));
    let answered = h.answer_to(GENERAL_ID, first);
    assert!(
        answered.content().starts_with(REPLY),
        "{}",
        answered.content()
    );
    let requests = h.llm.requests.load(Ordering::SeqCst);
    let second = h.say(
        &UserMessage::new(GENERAL_ID, BOB_ID, "where do visitors park, again?").mentioning(BOT_ID),
    );
    let capped = h.answer_to(GENERAL_ID, second);
    let first_line = capped.content().lines().next().unwrap().to_string();
    assert_eq!(
        first_line,
        format!(
            "⚠️ This brain's monthly LLM budget ($0.01) is used up until {}, so this answer \
             quotes the documents without the LLM.",
            month_end()
        )
    );
    assert!(
        capped.content().contains("Visitors park on level two"),
        "quoted"
    );
    assert_eq!(
        h.llm.requests.load(Ordering::SeqCst),
        requests,
        "no LLM request past the cap"
    );

    // /usage and /brain info: the figures of the answers and votes in the store.
    h.fakes
        .block_on(vote(&h.store, &tenant, &[(1, "7", 1), (2, "8", -1)]));
    let (rows, entries) = h.fakes.block_on(month_rows(&h.store, &tenant));
    assert_eq!(entries.len(), 2);
    let total = rows.last().unwrap();
    // The fake LLM: 12 prompt tokens and one completion token per word, at $1,000 a million.
    let words = REPLY.split_inclusive(' ').count() as u64;
    assert_eq!(
        (
            total.questions,
            total.prompt_tokens,
            total.completion_tokens,
            total.up,
            total.down
        ),
        (2, 12, words, 1, 1)
    );
    assert_eq!(
        (total.cost_usd * 1e6).round() as u64,
        (12 + words) * 1000,
        "$1,000 a million tokens"
    );
    let (usage, private) = h.command(SlashCommand::new(GENERAL_ID, BOB_ID, "usage"));
    assert!(private);
    assert!(
        usage.starts_with(&format!(
            "This server this month (since {}, UTC): {}.\nBy model:\n",
            since(),
            total_figures(total)
        )),
        "{usage}"
    );
    assert!(
        usage.contains("\n• without the LLM: 1 question · 0 prompt + 0 completion tokens")
            && usage.contains(&format!(
                "\n• `fake-model`: 1 question · 12 prompt + {words} completion tokens · ${:.4}",
                total.cost_usd
            )),
        "{usage}"
    );
    let (info, private) =
        h.command(SlashCommand::new(GENERAL_ID, BOB_ID, "brain").subcommand("info"));
    assert!(private);
    assert!(
        info.contains(&format!("\nThis month: {}.\n", total_figures(total))),
        "{info}"
    );
    let spent = format!("${:.2}", total.cost_usd);
    assert!(
        info.contains(&format!(
            "\nBudgets: this brain's own: {spent} of $0.01 spent ({}%); all of this \
             server's brains: {spent} of $100.00 spent (0%). The month ends {}.",
            // Of a cent: spent micros × 100 / 10,000.
            (12 + words) * 1000 / 100,
            month_end()
        )),
        "{info}"
    );
    assert!(info.chars().count() <= 2000);
}

#[test]
fn slack_brain_budget_usage_and_info() {
    use crate::fakes::slack::{ALICE, BOB};
    use crate::slack::{quick_llm, Harness, REPLY};
    let h = Harness::start_with(SlackMode::Http, Default::default(), quick_llm(), priced);
    let tenant = format!("slack:{}", crate::fakes::slack::TEAM);
    let config = h.config.store.clone();
    // Looks at the store on a runtime of its own.
    let store_runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    h.link_general();
    h.teach_parking(crate::slack::over_http);

    // Private replies come through the command's response_url, one after another.
    let responses = std::cell::Cell::new(0);
    let private_reply = |user: &str, text: &str| {
        h.command(user, "/brain", text);
        let n = responses.get();
        responses.set(n + 1);
        h.wait("the private reply", Duration::from_secs(10), |h| {
            h.slack
                .responses()
                .get(n)
                .map(|r| r["text"].as_str().unwrap().to_string())
        })
    };
    let cap = || store_runtime.block_on(own_cap(&config, &tenant));

    let refused = private_reply(BOB, "budget 5");
    assert!(refused.contains("manage"), "{refused}");
    assert_eq!(cap(), None);
    let shown = private_reply(BOB, "budget");
    assert!(
        shown.contains(
            "• This brain: $0.00 of $2.00 spent (0%): the default budget for every brain."
        ) && shown.contains("• All of this workspace's brains together: $0.00 of $100.00")
            && shown.ends_with("with `/brain budget <amount>`; `0` removes it."),
        "{shown}"
    );
    for (text, reason) in [
        ("budget -5", "can't be negative"),
        ("budget five dollars", "isn't an amount"),
        ("budget 5000000", "at most $1,000,000"),
        ("budget 0.001", "smallest budget is $0.01"),
    ] {
        let reply = private_reply(ALICE, text);
        assert!(
            reply.contains(reason) && reply.contains("US dollars"),
            "{text}: {reply}"
        );
    }
    assert_eq!(cap(), None);

    // Set and cleared: told in the channel.
    h.command(ALICE, "/brain", "budget $12.50");
    h.posted(
        "the budget set",
        "This brain's monthly LLM budget is now $12.50",
    );
    assert_eq!(cap(), Some(12_500_000));
    h.command(ALICE, "/brain", "budget 0");
    h.posted(
        "the budget cleared",
        "the default for every brain applies again ($2.00 a month",
    );
    assert_eq!(cap(), None);

    // A cent: the first answer spends past it, the next is made without the LLM.
    h.command(ALICE, "/brain", "budget 0.01");
    h.posted("the cent", "This brain's monthly LLM budget is now $0.01");
    assert_eq!(cap(), Some(10_000));
    h.command(BOB, "/ask", "where do visitors park?");
    let asked = h.posted("the question shown", "asked: where do visitors park?");
    let answered = h.answer_in(&asked.ts);
    assert!(answered.text().starts_with(REPLY), "{}", answered.text());
    let requests = h.llm.requests.load(Ordering::SeqCst);
    h.command(BOB, "/ask", "where do visitors park, again?");
    let again = h.posted(
        "the second question",
        "asked: where do visitors park, again?",
    );
    let capped = h.answer_in(&again.ts);
    assert_eq!(
        capped.text().lines().next().unwrap(),
        format!(
            "⚠️ This brain's monthly LLM budget ($0.01) is used up until {}, so this answer \
             quotes the documents without the LLM.",
            month_end()
        )
    );
    assert_eq!(
        h.llm.requests.load(Ordering::SeqCst),
        requests,
        "no LLM request"
    );

    store_runtime.block_on(vote(&config, &tenant, &[(1, "U7", 1), (2, "U8", 1)]));
    let (rows, _) = store_runtime.block_on(month_rows(&config, &tenant));
    let total = rows.last().unwrap();
    assert_eq!((total.questions, total.up, total.down), (2, 2, 0));
    let usage = private_reply(BOB, "usage");
    assert!(
        usage.starts_with(&format!(
            "This workspace this month (since {}, UTC): {}.\nBy model:\n",
            since(),
            total_figures(total)
        )),
        "{usage}"
    );
    let info = private_reply(BOB, "info");
    assert!(
        info.contains(&format!("\nThis month: {}.\n", total_figures(total)))
            && info.contains("\nBudgets: this brain's own: ")
            && info.contains("all of this workspace's brains: "),
        "{info}"
    );
}
