//! What `/usage`, `/brain info` and `/brain budget` tell people (pure): a month's figures as
//! `engram usage` computes them (`crate::usage::report`), and the caps that apply to a brain,
//! with this month's spending against each and when they reset; every reply within the
//! smaller platform limit (Discord's 2,000 characters).

use crate::answer::budget::when;
use crate::brain::BrainName;
use crate::clock::{format_day, next_month_start_ms};
use crate::render::Limits;
use crate::usage::{Grouped, UsageRow};

/// The longest reply: Discord's message limit, the smaller of the two platforms' (a Slack
/// block holds 3,000).
pub(super) const MAX_REPLY_CHARS: usize = Limits::DISCORD.max_chars;

/// Room kept at the end of `/usage` for the line saying how many models were left out.
const MORE_ROOM: usize = 80;

/// What a tenant is called in a reply: a Discord server, a Slack workspace.
pub(super) fn team(platform: &str) -> &'static str {
    match platform {
        "discord" => "this server",
        "slack" => "this workspace",
        _ => "this team",
    }
}

/// How a manager sets a brain's own budget on `platform`.
fn budget_syntax(platform: &str) -> &'static str {
    match platform {
        "discord" => "`/brain budget usd:<amount>`",
        _ => "`/brain budget <amount>`",
    }
}

/// Dollars and cents as the budget notices write them (`$0.0040` below a cent), nothing
/// spent as `$0.00`.
fn money(micros: i64) -> String {
    if micros == 0 {
        "$0.00".to_string()
    } else {
        crate::answer::budget::usd(micros)
    }
}

/// `1234567` → `1,234,567`.
pub(super) fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut text = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            text.push(',');
        }
        text.push(digit);
    }
    text
}

/// An answer's time: `850 ms`, `1.2 s`.
fn duration(ms: i64) -> String {
    if ms < 1000 {
        format!("{ms} ms")
    } else {
        format!("{:.1} s", ms as f64 / 1000.0)
    }
}

pub(super) fn plural(n: u64, word: &str) -> String {
    format!("{} {word}{}", thousands(n), if n == 1 { "" } else { "s" })
}

