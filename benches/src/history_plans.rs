//! `EXPLAIN (ANALYZE, BUFFERS)` of the history benchmark's queries at its large size,
//! summarised: execution time, buffers, and every plan node with its actual rows, and
//! a warning for a sequential scan of, or a sort over, a whole history table (more rows
//! than a page of anything needs). Statements that write run in a transaction rolled
//! back. The status, jobs listing, job counts, due scan and retention statements are the
//! services' own text (public constants), explained as their prepared statement's sixth
//! execution, when the planner may have settled on a generic plan; the history page and
//! the throughput are copies.

use sqlx::{Connection, PgPool, Row as _};
use stasis_scheduler::retention::{self, EXCESS_RUNS, OLD_RUNS, ORPHAN_JOBS};
use stasis_shared::db::{jobs, repos, runs};
use stasis_shared::domain::lifecycle::opening::OPEN_DUE;

/// A node reading this many rows of a history table is reading all of it, or a lot.
const WHOLE: f64 = 50_000.0;

/// A statement to explain: literal SQL, or a parameterised one explained as its
/// prepared statement's sixth execution.
enum Query {
    Literal(String),
    Generic {
        sql: String,
        types: &'static str,
        args: String,
    },
}

impl From<String> for Query {
    fn from(sql: String) -> Self {
        Query::Literal(sql)
    }
}

impl From<&str> for Query {
    fn from(sql: &str) -> Self {
        Query::Literal(sql.into())
    }
}

pub async fn explain(pool: &PgPool, mirrors: i64) -> anyhow::Result<()> {
    let name = format!("'m{}'", mirrors / 2);
    let repo = format!("md5('repo' || {})::uuid", mirrors / 2);
    // The API binds the filter as parameters, and a pooled connection keeps its prepared
    // statements: from the sixth execution on the planner may settle on a generic plan,
    // so the plan explained is the sixth execution's, as the API would run it.
    let list = |listing: jobs::Listing, args: String| Query::Generic {
        sql: listing.page.into(),
        types: "text, text, text, bigint, bigint",
        args,
    };
    let count = |listing: jobs::Listing, args: String| Query::Generic {
        sql: listing.count.into(),
        types: "text, text, text, bigint",
        args,
    };
    let cap = jobs::COUNT_CAP + 1;
    let queries: Vec<(&str, Query)> = vec![
        (
            "status (repos::STATUS)",
            Query::Generic {
                sql: repos::STATUS.into(),
                types: "text, text",
                args: format!("'bench', {name}"),
            },
        ),
        (
            "history (runs::for_repo, limit 100)",
            format!(
                "SELECT * FROM sync_runs WHERE repo_id = {repo}
                 ORDER BY started_at DESC, id DESC LIMIT 100"
            )
            .into(),
        ),
        (
            "jobs list, first page",
            list(jobs::ALL_JOBS, "NULL, NULL, NULL, 100, 0".into()),
        ),
        (
            "jobs list, page 50",
            list(jobs::ALL_JOBS, "NULL, NULL, NULL, 100, 4900".into()),
        ),
        (
            "jobs list total (count, capped)",
            count(jobs::ALL_JOBS, format!("NULL, NULL, NULL, {cap}")),
        ),
        (
            "jobs list ?state=failed, first page",
            list(jobs::BY_STATE, "'failed', NULL, NULL, 100, 0".into()),
        ),
        (
            "jobs list ?state=failed total",
            count(jobs::BY_STATE, format!("'failed', NULL, NULL, {cap}")),
        ),
        (
            "jobs list ?repo=, first page",
            list(jobs::BY_REPO, format!("NULL, 'bench', {name}, 100, 0")),
        ),
        (
            "jobs list ?repo= total",
            count(jobs::BY_REPO, format!("NULL, 'bench', {name}, {cap}")),
        ),
        (
            "overview: jobs per state (jobs::DEPTH)",
            Query::Generic {
                sql: jobs::DEPTH.into(),
                types: "text[], bigint",
                args: format!(
                    "ARRAY['pending', 'running', 'done', 'failed', 'dead'], {}",
                    jobs::COUNT_CAP
                ),
            },
        ),
        (
            "overview: oldest pending (jobs::depth)",
            "SELECT EXTRACT(EPOCH FROM now() - min(enqueued_at))::float8
             FROM sync_jobs WHERE state = 'pending'"
                .into(),
        ),
        (
            "overview: runs in the last hour (runs::throughput)",
            "SELECT count(*) FILTER (WHERE finished_at > now() - interval '1 minute'), count(*)
             FROM sync_runs WHERE finished_at > now() - interval '1 hour'"
                .into(),
        ),
        (
            "operator charts: a day by half hours (runs::ACTIVITY)",
            Query::Generic {
                sql: runs::ACTIVITY.into(),
                types: "float8, bigint, text, text, text",
                args: "1800, 48, 'success', 'retrying', 'failed'".into(),
            },
        ),
        (
            "due scan (opening::OPEN_DUE, 1000)",
            Query::Generic {
                sql: OPEN_DUE.into(),
                types: "bigint, int, timestamptz, uuid",
                args: "1000, 5, NULL, NULL".into(),
            },
        ),
        (
            "retention: excess runs, first slice",
            bind_excess(EXCESS_RUNS, 1000).into(),
        ),
        (
            "retention: excess runs, first slice, 999 kept (deletes a run and job per mirror)",
            bind_excess(EXCESS_RUNS, 999).into(),
        ),
        (
            "retention: mirrors with runs since the last pass (the newest 100 runs)",
            retention::MIRRORS_WITH_NEW_RUNS
                .replace("$1", "(SELECT max(id) - 100 FROM sync_runs)")
                .replace("$2", "(SELECT max(id) FROM sync_runs)")
                .into(),
        ),
        (
            "retention: old runs",
            OLD_RUNS
                .replace("$1", &format!("{}", 90 * 86_400))
                .replace("$2", &retention::BATCH.to_string())
                .into(),
        ),
        (
            "retention: orphan jobs",
            ORPHAN_JOBS
                .replace("$1", &retention::BATCH.to_string())
                .replace("$2", &format!("{}", 90 * 86_400))
                .into(),
        ),
    ];
    println!("\n  EXPLAIN (ANALYZE, BUFFERS) at the large size:");
    let mut conn = pool.acquire().await?;
    for (label, query) in queries {
        // nothing is kept: a write was only explained
        let mut tx = conn.begin().await?;
        let explained = match &query {
            Query::Literal(sql) => format!("EXPLAIN (ANALYZE, BUFFERS) {sql}"),
            Query::Generic { sql, types, args } => {
                sqlx::raw_sql(&format!("PREPARE bench_q ({types}) AS {sql}"))
                    .execute(&mut *tx)
                    .await?;
                for _ in 0..5 {
                    sqlx::raw_sql(&format!("EXECUTE bench_q ({args})"))
                        .execute(&mut *tx)
                        .await?;
                }
                format!("EXPLAIN (ANALYZE, BUFFERS) EXECUTE bench_q ({args})")
            }
        };
        let lines: Vec<String> = sqlx::query(&explained)
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(|row| row.get::<String, _>(0))
            .collect();
        tx.rollback().await?;
        if matches!(query, Query::Generic { .. }) {
            // a prepared statement outlives the transaction
            sqlx::raw_sql("DEALLOCATE bench_q")
                .execute(&mut *conn)
                .await?;
        }
        summarise(label, &lines);
    }
    Ok(())
}

