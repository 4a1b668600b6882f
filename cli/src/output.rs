//! How commands print: a readable table by default, JSON with `--json` for scripts.

use std::io::Write;

use chrono::{DateTime, SecondsFormat, Utc};
use comfy_table::presets::UTF8_BORDERS_ONLY;
use comfy_table::{ContentArrangement, Row, Table};
use serde::Serialize;

/// Prints a line to stdout like `println!`, but a reader that went away
/// (`stasisctl jobs list | head -1`) ends the command quietly instead of panicking.
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::output::line(format_args!($($arg)*))
    };
}

pub fn line(args: std::fmt::Arguments<'_>) {
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout
        .write_fmt(args)
        .and_then(|()| stdout.write_all(b"\n"))
    {
        // A closed pipe is how `head` says it has read enough: not an error. Anything
        // else (a full disk) is, and the exit code must say so.
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: writing to stdout: {e}");
        std::process::exit(1);
    }
}

pub fn json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    out!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Terminal width from `COLUMNS` (shells export it; pipes have no width of their own),
/// 100 when unset or unreadable.
pub fn width() -> u16 {
    std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.trim().parse::<u16>().ok())
        .filter(|&c| c >= 20)
        .unwrap_or(100)
}

/// Rows are held to two lines each so one long error cannot push the rest of the
/// table off screen; `jobs show` prints full errors beneath its table.
pub fn table(header: &[&str], rows: impl IntoIterator<Item = Vec<String>>) -> Table {
    let mut table = Table::new();
    table
        .load_preset(UTF8_BORDERS_ONLY)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_width(width())
        .set_truncation_indicator("…")
        .set_header(header.iter().copied());
    for cells in rows {
        let mut row = Row::from(cells);
        row.max_height(2);
        table.add_row(row);
    }
    table
}

/// RFC 3339 in UTC (`2026-11-25T18:02:11Z`), so a reader in another zone is not misled;
/// or `-`.
pub fn time(t: Option<DateTime<Utc>>) -> String {
    t.map_or_else(
        || "-".into(),
        |t| t.to_rfc3339_opts(SecondsFormat::Secs, true),
    )
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

/// A run's ref changes: `+updated -pruned`, or `unchanged` when nothing was fetched;
/// a run that stands for the unchanged checks after it too says how many and when the
/// last began (its first is the run's start).
pub fn refs(run: &stasis_shared::db::runs::Run) -> String {
    let last = time(Some(run.last_checked_at));
    match (run.unchanged, run.checks) {
        (true, 1) => "unchanged".into(),
        (true, n) => format!("unchanged ×{n}, last {last}"),
        (false, 1) => format!("+{} -{}", run.refs_updated, run.refs_pruned),
        (false, n) => format!(
            "+{} -{}, then unchanged ×{}, last {last}",
            run.refs_updated,
            run.refs_pruned,
            n - 1
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_fit_the_width_and_times_carry_their_zone() {
        let long = "x".repeat(500);
        let t = table(&["A", "B"], [vec!["a".into(), long]]).to_string();
        let widest = t.lines().map(|l| l.chars().count()).max().unwrap();
        assert!(widest <= usize::from(width()), "{t}");
        assert!(t.contains('…'), "{t}");
        let at = DateTime::parse_from_rfc3339("2026-11-25T18:02:11+02:00").unwrap();
        assert_eq!(time(Some(at.into())), "2026-11-25T16:02:11Z");
    }

    #[test]
    fn a_run_standing_for_later_unchanged_checks_says_how_many_and_the_last() {
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().to_utc();
        let mut run = stasis_shared::db::runs::Run {
            id: 1,
            job_id: uuid::Uuid::nil(),
            attempt: 1,
            worker: "w".into(),
            started_at: at("2026-12-01T10:00:00Z"),
            finished_at: Some(at("2026-12-01T10:00:01Z")),
            outcome: Some(stasis_shared::domain::RunOutcome::Success),
            error: None,
            error_kind: None,
            refs_updated: 0,
            refs_created: 0,
            refs_pruned: 0,
            bytes_received: 0,
            objects_received: 0,
            list_ms: Some(40),
            fetch_ms: None,
            unchanged: true,
            checks: 1,
            last_checked_at: at("2026-12-01T10:00:00Z"),
            duration_ms: Some(45),
            lfs_objects: None,
            lfs_bytes: None,
            lfs_error: None,
        };
        assert_eq!(refs(&run), "unchanged");
        run.checks = 24;
        run.last_checked_at = at("2026-12-02T09:00:00Z");
        assert_eq!(refs(&run), "unchanged ×24, last 2026-12-02T09:00:00Z");
        run.unchanged = false;
        run.refs_updated = 2;
        assert_eq!(
            refs(&run),
            "+2 -0, then unchanged ×23, last 2026-12-02T09:00:00Z"
        );
        run.checks = 1;
        assert_eq!(refs(&run), "+2 -0");
    }
}