fn capitalised(text: &str) -> String {
    let mut chars = text.chars();
    chars
        .next()
        .map(|first| first.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

/// One row's figures, as `engram usage` has them: questions, tokens, cost, answer time p50 and
/// p95, votes.
pub(super) fn figures(row: &UsageRow) -> String {
    let mut text = format!(
        "{} · {} prompt + {} completion tokens · ${:.4}",
        plural(row.questions, "question"),
        thousands(row.prompt_tokens),
        thousands(row.completion_tokens),
        row.cost_usd
    );
    if let (Some(p50), Some(p95)) = (row.p50_ms, row.p95_ms) {
        text.push_str(&format!(
            " · answer time p50 {}, p95 {}",
            duration(p50),
            duration(p95)
        ));
    }
    text.push_str(&format!(" · 👍 {} 👎 {}", row.up, row.down));
    text
}

/// The total row of a report (`usage::report` puts it last).
pub(super) fn total(rows: &[UsageRow]) -> Option<&UsageRow> {
    rows.last().filter(|row| row.total)
}

/// `/usage`: the team's month so far (`rows`: `usage::report` by model), then a line per
/// model while they fit.
pub(super) fn usage_reply(rows: &[UsageRow], team: &str, since: i64) -> String {
    let since = format_day(since);
    let Some(total) = total(rows).filter(|total| total.questions > 0) else {
        return format!("No questions in {team} this month (since {since}, UTC).");
    };
    let mut text = format!(
        "{} this month (since {since}, UTC): {}.\nBy model:",
        capitalised(team),
        figures(total)
    );
    let models = &rows[..rows.len() - 1];
    for (shown, row) in models.iter().enumerate() {
        let model = match &row.model {
            Grouped::Value(Some(model)) => format!("`{model}`"),
            _ => "without the LLM".to_string(),
        };
        let line = format!("\n• {model}: {}", figures(row));
        if text.chars().count() + line.chars().count() + MORE_ROOM > MAX_REPLY_CHARS {
            text.push_str(&format!(
                "\n… and {} more (`engram usage --by model` lists them all).",
                models.len() - shown
            ));
            break;
        }
        text.push_str(&line);
    }
    text
}

/// `/brain info`'s line about this month's answers from the brain.
pub(super) fn month_line(rows: &[UsageRow]) -> String {
    match total(rows).filter(|total| total.questions > 0) {
        Some(total) => format!("This month: {}.", figures(total)),
        None => "This month: no questions yet.".to_string(),
    }
}

/// The caps that apply to a brain this month, and what is spent against them (millionths of
/// a US dollar; a cap of 0 is none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Budgets {
    /// The brain's monthly cap: its own, or the configured one for every brain.
    pub brain_cap: i64,
    /// The cap is the brain's own (`/brain budget`).
    pub brain_own: bool,
    pub brain_spent: i64,
    /// The tenant's monthly cap.
    pub tenant_cap: i64,
    pub tenant_spent: i64,
    /// LLM answers per person per day.
    pub user_questions: i64,
    /// As of when (Unix ms): the month spent in.
    pub now: i64,
}

impl Budgets {
    fn any(&self) -> bool {
        self.brain_cap > 0 || self.tenant_cap > 0 || self.user_questions > 0
    }

    fn resets(&self) -> String {
        when(next_month_start_ms(self.now))
    }
}

/// `$1.20 of $5.00 spent (24%)`, or `$1.20 spent, no cap`.
fn spent_of(spent: i64, cap: i64) -> String {
    if cap > 0 {
        format!(
            "{} of {} spent ({:.0}%)",
            money(spent),
            money(cap),
            (spent as f64 / cap as f64 * 100.0).floor()
        )
    } else {
        format!("{} spent, no cap", money(spent))
    }
}

/// `/brain budget` without an amount: each cap that applies to the brain, what is spent
/// against it this month, and when it resets.
pub(super) fn budget_show(
    budgets: &Budgets,
    brain: &BrainName,
    team: &str,
    platform: &str,
) -> String {
    let whose = match (budgets.brain_cap > 0, budgets.brain_own) {
        (true, true) => ": its own budget",
        (true, false) => ": the default budget for every brain",
        (false, _) => "",
    };
    let mut text = format!(
        "LLM budgets of the brain `{brain}` this month (until {}):\n• This brain: {}{whose}.\n\
         • All of {team}'s brains together: {}.",
        budgets.resets(),
        spent_of(budgets.brain_spent, budgets.brain_cap),
        spent_of(budgets.tenant_spent, budgets.tenant_cap),
    );
    if budgets.user_questions > 0 {
        text.push_str(&format!(
            "\n• Each person: at most {} a day (until 00:00 UTC).",
            plural(budgets.user_questions.unsigned_abs(), "LLM answer")
        ));
    }
    if budgets.any() {
        text.push_str(
            "\nOnce a budget is used up, questions are still answered, by quoting the \
             documents without the LLM.",
        );
    }
    text.push_str(&format!(
        "\nA manager sets this brain's own monthly budget with {}; `0` removes it.",
        budget_syntax(platform)
    ));
    text
}

/// The reply to `/brain budget` with an amount, given the budgets as they are after it.
pub(super) fn budget_changed(budgets: &Budgets) -> String {
    let mut text = if budgets.brain_own && budgets.brain_cap > 0 {
        format!(
            "This brain's monthly LLM budget is now {}; {} is spent this month, which ends {}.",
            money(budgets.brain_cap),
            money(budgets.brain_spent),
            budgets.resets()
        )
    } else if budgets.brain_cap > 0 {
        format!(
            "This brain no longer has a budget of its own: the default for every brain \
             applies again ({} a month; {} is spent this month).",
            money(budgets.brain_cap),
            money(budgets.brain_spent)
        )
    } else {
        "This brain no longer has a budget of its own, and there is no default for every \
         brain: its LLM spending has no monthly cap."
            .to_string()
    };
    if budgets.brain_cap > 0 && budgets.brain_spent >= budgets.brain_cap {
        text.push_str(&format!(
            " It is already used up: until {}, questions are answered by quoting the \
             documents, without the LLM.",
            budgets.resets()
        ));
    }
    text
}

/// `/brain info`'s line about the caps that apply to the brain.
pub(super) fn budget_line(budgets: &Budgets, team: &str) -> String {
    if !budgets.any() {
        return format!(
            "Budgets: none ({} spent this month).",
            money(budgets.brain_spent)
        );
    }
    let mut parts = Vec::new();
    if budgets.brain_cap > 0 {
        parts.push(format!(
            "{}: {}",
            if budgets.brain_own {
                "this brain's own"
            } else {
                "the default for every brain"
            },
            spent_of(budgets.brain_spent, budgets.brain_cap)
        ));
    }
    if budgets.tenant_cap > 0 {
        parts.push(format!(
            "all of {team}'s brains: {}",
            spent_of(budgets.tenant_spent, budgets.tenant_cap)
        ));
    }
    if budgets.user_questions > 0 {
        parts.push(format!(
            "each person: {} a day",
            plural(budgets.user_questions.unsigned_abs(), "LLM answer")
        ));
    }
    format!(
        "Budgets: {}. The month ends {}.",
        parts.join("; "),
        budgets.resets()
    )
}

/// `text` within `MAX_REPLY_CHARS`: cut at a line break (or anywhere in a very long line),
/// ending with `…`.
pub(super) fn fit(text: String) -> String {
    if text.chars().count() <= MAX_REPLY_CHARS {
        return text;
    }
    let keep: String = text.chars().take(MAX_REPLY_CHARS - 2).collect();
    let cut = match keep.rfind('\n') {
        Some(line_end) if line_end > 0 => &keep[..line_end],
        _ => keep.as_str(),
    };
    format!("{cut}\n…")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::UsageEntry;
    use crate::usage::{report, GroupBy};

    /// 2026-11-29T09:05:57Z.
    const NOW: i64 = 1_795_943_157_000;

    fn entry(model: &str, cost_micros: i64, total_ms: i64, up: u64) -> UsageEntry {
        UsageEntry {
            tenant: "discord:1".into(),
            brain: Some("hr".into()),
            user: Some("ann".into()),
            model: model.into(),
            created_at: NOW,
            prompt_tokens: if model.is_empty() { 0 } else { 1200 },
            completion_tokens: if model.is_empty() { 0 } else { 300 },
            cost_micros,
            total_ms: Some(total_ms),
            up,
            down: 0,
        }
    }

    fn budgets() -> Budgets {
        Budgets {
            brain_cap: 5_000_000,
            brain_own: true,
            brain_spent: 1_234_000,
            tenant_cap: 20_000_000,
            tenant_spent: 3_200_000,
            user_questions: 10,
            now: NOW,
        }
    }

    #[test]
    fn usage_shows_the_total_then_each_model() {
        let entries = [
            entry("gpt-4o-mini", 12_345, 1500, 1),
            entry("gpt-4o-mini", 100, 900, 0),
            entry("", 0, 80, 0),
        ];
        let rows = report(&entries, GroupBy::Model);
        assert_eq!(
            usage_reply(&rows, "this server", NOW),
            "This server this month (since 2026-11-29, UTC): 3 questions · 2,400 prompt + 600 \
             completion tokens · $0.0124 · answer time p50 900 ms, p95 1.5 s · 👍 1 👎 0.\n\
             By model:\n\
             • without the LLM: 1 question · 0 prompt + 0 completion tokens · $0.0000 · answer \
             time p50 80 ms, p95 80 ms · 👍 0 👎 0\n\
             • `gpt-4o-mini`: 2 questions · 2,400 prompt + 600 completion tokens · $0.0124 · \
             answer time p50 900 ms, p95 1.5 s · 👍 1 👎 0"
        );
        assert_eq!(
            usage_reply(&report(&[], GroupBy::Model), "this workspace", NOW),
            "No questions in this workspace this month (since 2026-11-29, UTC)."
        );
        assert_eq!(
            month_line(&report(&[], GroupBy::Model)),
            "This month: no questions yet."
        );
    }

    #[test]
    fn usage_with_many_models_stays_within_the_limit() {
        let entries: Vec<UsageEntry> = (0..60)
            .map(|n| entry(&format!("model-{n:02}-{}", "x".repeat(40)), 1, 1, 0))
            .collect();
        let text = usage_reply(&report(&entries, GroupBy::Model), "this server", NOW);
        assert!(text.chars().count() <= MAX_REPLY_CHARS, "{}", text.len());
        assert!(text.contains("• `model-00-"), "{text}");
        assert!(text.ends_with("more (`engram usage --by model` lists them all)."));
    }

    #[test]
    fn budgets_shown_with_spending_and_the_reset() {
        let brain = BrainName::parse("hr").unwrap();
        assert_eq!(
            budget_show(&budgets(), &brain, "this server", "discord"),
            "LLM budgets of the brain `hr` this month (until 2026-12-01 00:00 UTC):\n\
             • This brain: $1.23 of $5.00 spent (24%): its own budget.\n\
             • All of this server's brains together: $3.20 of $20.00 spent (16%).\n\
             • Each person: at most 10 LLM answers a day (until 00:00 UTC).\n\
             Once a budget is used up, questions are still answered, by quoting the documents \
             without the LLM.\n\
             A manager sets this brain's own monthly budget with `/brain budget usd:<amount>`; \
             `0` removes it."
        );
        let none = Budgets {
            brain_cap: 0,
            brain_own: false,
            tenant_cap: 0,
            user_questions: 0,
            ..budgets()
        };
        let shown = budget_show(&none, &brain, "this workspace", "slack");
        assert!(
            shown.contains("• This brain: $1.23 spent, no cap.\n"),
            "{shown}"
        );
        assert!(shown.contains("this workspace's brains together: $3.20 spent, no cap."));
        assert!(!shown.contains("Each person") && !shown.contains("used up"));
        assert!(shown.ends_with("with `/brain budget <amount>`; `0` removes it."));
        assert_eq!(
            budget_line(&none, "this workspace"),
            "Budgets: none ($1.23 spent this month)."
        );
        let default = Budgets {
            brain_own: false,
            ..budgets()
        };
        assert!(budget_show(&default, &brain, "this server", "discord")
            .contains("(24%): the default budget for every brain."));
        assert_eq!(
            budget_line(&default, "this server"),
            "Budgets: the default for every brain: $1.23 of $5.00 spent (24%); all of this \
             server's brains: $3.20 of $20.00 spent (16%); each person: 10 LLM answers a day. \
             The month ends 2026-12-01 00:00 UTC."
        );
    }

    #[test]
    fn a_changed_budget_says_what_applies_now() {
        assert_eq!(
            budget_changed(&budgets()),
            "This brain's monthly LLM budget is now $5.00; $1.23 is spent this month, which \
             ends 2026-12-01 00:00 UTC."
        );
        let below = Budgets {
            brain_cap: 1_000_000,
            ..budgets()
        };
        assert!(budget_changed(&below).ends_with(
            "It is already used up: until 2026-12-01 00:00 UTC, questions are answered by \
             quoting the documents, without the LLM."
        ));
        let cleared = Budgets {
            brain_own: false,
            ..budgets()
        };
        assert_eq!(
            budget_changed(&cleared),
            "This brain no longer has a budget of its own: the default for every brain \
             applies again ($5.00 a month; $1.23 is spent this month)."
        );
        let uncapped = Budgets {
            brain_own: false,
            brain_cap: 0,
            ..budgets()
        };
        assert!(budget_changed(&uncapped).ends_with("its LLM spending has no monthly cap."));
    }

    #[test]
    fn long_replies_are_cut_at_a_line() {
        assert_eq!(fit("short".into()), "short");
        let long = (0..300)
            .map(|n| format!("line {n}"))
            .collect::<Vec<_>>()
            .join("\n");
        let cut = fit(long.clone());
        assert!(cut.chars().count() <= MAX_REPLY_CHARS);
        assert!(cut.ends_with("\n…"));
        assert!(long.starts_with(cut.trim_end_matches("\n…")));
        let one_line = "é".repeat(5000);
        assert_eq!(fit(one_line).chars().count(), MAX_REPLY_CHARS);
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(thousands(999), "999");
    }
}
