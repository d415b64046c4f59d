//! `engram usage`'s figures (pure): answers grouped by brain, user, model or day, each group
//! with its questions, tokens, cost, answer latency p50/p95 and votes, and a total row last.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::clock::format_day;
use crate::store::UsageEntry;

/// What the rows of a report are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum GroupBy {
    Brain,
    User,
    Model,
    Day,
}

/// One row of a report: a group, or the total.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UsageRow {
    /// The tenant's key (by brain and by user).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// The brain's name (by brain; `null` for a deleted brain).
    #[serde(skip_serializing_if = "Grouped::is_absent")]
    pub brain: Grouped,
    #[serde(skip_serializing_if = "Grouped::is_absent")]
    pub user: Grouped,
    /// The model (by model; `null` for answers made without an LLM call).
    #[serde(skip_serializing_if = "Grouped::is_absent")]
    pub model: Grouped,
    /// `YYYY-MM-DD` (UTC; by day).
    #[serde(skip_serializing_if = "Grouped::is_absent")]
    pub day: Grouped,
    pub questions: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cost_usd: f64,
    /// Answer latency (question to last word), nearest rank; `null` without timings.
    pub p50_ms: Option<i64>,
    pub p95_ms: Option<i64>,
    pub up: u64,
    pub down: u64,
    pub total: bool,
}

/// A grouping column: absent from the row (another grouping, or the total), or its value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Grouped {
    Absent,
    Value(Option<String>),
}

impl Grouped {
    fn is_absent(&self) -> bool {
        matches!(self, Grouped::Absent)
    }

    /// For a table cell.
    pub fn text(&self, none: &str) -> String {
        match self {
            Grouped::Absent => String::new(),
            Grouped::Value(value) => value.clone().unwrap_or_else(|| none.to_string()),
        }
    }
}

#[derive(Debug, Default)]
struct Sums {
    questions: u64,
    prompt_tokens: u64,
    completion_tokens: u64,
    cost_micros: i64,
    latencies: Vec<i64>,
    up: u64,
    down: u64,
}

impl Sums {
    fn add(&mut self, entry: &UsageEntry) {
        self.questions += 1;
        self.prompt_tokens += entry.prompt_tokens;
        self.completion_tokens += entry.completion_tokens;
        self.cost_micros += entry.cost_micros;
        self.latencies.extend(entry.total_ms);
        self.up += entry.up;
        self.down += entry.down;
    }

    fn row(mut self, key: GroupKey, total: bool) -> UsageRow {
        self.latencies.sort_unstable();
        let (tenant, brain, user, model, day) = key;
        UsageRow {
            tenant,
            brain,
            user,
            model,
            day,
            questions: self.questions,
            prompt_tokens: self.prompt_tokens,
            completion_tokens: self.completion_tokens,
            cost_usd: self.cost_micros as f64 / 1e6,
            p50_ms: percentile(&self.latencies, 50),
            p95_ms: percentile(&self.latencies, 95),
            up: self.up,
            down: self.down,
            total,
        }
    }
}

/// `(tenant, brain, user, model, day)`.
type GroupKey = (Option<String>, Grouped, Grouped, Grouped, Grouped);

/// The nearest-rank `p`th percentile of sorted values.
pub fn percentile(sorted: &[i64], p: usize) -> Option<i64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p * sorted.len()).div_ceil(100).max(1);
    sorted.get(rank - 1).copied()
}

fn key_of(entry: &UsageEntry, by: GroupBy) -> GroupKey {
    let absent = || Grouped::Absent;
    match by {
        GroupBy::Brain => (
            Some(entry.tenant.clone()),
            Grouped::Value(entry.brain.clone()),
            absent(),
            absent(),
            absent(),
        ),
        GroupBy::User => (
            Some(entry.tenant.clone()),
            absent(),
            Grouped::Value(entry.user.clone()),
            absent(),
            absent(),
        ),
        GroupBy::Model => (
            None,
            absent(),
            absent(),
            Grouped::Value(Some(entry.model.clone()).filter(|model| !model.is_empty())),
            absent(),
        ),
        GroupBy::Day => (
            None,
            absent(),
            absent(),
            absent(),
            Grouped::Value(Some(format_day(entry.created_at))),
        ),
    }
}

