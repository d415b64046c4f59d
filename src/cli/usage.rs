//! `engram usage`: questions, tokens, cost, answer latency p50/p95 and votes from the store,
//! grouped by brain, user, model or day, with the total last; a table, or JSON lines.

use anyhow::{bail, Context as _};
use clap::Args;

use crate::app;
use crate::brain::{BrainName, TenantKey};
use crate::clock::{format_day, month_start_ms, now_ms, parse_day};
use crate::config::Config;
use crate::store::UsageFilter;
use crate::usage::{report, GroupBy, UsageRow};

use super::output::outln;

#[derive(Debug, Args)]
pub struct UsageArgs {
    /// Only this tenant: `local`, `discord:<guild id>` or `slack:<team id>`. Default: all.
    #[arg(long, value_parser = TenantKey::parse)]
    pub tenant: Option<TenantKey>,
    /// Only this brain (in every tenant that has one of that name, unless --tenant).
    #[arg(long, value_parser = BrainName::parse)]
    pub brain: Option<BrainName>,
    /// One row per brain, user, model or day.
    #[arg(long, value_enum, default_value = "brain")]
    pub by: GroupBy,
    /// Answers from this day on (YYYY-MM-DD, UTC). Default: the first of this month.
    #[arg(long, value_name = "YYYY-MM-DD", value_parser = parse_since)]
    pub since: Option<i64>,
    /// One JSON object per row; the last is the total (`"total": true`).
    #[arg(long)]
    pub json: bool,
}

fn parse_since(text: &str) -> Result<i64, String> {
    parse_day(text).ok_or_else(|| format!("`{text}` is not a day written YYYY-MM-DD"))
}

pub async fn usage_command(config: &Config, args: UsageArgs) -> anyhow::Result<()> {
    let store = app::open_existing_store(config).await?;
    let since = args.since.unwrap_or_else(|| month_start_ms(now_ms()));
    let mut filter = UsageFilter {
        since,
        ..UsageFilter::default()
    };
    if let Some(key) = &args.tenant {
        let Some(tenant) = store.find_tenant(key).await? else {
            bail!("no tenant {key} (it has asked no questions yet)");
        };
        filter.tenant = Some(tenant);
        if let Some(name) = &args.brain {
            let brain = store
                .brain_by_name(tenant, name)
                .await?
                .with_context(|| format!("no brain named `{name}` for tenant {key}"))?;
            filter.brain = Some(brain.id);
        }
    }
    let mut entries = store.usage_entries(&filter).await?;
    if let (Some(name), None) = (&args.brain, &args.tenant) {
        entries.retain(|entry| entry.brain.as_deref() == Some(name.as_str()));
    }
    let rows = report(&entries, args.by);
    if args.json {
        for row in &rows {
            outln!("{}", serde_json::to_string(row)?);
        }
        return Ok(());
    }
    outln!("Since {} (UTC):", format_day(since));
    print_table(&rows, args.by)
}

fn print_table(rows: &[UsageRow], by: GroupBy) -> anyhow::Result<()> {
    let header: &[&str] = match by {
        GroupBy::Brain => &["TENANT", "BRAIN"],
        GroupBy::User => &["TENANT", "USER"],
        GroupBy::Model => &["MODEL"],
        GroupBy::Day => &["DAY"],
    };
    let mut table: Vec<Vec<String>> = Vec::new();
    let mut head: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    head.extend(
        [
            "QUESTIONS",
            "PROMPT",
            "COMPLETION",
            "COST USD",
            "P50 MS",
            "P95 MS",
            "UP",
            "DOWN",
        ]
        .map(String::from),
    );
    table.push(head);
    for row in rows {
        let mut cells: Vec<String> = if row.total {
            let mut cells = vec!["total".to_string()];
            cells.resize(header.len(), String::new());
            cells
        } else {
            match by {
                GroupBy::Brain => vec![
                    row.tenant.clone().unwrap_or_default(),
                    row.brain.text("(deleted)"),
                ],
                GroupBy::User => vec![
                    row.tenant.clone().unwrap_or_default(),
                    row.user.text("(unknown)"),
                ],
                GroupBy::Model => vec![row.model.text("(no LLM)")],
                GroupBy::Day => vec![row.day.text("")],
            }
        };
        let ms = |value: Option<i64>| value.map_or_else(|| "-".to_string(), |ms| ms.to_string());
        cells.extend([
            row.questions.to_string(),
            row.prompt_tokens.to_string(),
            row.completion_tokens.to_string(),
            format!("{:.4}", row.cost_usd),
            ms(row.p50_ms),
            ms(row.p95_ms),
            row.up.to_string(),
            row.down.to_string(),
        ]);
        table.push(cells);
    }
    let columns = table[0].len();
    let widths: Vec<usize> = (0..columns)
        .map(|column| {
            table
                .iter()
                .map(|cells| cells[column].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for cells in &table {
        let line: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(column, cell)| {
                if column < header.len() {
                    format!("{cell:<width$}", width = widths[column])
                } else {
                    format!("{cell:>width$}", width = widths[column])
                }
            })
            .collect();
        outln!("{}", line.join("  ").trim_end());
    }
    Ok(())
}
