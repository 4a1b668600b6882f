//! How commands print: a readable table by default, JSON with `--json` for scripts.

use chrono::{DateTime, Utc};
use comfy_table::presets::UTF8_BORDERS_ONLY;
use comfy_table::{ContentArrangement, Table};
use serde::Serialize;

pub fn json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

pub fn table(header: &[&str], rows: impl IntoIterator<Item = Vec<String>>) -> Table {
    let mut table = Table::new();
    table
        .load_preset(UTF8_BORDERS_ONLY)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(header.iter().copied());
    for row in rows {
        table.add_row(row);
    }
    table
}

/// `2026-11-25 18:02:11` in UTC, or `-`.
pub fn time(t: Option<DateTime<Utc>>) -> String {
    t.map_or_else(|| "-".into(), |t| t.format("%Y-%m-%d %H:%M:%S").to_string())
}

pub fn text(t: Option<&str>) -> String {
    match t {
        Some(t) if !t.is_empty() => short(t, 70),
        _ => "-".into(),
    }
}

fn short(t: &str, max: usize) -> String {
    let line = t.lines().next().unwrap_or_default();
    if line.chars().count() <= max {
        line.to_owned()
    } else {
        let cut: String = line.chars().take(max - 1).collect();
        format!("{cut}…")
    }
}

/// A run's ref changes: `+updated -pruned`, or `unchanged` when nothing was fetched.
pub fn refs(run: &stasis_shared::db::runs::Run) -> String {
    if run.unchanged {
        "unchanged".into()
    } else {
        format!("+{} -{}", run.refs_updated, run.refs_pruned)
    }
}