fn bind_excess(sql: &str, max_runs: u32) -> String {
    sql.replace("$1", "'00000000-0000-0000-0000-000000000000'::uuid")
        .replace("$2", &max_runs.to_string())
        .replace("$3", &retention::MIRRORS_PER_BATCH.to_string())
        .replace("$4", &retention::BATCH.to_string())
}

/// Prints the execution time, the top node's buffers and each node; warns of a
/// sequential scan of a history table or a sort of more than `WHOLE` rows.
fn summarise(label: &str, lines: &[String]) {
    let time = lines
        .iter()
        .find_map(|l| l.trim().strip_prefix("Execution Time: "))
        .unwrap_or("?");
    let buffers = lines
        .iter()
        .find_map(|l| l.trim().strip_prefix("Buffers: "))
        .unwrap_or("-");
    println!("  - {label}: {time}; buffers {buffers}");
    for line in lines {
        let node = line.trim_start().trim_start_matches("-> ");
        let is_node = line.contains("(cost=") || line.contains("(actual");
        if !is_node {
            continue;
        }
        let name = node.split("  (").next().unwrap_or(node);
        let rows = actual_rows(node);
        let loops = field(node, "loops=").unwrap_or(1.0);
        let history_table = name.contains("sync_runs") || name.contains("sync_jobs");
        let warn = (name.starts_with("Seq Scan") && history_table && rows * loops > WHOLE)
            || (name.starts_with("Sort") && rows * loops > WHOLE)
            || (history_table && rows * loops > WHOLE * 10.0);
        println!(
            "      {}{name} (rows {rows:.0} × {loops:.0}){}",
            "  ".repeat(depth(line)),
            if warn {
                "  <-- reads much of a history table"
            } else {
                ""
            }
        );
    }
}

fn depth(line: &str) -> usize {
    (line.len() - line.trim_start().len()) / 6
}

fn actual_rows(node: &str) -> f64 {
    node.split("(actual")
        .nth(1)
        .and_then(|a| field(a, "rows="))
        .unwrap_or(0.0)
}

fn field(text: &str, key: &str) -> Option<f64> {
    let at = text.find(key)? + key.len();
    let digits: String = text[at..]
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    digits.parse().ok()
}