/// The report: one row per group (in the group's order: tenant and name, model, day), then
/// the total of every entry.
pub fn report(entries: &[UsageEntry], by: GroupBy) -> Vec<UsageRow> {
    let mut groups: BTreeMap<GroupKeyOrder, (GroupKey, Sums)> = BTreeMap::new();
    let mut total = Sums::default();
    for entry in entries {
        let key = key_of(entry, by);
        groups
            .entry(order(&key))
            .or_insert_with(|| (key, Sums::default()))
            .1
            .add(entry);
        total.add(entry);
    }
    let mut rows: Vec<UsageRow> = groups
        .into_values()
        .map(|(key, sums)| sums.row(key, false))
        .collect();
    let absent = || Grouped::Absent;
    rows.push(total.row((None, absent(), absent(), absent(), absent()), true));
    rows
}

/// A sortable form of a group key.
type GroupKeyOrder = (Option<String>, Vec<Option<String>>);

fn order(key: &GroupKey) -> GroupKeyOrder {
    let value = |grouped: &Grouped| match grouped {
        Grouped::Absent => None,
        Grouped::Value(value) => value.clone(),
    };
    (
        key.0.clone(),
        vec![value(&key.1), value(&key.2), value(&key.3), value(&key.4)],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(
        brain: &str,
        user: &str,
        model: &str,
        day: i64,
        cost: i64,
        ms: Option<i64>,
    ) -> UsageEntry {
        UsageEntry {
            tenant: "local".into(),
            brain: Some(brain.into()),
            user: Some(user.into()),
            model: model.into(),
            created_at: day * 86_400_000 + 1000,
            prompt_tokens: 10,
            completion_tokens: 5,
            cost_micros: cost,
            total_ms: ms,
            up: 1,
            down: 0,
        }
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let values: Vec<i64> = (1..=20).collect();
        assert_eq!(percentile(&values, 50), Some(10));
        assert_eq!(percentile(&values, 95), Some(19));
        assert_eq!(percentile(&[7], 95), Some(7));
        assert_eq!(percentile(&[], 50), None);
    }

    #[test]
    fn groups_then_the_total_last() {
        let entries = [
            entry("hr", "ann", "gpt", 0, 100, Some(1000)),
            entry("ops", "bob", "", 1, 0, Some(200)),
            entry("hr", "bob", "gpt", 1, 50, None),
        ];
        let rows = report(&entries, GroupBy::Brain);
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0].brain, Grouped::Value(Some("hr".into())));
        assert_eq!((rows[0].questions, rows[0].cost_usd), (2, 0.00015));
        assert_eq!((rows[0].p50_ms, rows[0].p95_ms), (Some(1000), Some(1000)));
        assert!(rows[2].total);
        assert_eq!(
            (rows[2].questions, rows[2].up, rows[2].prompt_tokens),
            (3, 3, 30)
        );
        assert_eq!(rows[2].p50_ms, Some(200));

        let by_model = report(&entries, GroupBy::Model);
        assert_eq!(
            by_model[0].model,
            Grouped::Value(None),
            "no LLM call sorts first"
        );
        let json = serde_json::to_value(&by_model[1]).unwrap();
        assert_eq!(json["model"], "gpt");
        assert!(json.get("brain").is_none() && json.get("tenant").is_none());
        let total = serde_json::to_value(by_model.last().unwrap()).unwrap();
        assert_eq!(total["total"], true);
        assert!(total.get("model").is_none());

        let by_day = report(&entries, GroupBy::Day);
        assert_eq!(by_day[0].day, Grouped::Value(Some("1970-01-01".into())));
        assert_eq!(by_day[1].questions, 2);
    }
}
