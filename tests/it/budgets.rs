//! Budgets, usage and answer metrics: the store's reservations and settlements on SQLite and
//! PostgreSQL alike (20 at once against a cap that fits 5, a new month, the warning once, a
//! vote per person), `engram usage --json` against scripted answers on both stores, and
//! answers through the real `Answerer` against the fake OpenAI server: at a cap no request
//! reaches the LLM and the notice says which cap, the warning comes once, 20 answers at once
//! spend what the cap fits, and every named series is in `/metrics` after one answer.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use engram::answer::{Answerer, Question, RetrievalOptions};
use engram::brain::{BrainId, BrainName, TenantId, TenantKey};
use engram::clock::{day_start_ms, month_start_ms, next_month_start_ms, now_ms};
use engram::config::{BudgetsConfig, Config, LlmConfig, Price, Secret};
use engram::llm::ChatModel;
use engram::store::{
    AnswerRecord, CapKind, Caps, Phases, Reservation, Spender, Store, UsageFilter, UsageRecord,
};
use engram::telemetry::Metrics;

use crate::answers::World;
use crate::fakes::openai::{self as fake_openai, Behaviour, FakeOpenAi};
use crate::support::eventually;

macro_rules! both_stores {
    ($($test:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $test() {
                    let db = crate::support::TestDb::sqlite().await;
                    super::$test(db.store(), &db.url).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $test() {
                    let db = crate::support::TestDb::postgres().await;
                    super::$test(db.store(), &db.url).await;
                }
            )*
        }
    };
}

both_stores!(
    twenty_reservations_at_once_grant_the_five_a_cap_fits,
    a_warning_is_announced_once_and_a_new_period_resets_the_caps,
    a_dead_processes_reservation_stops_counting_when_its_hold_ends,
    one_vote_per_person_and_answer_and_only_on_the_tenants_own,
    usage_json_equals_the_scripted_answers,
);

async fn tenant_and_brain(store: &Arc<dyn Store>, key: &str, brain: &str) -> (TenantId, BrainId) {
    let tenant = store
        .ensure_tenant(&TenantKey::parse(key).unwrap())
        .await
        .unwrap();
    let brain = store
        .create_brain(tenant, &BrainName::parse(brain).unwrap())
        .await
        .unwrap();
    (tenant, brain.id)
}

