//! Budgets as an answer meets them (pure): the caps in force for a brain, what an LLM call is
//! reserved at before it is made, and the one-line notices for a cap reached (with when it
//! resets) and for a cap's warning share crossed. The counting itself is the store's
//! (`Store::reserve_spending`, `Store::record_answer`).

use crate::brain::Brain;
use crate::clock::{day_start_ms, format_utc, next_month_start_ms};
use crate::config::{BudgetsConfig, LlmConfig};
use crate::store::{CapKind, CapUse, Caps};

/// US dollars to millionths (what the store counts in).
pub fn usd_to_micros(usd: f64) -> i64 {
    (usd * 1e6).round() as i64
}

/// The caps in force for an answer from `brain`: the configured ones, the brain's own monthly
/// cap replacing the configured per-brain one when it has one.
pub fn caps_for(config: &BudgetsConfig, brain: &Brain) -> Caps {
    Caps {
        tenant_micros: usd_to_micros(config.monthly_usd_per_tenant),
        brain_micros: brain
            .budget_micros
            .unwrap_or_else(|| usd_to_micros(config.monthly_usd_per_brain)),
        user_questions: i64::from(config.daily_questions_per_user),
        warn_at: config.warn_at,
    }
}

/// What an LLM call is reserved at before it is made: the prompt's tokens and
/// `reserve_completion_tokens` for the answer, at `model`'s price.
pub fn estimate_micros(
    llm: &LlmConfig,
    budgets: &BudgetsConfig,
    model: &str,
    prompt_tokens: usize,
) -> i64 {
    llm.cost_micros(
        model,
        u32::try_from(prompt_tokens).unwrap_or(u32::MAX),
        budgets.reserve_completion_tokens,
    )
}

/// When a cap's period (as of `now`) ends: the next month, or for a person's questions the
/// next day (UTC).
pub fn resets_at(cap: CapKind, now: i64) -> i64 {
    match cap {
        CapKind::Tenant | CapKind::Brain => next_month_start_ms(now),
        CapKind::User => day_start_ms(now) + 86_400_000,
    }
}

/// `2026-12-01 00:00 UTC`.
pub fn when(ms: i64) -> String {
    let text = format_utc(ms);
    format!("{} {} UTC", &text[..10], &text[11..16])
}

/// Dollars and cents (with hundredths of a cent below a cent).
pub fn usd(micros: i64) -> String {
    if micros.abs() < 10_000 {
        format!("${:.4}", micros as f64 / 1e6)
    } else {
        format!("${:.2}", micros as f64 / 1e6)
    }
}

/// The cap named for people, with its limit.
fn cap_name(cap: &CapUse) -> String {
    match cap.cap {
        CapKind::Tenant => format!("the team's monthly LLM budget ({})", usd(cap.limit)),
        CapKind::Brain => format!("this brain's monthly LLM budget ({})", usd(cap.limit)),
        CapKind::User => format!("your daily limit of {} LLM answers", cap.limit),
    }
}

/// The one line an answer made without the LLM because of a cap starts with.
pub fn capped_notice(cap: &CapUse, now: i64) -> String {
    let name = cap_name(cap);
    let mut name_chars = name.chars();
    let name = name_chars
        .next()
        .map(|first| first.to_uppercase().chain(name_chars).collect::<String>())
        .unwrap_or_default();
    format!(
        "⚠️ {name} is used up until {}, so this answer quotes the documents without the LLM.",
        when(resets_at(cap.cap, now))
    )
}

/// The one line that announces a cap's warning share crossed.
pub fn warning_notice(cap: &CapUse, now: i64) -> String {
    let used = match cap.cap {
        CapKind::Tenant | CapKind::Brain => format!("{} of {}", usd(cap.used), cap_name(cap)),
        CapKind::User => format!("{} of {}", cap.used, cap_name(cap)),
    };
    format!(
        "ℹ️ {:.0}% used: {used}; it resets {}.",
        (cap.ratio() * 100.0).floor(),
        when(resets_at(cap.cap, now))
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::brain::{BrainId, BrainName, TenantId};

    fn brain(budget_micros: Option<i64>) -> Brain {
        Brain {
            id: BrainId(1),
            tenant: TenantId(1),
            name: BrainName::parse("hr").unwrap(),
            system_prompt: None,
            model: None,
            budget_micros,
            created_at: 0,
        }
    }

    #[test]
    fn a_brains_own_cap_replaces_the_configured_one() {
        let config = BudgetsConfig {
            monthly_usd_per_tenant: 20.0,
            monthly_usd_per_brain: 5.0,
            daily_questions_per_user: 10,
            ..BudgetsConfig::NONE
        };
        let caps = caps_for(&config, &brain(None));
        assert_eq!(
            (caps.tenant_micros, caps.brain_micros, caps.user_questions),
            (20_000_000, 5_000_000, 10)
        );
        assert_eq!(
            caps_for(&config, &brain(Some(1_500_000))).brain_micros,
            1_500_000
        );
        assert_eq!(
            caps_for(&config, &brain(Some(0))).brain_micros,
            0,
            "0 = no cap"
        );
        assert!(!caps_for(&BudgetsConfig::NONE, &brain(None)).any());
    }

    #[test]
    fn notices_name_the_cap_and_when_it_resets() {
        // 2026-11-29T09:05:57Z.
        let now = 1_795_943_157_000;
        let brain_cap = CapUse {
            cap: CapKind::Brain,
            used: 5_000_000,
            limit: 5_000_000,
        };
        assert_eq!(
            capped_notice(&brain_cap, now),
            "⚠️ This brain's monthly LLM budget ($5.00) is used up until 2026-12-01 00:00 UTC, \
             so this answer quotes the documents without the LLM."
        );
        let user_cap = CapUse {
            cap: CapKind::User,
            used: 8,
            limit: 10,
        };
        assert_eq!(
            warning_notice(&user_cap, now),
            "ℹ️ 80% used: 8 of your daily limit of 10 LLM answers; it resets 2026-11-30 00:00 UTC."
        );
        let tenant_cap = CapUse {
            cap: CapKind::Tenant,
            used: 16_500_000,
            limit: 20_000_000,
        };
        assert!(warning_notice(&tenant_cap, now)
            .starts_with("ℹ️ 82% used: $16.50 of the team's monthly LLM budget ($20.00)"));
        assert!(!capped_notice(&brain_cap, now).contains('\n'), "one line");
    }

    #[test]
    fn the_estimate_prices_the_prompt_and_the_reserved_answer() {
        let llm = crate::config::Config::defaults().llm;
        // gpt-4o-mini: $0.15 and $0.60 per million tokens.
        let budgets = BudgetsConfig::NONE;
        assert_eq!(
            estimate_micros(&llm, &budgets, "gpt-4o-mini", 2000),
            300 + 600
        );
        assert_eq!(estimate_micros(&llm, &budgets, "unlisted", 2000), 0);
    }
}