fn caps(tenant_micros: i64, brain_micros: i64, user_questions: i64) -> Caps {
    Caps {
        tenant_micros,
        brain_micros,
        user_questions,
        warn_at: 0.8,
    }
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
        platform: "test".into(),
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

async fn twenty_reservations_at_once_grant_the_five_a_cap_fits(store: Arc<dyn Store>, _url: &str) {
    let (tenant, brain) = tenant_and_brain(&store, "discord:1", "hr").await;
    let (_, other_brain) = tenant_and_brain(&store, "discord:1", "ops").await;
    // An answer is estimated at 100 micros; the brain's cap fits 5 of them.
    let limits = caps(0, 500, 0);
    let now = now_ms();
    let mut reserving = Vec::new();
    for n in 0..20 {
        let store = store.clone();
        reserving.push(tokio::spawn(async move {
            let user = format!("u{n}");
            let spender = Spender {
                tenant,
                brain,
                user: &user,
            };
            store
                .reserve_spending(&spender, &limits, 100, now, Duration::from_secs(60))
                .await
                .unwrap()
        }));
    }
    let mut granted = Vec::new();
    for reservation in reserving {
        match reservation.await.unwrap() {
            Reservation::Granted(held) => granted.push(held.expect("a money cap holds")),
            Reservation::Capped(cap) => {
                assert_eq!(cap.cap, CapKind::Brain);
                assert!(cap.used >= cap.limit, "{cap:?}");
            }
        }
    }
    assert_eq!(granted.len(), 5, "the cap fits 5 answers' estimates");
    // Another brain is not held back by this one's cap.
    let spender = Spender {
        tenant,
        brain: other_brain,
        user: "u1",
    };
    assert!(matches!(
        store
            .reserve_spending(&spender, &limits, 100, now, Duration::from_secs(60))
            .await
            .unwrap(),
        Reservation::Granted(Some(_))
    ));
    // Settled below the estimate: spending stays within the cap, and the room left lets the
    // next answer in.
    for held in &granted {
        store
            .record_answer(
                &answer(tenant, brain, "u1", "m", (10, 10), 90, 100),
                Some(*held),
                &limits,
                now,
            )
            .await
            .unwrap();
    }
    let spent: i64 = store
        .usage_entries(&UsageFilter {
            brain: Some(brain),
            tenant: Some(tenant),
            since: 0,
        })
        .await
        .unwrap()
        .iter()
        .map(|entry| entry.cost_micros)
        .sum();
    assert_eq!(spent, 450);
    let spender = Spender {
        tenant,
        brain,
        user: "u1",
    };
    let next = store
        .reserve_spending(&spender, &limits, 100, now, Duration::from_secs(60))
        .await
        .unwrap();
    assert!(matches!(next, Reservation::Granted(Some(_))), "{next:?}");
    let after = store
        .reserve_spending(&spender, &limits, 100, now, Duration::from_secs(60))
        .await
        .unwrap();
    assert!(
        matches!(after, Reservation::Capped(cap) if cap.used == 550),
        "450 spent + 100 held: {after:?}"
    );
}

async fn a_warning_is_announced_once_and_a_new_period_resets_the_caps(
    store: Arc<dyn Store>,
    _url: &str,
) {
    let (tenant, brain) = tenant_and_brain(&store, "slack:T1", "ops").await;
    let limits = caps(1000, 0, 2);
    // 2026-11-29T09:05:57Z.
    let now = 1_795_943_157_000;
    let spender = Spender {
        tenant,
        brain,
        user: "ann",
    };
    let reserve = |at: i64| {
        let store = store.clone();
        async move {
            store
                .reserve_spending(&spender, &limits, 100, at, Duration::from_secs(60))
                .await
                .unwrap()
        }
    };
    let Reservation::Granted(held) = reserve(now).await else {
        panic!("the first question is within every cap")
    };
    let first = store
        .record_answer(
            &answer(tenant, brain, "ann", "m", (1, 1), 500, 10),
            held,
            &limits,
            now,
        )
        .await
        .unwrap();
    assert!(first.warn.is_empty(), "half of the tenant's cap: {first:?}");
    let Reservation::Granted(held) = reserve(now).await else {
        panic!("the second question is within every cap")
    };
    let second = store
        .record_answer(
            &answer(tenant, brain, "ann", "m", (1, 1), 300, 10),
            held,
            &limits,
            now,
        )
        .await
        .unwrap();
    let warned: Vec<CapKind> = second.warn.iter().map(|cap| cap.cap).collect();
    assert_eq!(
        warned,
        [CapKind::Tenant, CapKind::User],
        "80% of $ and 2 of 2 questions"
    );
    // Crossed already: not announced again, from this process or any other.
    let third = store
        .record_answer(
            &answer(tenant, brain, "ann", "", (0, 0), 0, 10),
            None,
            &limits,
            now,
        )
        .await
        .unwrap();
    assert!(third.warn.is_empty());
    match reserve(now).await {
        Reservation::Capped(cap) => {
            assert_eq!((cap.cap, cap.used, cap.limit), (CapKind::User, 2, 2))
        }
        granted => panic!("the third question of the day is past the cap: {granted:?}"),
    }
    // Tomorrow the person's count starts again; the tenant's month goes on.
    let tomorrow = day_start_ms(now) + 86_400_000;
    assert!(matches!(reserve(tomorrow).await, Reservation::Granted(_)));
    let spender_bob = Spender {
        tenant,
        brain,
        user: "bob",
    };
    let store_ = store.clone();
    let reserve_bob = |at: i64| {
        let store = store_.clone();
        async move {
            store
                .reserve_spending(
                    &spender_bob,
                    &caps(1000, 0, 0),
                    300,
                    at,
                    Duration::from_secs(60),
                )
                .await
                .unwrap()
        }
    };
    // 800 spent and 100 held (tomorrow's reservation) of 1000: room for one more.
    let Reservation::Granted(bob_held) = reserve_bob(tomorrow).await else {
        panic!("900 of 1000 used")
    };
    assert!(
        matches!(reserve_bob(tomorrow).await, Reservation::Capped(cap) if cap.cap == CapKind::Tenant)
    );
    assert!(bob_held.is_some());
    // A new month resets the money caps (and its warning).
    let next_month = next_month_start_ms(now);
    assert_eq!(next_month, month_start_ms(next_month));
    assert!(matches!(
        reserve_bob(next_month).await,
        Reservation::Granted(Some(_))
    ));
    let settled = store
        .record_answer(
            &answer(tenant, brain, "bob", "m", (1, 1), 900, 10),
            None,
            &caps(1000, 0, 0),
            next_month,
        )
        .await
        .unwrap();
    assert_eq!(
        settled.warn.iter().map(|cap| cap.cap).collect::<Vec<_>>(),
        [CapKind::Tenant],
        "announced again in the new month"
    );
}

async fn a_dead_processes_reservation_stops_counting_when_its_hold_ends(
    store: Arc<dyn Store>,
    _url: &str,
) {
    let (tenant, brain) = tenant_and_brain(&store, "local", "notes").await;
    let limits = caps(0, 100, 0);
    let spender = Spender {
        tenant,
        brain,
        user: "local",
    };
    let now = now_ms();
    let hold = Duration::from_secs(120);
    assert!(matches!(
        store
            .reserve_spending(&spender, &limits, 100, now, hold)
            .await
            .unwrap(),
        Reservation::Granted(Some(_))
    ));
    // Its process died: it is never settled. It holds the cap until the hold ends.
    assert!(matches!(
        store
            .reserve_spending(&spender, &limits, 100, now + 1000, hold)
            .await
            .unwrap(),
        Reservation::Capped(_)
    ));
    assert!(matches!(
        store
            .reserve_spending(&spender, &limits, 100, now + 121_000, hold)
            .await
            .unwrap(),
        Reservation::Granted(Some(_))
    ));
    let pruned = store
        .prune(now + 121_000, &engram::store::Retention::default())
        .await
        .unwrap();
    assert_eq!(pruned.budgets, 1, "the dead reservation is pruned");
}

async fn one_vote_per_person_and_answer_and_only_on_the_tenants_own(
    store: Arc<dyn Store>,
    _url: &str,
) {
    let (tenant, brain) = tenant_and_brain(&store, "discord:1", "hr").await;
    let (other, _) = tenant_and_brain(&store, "discord:2", "hr").await;
    let recorded = store
        .record_answer(
            &answer(tenant, brain, "ann", "m", (5, 5), 10, 100),
            None,
            &caps(0, 0, 0),
            now_ms(),
        )
        .await
        .unwrap();
    let id = recorded.id;
    assert!(store.record_vote(tenant, id, "ann", 1).await.unwrap());
    assert!(store.record_vote(tenant, id, "bob", 1).await.unwrap());
    assert!(
        !store.record_vote(other, id, "eve", -1).await.unwrap(),
        "another tenant's answer id is refused"
    );
    let votes = |entries: Vec<engram::store::UsageEntry>| (entries[0].up, entries[0].down);
    let filter = UsageFilter {
        tenant: Some(tenant),
        ..UsageFilter::default()
    };
    assert_eq!(votes(store.usage_entries(&filter).await.unwrap()), (2, 0));
    assert!(store.record_vote(tenant, id, "ann", -1).await.unwrap());
    assert_eq!(
        votes(store.usage_entries(&filter).await.unwrap()),
        (1, 1),
        "a second click changes the vote"
    );
    assert!(!store
        .record_vote(tenant, id + 1000, "ann", 1)
        .await
        .unwrap());
    assert!(store
        .set_brain_budget(brain, Some(2_500_000))
        .await
        .unwrap());
    let stored = store.brain(tenant, brain).await.unwrap().unwrap();
    assert_eq!(stored.budget_micros, Some(2_500_000));
    assert!(store.set_brain_budget(brain, None).await.unwrap());
    assert_eq!(
        store
            .brain(tenant, brain)
            .await
            .unwrap()
            .unwrap()
            .budget_micros,
        None
    );
}

async fn usage_json_equals_the_scripted_answers(store: Arc<dyn Store>, url: &str) {
    let (acme, hr) = tenant_and_brain(&store, "discord:1", "hr").await;
    let (_, ops) = tenant_and_brain(&store, "discord:1", "ops").await;
    let (globex, notes) = tenant_and_brain(&store, "slack:T9", "notes").await;
    let none = caps(0, 0, 0);
    let now = now_ms();
    let script = [
        answer(acme, hr, "ann", "gpt-4o-mini", (100, 20), 27, 1200),
        answer(acme, hr, "bob", "gpt-4o-mini", (50, 10), 13, 800),
        answer(acme, hr, "ann", "", (0, 0), 0, 90),
        answer(acme, ops, "ann", "llama", (7, 3), 0, 3000),
        answer(globex, notes, "U1", "gpt-4o-mini", (999, 1), 150, 400),
    ];
    let mut ids = Vec::new();
    for row in &script {
        ids.push(store.record_answer(row, None, &none, now).await.unwrap().id);
    }
    store.record_vote(acme, ids[0], "bob", 1).await.unwrap();
    store.record_vote(acme, ids[1], "ann", -1).await.unwrap();
    store.record_vote(globex, ids[4], "U2", 1).await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("engram.toml"),
        format!("[store]\nurl = \"{url}\"\n"),
    )
    .unwrap();
    let usage = |args: &[&str]| -> Vec<serde_json::Value> {
        let mut all = vec!["usage", "--json"];
        all.extend_from_slice(args);
        if !args.contains(&"--since") {
            all.extend(["--since", "1970-01-01"]);
        }
        let output = crate::support::engram(dir.path(), &all);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout)
            .unwrap()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    };
    let rows = usage(&["--by", "brain"]);
    assert_eq!(rows.len(), 4, "{rows:#?}");
    let figures = |row: &serde_json::Value| {
        (
            row["questions"].as_u64().unwrap(),
            row["prompt_tokens"].as_u64().unwrap(),
            row["completion_tokens"].as_u64().unwrap(),
            (row["cost_usd"].as_f64().unwrap() * 1e6).round() as i64,
            row["p50_ms"].as_i64(),
            row["p95_ms"].as_i64(),
            row["up"].as_u64().unwrap(),
            row["down"].as_u64().unwrap(),
        )
    };
    assert_eq!(
        (&rows[0]["tenant"], &rows[0]["brain"]),
        (&"discord:1".into(), &"hr".into())
    );
    assert_eq!(
        figures(&rows[0]),
        (3, 150, 30, 40, Some(800), Some(1200), 1, 1)
    );
    assert_eq!(rows[0]["total"], false);
    assert_eq!(rows[1]["brain"], "ops");
    assert_eq!(
        figures(&rows[1]),
        (1, 7, 3, 0, Some(3000), Some(3000), 0, 0)
    );
    assert_eq!(
        (&rows[2]["tenant"], &rows[2]["brain"]),
        (&"slack:T9".into(), &"notes".into())
    );
    assert_eq!(rows[3]["total"], true, "the total is last");
    assert_eq!(
        figures(&rows[3]),
        (5, 1156, 34, 190, Some(800), Some(3000), 2, 1)
    );

    let by_model = usage(&["--by", "model", "--tenant", "discord:1"]);
    let models: Vec<&serde_json::Value> = by_model.iter().map(|row| &row["model"]).collect();
    assert_eq!(
        models,
        [
            &serde_json::Value::Null,
            &"gpt-4o-mini".into(),
            &"llama".into(),
            &serde_json::Value::Null
        ],
        "no LLM call, the models, then the total (which has no model): {by_model:#?}"
    );
    assert_eq!(
        figures(&by_model[1]),
        (2, 150, 30, 40, Some(800), Some(1200), 1, 1)
    );
    assert_eq!(by_model[3]["questions"], 4, "only discord:1");

    let by_user = usage(&["--by", "user", "--tenant", "discord:1", "--brain", "hr"]);
    assert_eq!(by_user.len(), 3);
    assert_eq!(
        (&by_user[0]["user"], &by_user[0]["questions"]),
        (&"ann".into(), &2.into())
    );
    assert_eq!(by_user[2]["questions"], 3);

    let later = usage(&["--since", "2999-01-01"]);
    assert_eq!(later.len(), 1, "only the total: {later:#?}");
    assert_eq!(later[0]["questions"], 0);
}

/// A chat model with prices that make an answer's estimate 100 micros: the prompt is free and
/// each completion token costs 1 micro, with 100 tokens reserved.
fn priced_llm(llm: &FakeOpenAi) -> LlmConfig {
    LlmConfig {
        base_url: llm.base_url(),
        api_key: Secret::new("sk-never-shown"),
        model: "fake-model".into(),
        first_token_timeout_ms: 20_000,
        total_timeout_ms: 30_000,
        prices: vec![Price {
            model: "fake-model".into(),
            prompt_usd_per_mtok: 0.0,
            completion_usd_per_mtok: 1.0,
        }],
        ..Config::defaults().llm
    }
}

fn answerer(
    world: &World,
    llm: &FakeOpenAi,
    budgets: BudgetsConfig,
    metrics: Arc<Metrics>,
) -> Answerer {
    let llm = priced_llm(llm);
    Answerer {
        store: world.store.clone(),
        index: world.index.clone(),
        embedder: None,
        chat: ChatModel::from_config(&llm).unwrap(),
        llm,
        retrieval: RetrievalOptions::default(),
        budgets,
        metrics,
        slow_answer: Duration::from_secs(15),
    }
}

fn budgets(tenant_usd: f64, questions: u32) -> BudgetsConfig {
    BudgetsConfig {
        monthly_usd_per_tenant: tenant_usd,
        daily_questions_per_user: questions,
        reserve_completion_tokens: 100,
        ..BudgetsConfig::NONE
    }
}

async fn ask(
    answerer: &Answerer,
    world: &World,
    brain: BrainId,
    tenant: TenantId,
    user: &str,
) -> engram::answer::Answered {
    let brain = world.store.brain(tenant, brain).await.unwrap().unwrap();
    answerer
        .answer(
            Question {
                brain: &brain,
                user,
                text: "How do I request vacation?",
                conversation: None,
                platform: "test",
                queue_wait: Duration::from_millis(5),
                channels: ["", ""],
                attachments: &[],
            },
            |_| {},
        )
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_a_cap_no_request_reaches_the_llm_and_the_notice_names_the_cap() {
    let world = World::new().await;
    let (tenant, brain) = world.tenant("discord:1").await;
    let llm = fake_openai::start(Behaviour {
        reply: "Through the HR portal [1].".into(),
        ..Behaviour::default()
    })
    .await;
    let answerer = answerer(&world, &llm, budgets(0.0, 5), Arc::new(Metrics::default()));
    let mut warnings = 0;
    for n in 1..=5 {
        let answered = ask(&answerer, &world, brain, tenant, "ann").await;
        assert!(answered.capped.is_none(), "answer {n}");
        assert!(answered.text.starts_with("Through the HR portal"));
        if answered
            .text
            .contains("ℹ️ 80% used: 4 of your daily limit of 5 LLM answers")
        {
            warnings += 1;
            assert_eq!(n, 4, "announced when it is crossed");
        }
        assert!(answered.id.is_some());
    }
    assert_eq!(warnings, 1, "the warning comes once");
    assert_eq!(llm.requests.load(Ordering::SeqCst), 5);
    let capped = ask(&answerer, &world, brain, tenant, "ann").await;
    assert_eq!(
        llm.requests.load(Ordering::SeqCst),
        5,
        "no LLM request at the cap"
    );
    let cap = capped.capped.expect("capped");
    assert_eq!(cap.cap, CapKind::User);
    let first_line = capped.text.lines().next().unwrap();
    assert!(
        first_line.starts_with("⚠️ Your daily limit of 5 LLM answers is used up until ")
            && first_line.ends_with("so this answer quotes the documents without the LLM."),
        "{first_line}"
    );
    assert!(
        capped
            .text
            .contains("Vacation requests go through the HR portal"),
        "and the passages are quoted: {}",
        capped.text
    );
    assert!(
        !capped.text.contains("ℹ️"),
        "no warning after the cap's own notice"
    );
    // Another person still gets the LLM.
    let bob = ask(&answerer, &world, brain, tenant, "bob").await;
    assert!(bob.capped.is_none());
    assert_eq!(llm.requests.load(Ordering::SeqCst), 6);
    // A brain's own cap, set in the store, takes over from the configured one.
    world.store.set_brain_budget(brain, Some(1)).await.unwrap();
    let answerer = self::answerer(&world, &llm, budgets(0.0, 0), Arc::new(Metrics::default()));
    let over = ask(&answerer, &world, brain, tenant, "carl").await;
    assert_eq!(over.capped.map(|cap| cap.cap), Some(CapKind::Brain));
    assert!(over
        .text
        .starts_with("⚠️ This brain's monthly LLM budget ($0.0000) is used up until "));
    assert_eq!(llm.requests.load(Ordering::SeqCst), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_answers_at_once_spend_no_more_than_the_cap_fits() {
    let world = World::new().await;
    let (tenant, brain) = world.tenant("discord:1").await;
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let llm = fake_openai::start(Behaviour {
        // 4 completion tokens: 4 micros, settled under the 100-micro estimate.
        reply: "Through the HR portal.".into(),
        gate: Some(gate.clone()),
        ..Behaviour::default()
    })
    .await;
    // The team's cap fits 5 answers' estimates (5 × 100 micros).
    let answerer = Arc::new(answerer(
        &world,
        &llm,
        budgets(0.0005, 0),
        Arc::new(Metrics::default()),
    ));
    let finished = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut answers = Vec::new();
    for n in 0..20 {
        let answerer = answerer.clone();
        let finished = finished.clone();
        let world_store = world.store.clone();
        answers.push(tokio::spawn(async move {
            let brain = world_store.brain(tenant, brain).await.unwrap().unwrap();
            let user = format!("u{n}");
            let answered = answerer
                .answer(
                    Question {
                        brain: &brain,
                        user: &user,
                        text: "How do I request vacation?",
                        conversation: None,
                        platform: "test",
                        queue_wait: Duration::ZERO,
                        channels: ["", ""],
                        attachments: &[],
                    },
                    |_| {},
                )
                .await
                .unwrap();
            finished.fetch_add(1, Ordering::SeqCst);
            answered
        }));
    }
    // Every answer either reached the LLM (held at the gate) or was capped and finished.
    let all_decided = eventually(Duration::from_secs(30), || async {
        llm.requests.load(Ordering::SeqCst) + finished.load(Ordering::SeqCst) == 20
    })
    .await;
    assert!(all_decided);
    assert_eq!(
        llm.requests.load(Ordering::SeqCst),
        5,
        "the cap fits 5 answers in flight"
    );
    gate.add_permits(20);
    let mut capped = 0;
    for answer in answers {
        let answered = answer.await.unwrap();
        if let Some(cap) = answered.capped {
            assert_eq!(cap.cap, CapKind::Tenant);
            assert!(answered
                .text
                .starts_with("⚠️ The team's monthly LLM budget ($0.0005) is used up until "));
            capped += 1;
        }
    }
    assert_eq!(capped, 15);
    let entries = world
        .store
        .usage_entries(&UsageFilter {
            tenant: Some(tenant),
            ..UsageFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(entries.len(), 20, "every answer is recorded");
    let spent: i64 = entries.iter().map(|entry| entry.cost_micros).sum();
    assert_eq!(spent, 5 * 4, "5 answers of 4 completion tokens");
    assert!(spent <= 500);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_named_series_is_in_metrics_after_one_answer() {
    for per_brain_labels in [false, true] {
        let world = World::new().await;
        let (tenant, brain) = world.tenant("discord:1").await;
        let llm = fake_openai::start(Behaviour {
            reply: "Through the HR portal [1].".into(),
            ..Behaviour::default()
        })
        .await;
        let metrics = Arc::new(Metrics::new(per_brain_labels));
        let answerer = answerer(&world, &llm, budgets(1.0, 0), metrics.clone());
        let answered = ask(&answerer, &world, brain, tenant, "ann").await;
        assert!(answered.capped.is_none());

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = engram::http::ApiState {
            store: world.store.clone(),
            metrics,
            index: None,
            connections: Default::default(),
        };
        let stop = tokio_util::sync::CancellationToken::new();
        let serving = tokio::spawn(engram::http::serve(listener, state, stop.clone()));
        let (status, body) =
            tokio::task::spawn_blocking(move || crate::support::http_get(addr, "/metrics"))
                .await
                .unwrap();
        stop.cancel();
        serving.await.unwrap().unwrap();
        assert_eq!(status, 200);
        let brain_labels = if per_brain_labels {
            format!(",tenant=\"{}\",brain=\"handbook\"", tenant.0)
        } else {
            String::new()
        };
        for series in [
            format!("engram_answers_total{{platform=\"test\",outcome=\"llm\"{brain_labels}}} 1"),
            "engram_answer_seconds_bucket{phase=\"queue\",le=\"0.01\"} 1".to_string(),
            "engram_answer_seconds_count{phase=\"retrieval\"} 1".to_string(),
            "engram_answer_seconds_count{phase=\"first_token\"} 1".to_string(),
            "engram_answer_seconds_count{phase=\"total\"} 1".to_string(),
            format!("engram_llm_tokens_total{{kind=\"prompt\",model=\"fake-model\"{brain_labels}}} 12"),
            format!("engram_llm_tokens_total{{kind=\"completion\",model=\"fake-model\"{brain_labels}}} 5"),
            format!("engram_llm_cost_usd_total{{model=\"fake-model\"{brain_labels}}} 0.000005"),
            "engram_feedback_total{vote=\"up\"} 0".to_string(),
            "engram_feedback_total{vote=\"down\"} 0".to_string(),
            "engram_ingest_jobs_total{outcome=\"done\"} 0".to_string(),
            "engram_queue_depth{kind=\"answer\",state=\"queued\"} 0".to_string(),
            // 5 micros of the team's $1.00.
            "engram_budget_spent_ratio 0.000005".to_string(),
        ] {
            assert!(
                body.lines().any(|line| line == series),
                "{series} is missing from:\n{body}"
            );
        }
        for name in [
            "engram_answers_total",
            "engram_answer_seconds",
            "engram_llm_tokens_total",
            "engram_llm_cost_usd_total",
            "engram_feedback_total",
            "engram_ingest_jobs_total",
            "engram_queue_depth",
            "engram_budget_spent_ratio",
        ] {
            assert!(body.contains(&format!("# TYPE {name} ")), "{name}");
        }
    }
}
