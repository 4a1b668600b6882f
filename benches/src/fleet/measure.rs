//! What a window of the fleet's steady state cost and delivered, from both ends: the
//! upstream's count of listings and packs, `/proc` for CPU and memory, Postgres for its
//! tables and WAL, Redis for its keys.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use anyhow::ensure;
use stasis_testkit::fleet::Fleet;
use stasis_testkit::TestEnv;

use super::stack::{Spent, Stack};
use super::FleetScale;
use crate::report::{quantile, Row};

/// Tables whose rows are deleted once a fixed time old (`unchanged_checks`: per-second
/// counts of checks, kept 25 hours for the activity charts): their size stops growing a
/// day in, whatever the fleet's size.
const KEPT_FOR_A_TIME: &[&str] = &["unchanged_checks"];

/// The rows of a table that are its history, the ones its growth counts: `sync_jobs`
/// also holds the queue (jobs pending or running, about as many as the checks in flight,
/// however old the fleet), which a snapshot catches at any size between two ticks.
fn history_rows(table: &str) -> &'static str {
    match table {
        "sync_jobs" => " WHERE t.state NOT IN ('pending', 'running')",
        _ => "",
    }
}

pub struct Snapshot {
    at: Instant,
    fleet_ms: u64,
    cpu: Spent,
    listed: u64,
    packs: u64,
    tables: BTreeMap<String, Size>,
    wal: i64,
    work: Work,
    runs_finished: i64,
}

/// The database's transactions and rows written so far (`pg_stat_database`).
#[derive(Clone, Copy, Default, sqlx::FromRow)]
struct Work {
    transactions: i64,
    inserted: i64,
    updated: i64,
    deleted: i64,
}

/// A table's bytes on disk (with its indexes and TOAST) and its live rows' bytes.
#[derive(Clone, Copy, Default)]
struct Size {
    file: i64,
    live: i64,
}

impl Snapshot {
    pub async fn take(env: &TestEnv, stack: &Stack, fleet: &Fleet) -> anyhow::Result<Self> {
        let sizes: Vec<(String, i64)> = sqlx::query_as(
            "SELECT c.relname::text, pg_total_relation_size(c.oid)
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = 'public' AND c.relkind = 'r'",
        )
        .fetch_all(&env.pool)
        .await?;
        let mut tables = BTreeMap::new();
        for (table, file) in sizes {
            // the rows' own bytes: what stays once vacuum has reused the dead rows' space
            let live: i64 = sqlx::query_scalar(&format!(
                "SELECT COALESCE(sum(pg_column_size(t.*)), 0)::bigint FROM \"{table}\" t{}",
                history_rows(&table)
            ))
            .fetch_one(&env.pool)
            .await?;
            tables.insert(table, Size { file, live });
        }
        let wal: i64 =
            sqlx::query_scalar("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint")
                .fetch_one(&env.pool)
                .await?;
        let work: Work = sqlx::query_as(
            "SELECT xact_commit + xact_rollback AS transactions, tup_inserted AS inserted,
                    tup_updated AS updated, tup_deleted AS deleted
             FROM pg_stat_database WHERE datname = current_database()",
        )
        .fetch_one(&env.pool)
        .await?;
        let runs_finished: i64 =
            sqlx::query_scalar("SELECT count(*) FROM sync_runs WHERE finished_at IS NOT NULL")
                .fetch_one(&env.pool)
                .await?;
        Ok(Self {
            at: Instant::now(),
            fleet_ms: fleet.now_ms(),
            cpu: stack.cpu(),
            listed: fleet.listed(),
            packs: fleet.packs(),
            tables,
            wal,
            work,
            runs_finished,
        })
    }
}

pub struct Window {
    secs: f64,
    checks: u64,
    packs: u64,
    cpu: Spent,
    /// Lag of each change made early enough to be due by the window's end, ms.
    lags_ms: Vec<f64>,
    /// Of those, the ones no pack had carried by the window's end.
    uncarried: usize,
    overdue: usize,
    longest_gap_ms: u64,
    /// Each table's growth: its live rows' bytes, its files' bytes.
    table_growth: Vec<(String, i64, i64)>,
    wal: i64,
    work: Work,
    runs_added: i64,
    redis_bytes: u64,
    worker_rss: (u64, u64),
    pub failed_runs: i64,
    served: Vec<(usize, u8)>,
}

impl Window {
    pub async fn new(
        env: &TestEnv,
        stack: &Stack,
        fleet: &Arc<Fleet>,
        f: &FleetScale,
        changes_from: u64,
        before: Snapshot,
        after: Snapshot,
    ) -> anyhow::Result<Self> {
        let interval_ms = f.interval.as_millis() as u64;
        // a change is fetched at its mirror's next check: one interval, plus the
        // scheduler's tick and the sync itself; later ones may still be on their way
        let due_by = after.fleet_ms.saturating_sub(interval_ms + interval_ms / 4);
        // the warm-up's changes too: every mirror is on its schedule from the start
        let lags = fleet.lags(changes_from, due_by);
        let uncarried = lags.iter().filter(|(_, lag)| lag.is_none()).count();
        let lags_ms = lags
            .iter()
            .map(|(_, lag)| lag.map_or(f64::INFINITY, |l| l as f64))
            .collect();
        let schedule = fleet.schedule(2 * interval_ms);
        let table_growth = after
            .tables
            .iter()
            .map(|(t, size)| {
                let was = before.tables.get(t).copied().unwrap_or_default();
                (t.clone(), size.live - was.live, size.file - was.file)
            })
            .collect();
        let failed_runs: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM sync_runs WHERE outcome NOT IN ('success', 'interrupted')",
        )
        .fetch_one(&env.pool)
        .await?;
        let served = fleet
            .lags(0, u64::MAX)
            .into_iter()
            .filter(|(_, lag)| lag.is_some())
            .map(|(c, _)| (c.repo, c.generation))
            .collect();
        Ok(Self {
            secs: (after.at - before.at).as_secs_f64(),
            checks: after.listed - before.listed,
            packs: after.packs - before.packs,
            cpu: after.cpu.since(&before.cpu),
            lags_ms,
            uncarried,
            overdue: schedule.overdue,
            longest_gap_ms: schedule.longest_gap_ms,
            table_growth,
            wal: after.wal - before.wal,
            work: Work {
                transactions: after.work.transactions - before.work.transactions,
                inserted: after.work.inserted - before.work.inserted,
                updated: after.work.updated - before.work.updated,
                deleted: after.work.deleted - before.work.deleted,
            },
            runs_added: after.runs_finished - before.runs_finished,
            redis_bytes: redis_bytes(env).await?,
            worker_rss: stack.worker_rss(),
            failed_runs,
            served,
        })
    }

    fn checks_per_sec(&self) -> f64 {
        self.checks as f64 / self.secs
    }

    /// Mirror-days the window stands for: each interval is an hour of the fleet.
    fn mirror_days(&self, f: &FleetScale) -> f64 {
        f.mirrors as f64 * (self.secs / f.interval.as_secs_f64()) / 24.0
    }

    fn per_thousand(&self, secs: f64) -> f64 {
        secs * 1e3 / self.checks.max(1) as f64 * 1e3
    }

    fn live_bytes(&self) -> i64 {
        self.table_growth.iter().map(|(_, live, _)| live).sum()
    }

    /// The live growth that goes on at steady state: without the tables whose rows are
    /// kept for a fixed time whatever the fleet does, which stop growing once that time
    /// has passed.
    fn steady_bytes(&self) -> i64 {
        self.table_growth
            .iter()
            .filter(|(t, _, _)| !KEPT_FOR_A_TIME.contains(&t.as_str()))
            .map(|(_, live, _)| live)
            .sum()
    }

    fn file_bytes(&self) -> i64 {
        self.table_growth.iter().map(|(_, _, file)| file).sum()
    }

    fn lag(&self, q: f64) -> f64 {
        quantile(&mut self.lags_ms.clone(), q)
    }

    pub fn print(&self, f: &FleetScale) {
        let offered = f.mirrors as f64 / f.interval.as_secs_f64();
        let cores = |secs: f64| secs / self.secs;
        println!(
            "fleet: {:.0} s measured, {} checks ({:.1}/s against {offered:.1}/s due), {} packs \
             served, {} runs finished or folded",
            self.secs,
            self.checks,
            self.checks_per_sec(),
            self.packs,
            self.runs_added
        );
        let interval_s = f.interval.as_secs_f64();
        println!(
            "fleet freshness: {} changes due in the window, lag p50 {:.1} s, p99 {:.1} s, max \
             {:.1} s (interval {interval_s:.0} s); {} not yet fetched; {} mirrors overdue by \
             more than an interval, longest gap between checks {:.2} intervals",
            self.lags_ms.len(),
            self.lag(0.5) / 1e3,
            self.lag(0.99) / 1e3,
            self.lag(1.0) / 1e3,
            self.uncarried,
            self.overdue,
            self.longest_gap_ms as f64 / 1e3 / interval_s
        );
        let c = &self.cpu;
        println!(
            "fleet CPU per 1,000 checks: workers {:.0} ms, scheduler {:.0}, API {:.0}, \
             Postgres {:.0}, Redis {:.0}; host total {:.0} ms = {:.2} cores busy; upstream \
             (apart) {:.0} ms = {:.2} cores",
            self.per_thousand(c.workers),
            self.per_thousand(c.scheduler),
            self.per_thousand(c.api),
            self.per_thousand(c.postgres),
            self.per_thousand(c.redis),
            self.per_thousand(c.host()),
            cores(c.host()),
            self.per_thousand(c.upstream),
            cores(c.upstream)
        );
        let mut growth = self.table_growth.clone();
        growth.sort_by_key(|(_, live, _)| -live.abs());
        let top: Vec<String> = growth
            .iter()
            .take(4)
            .map(|(t, live, _)| format!("{t} {live:+}"))
            .collect();
        let days = self.mirror_days(f);
        println!(
            "fleet Postgres: live rows {:+} B, jobs in flight aside ({:.1} B per mirror-day; \
             {:.1} B at steady state, without {}, whose rows are kept for a fixed time; {}), \
             files {:+} B \
             ({:.1} B per mirror-day before vacuum reuses dead rows' space), WAL {} B ({:.0} B \
             per check)",
            self.live_bytes(),
            self.live_bytes() as f64 / days,
            self.steady_bytes() as f64 / days,
            KEPT_FOR_A_TIME.join(", "),
            top.join(", "),
            self.file_bytes(),
            self.file_bytes() as f64 / days,
            self.wal,
            self.wal as f64 / self.checks.max(1) as f64,
        );
        let per_check = |n: i64| n as f64 / self.checks.max(1) as f64;
        println!(
            "fleet Postgres per check: {:.2} transactions, rows {:.2} inserted, {:.2} updated, \
             {:.2} deleted",
            per_check(self.work.transactions),
            per_check(self.work.inserted),
            per_check(self.work.updated),
            per_check(self.work.deleted)
        );
        println!(
            "fleet memory: Redis {:.1} B per mirror ({} B); workers' RSS {:.1} MiB now, {:.1} \
             MiB at peak",
            self.redis_bytes as f64 / f.mirrors as f64,
            self.redis_bytes,
            self.worker_rss.0 as f64 / 1048576.0,
            self.worker_rss.1 as f64 / 1048576.0
        );
        println!("fleet binding resource: {}", self.binding(f));
    }

    /// What would stop a larger fleet first, read off this run's figures.
    fn binding(&self, f: &FleetScale) -> String {
        let offered = f.mirrors as f64 / f.interval.as_secs_f64();
        let all = (self.cpu.host() + self.cpu.upstream) / self.secs;
        let host = self.cpu.host() / self.secs;
        let kept_up = self.checks_per_sec() >= 0.95 * offered && self.overdue == 0;
        if !kept_up && all >= 1.8 {
            format!(
                "CPU: {all:.2} of 2 cores busy ({host:.2} the host's) and the checks fall \
                 behind ({:.1}/s of {offered:.1}/s)",
                self.checks_per_sec()
            )
        } else if !kept_up {
            format!(
                "not CPU ({all:.2} of 2 cores busy) but the pipeline: {:.1}/s of {offered:.1}/s \
                 checked with {} syncs at once",
                self.checks_per_sec(),
                f.workers * f.concurrency
            )
        } else {
            let fleet = offered * 3600.0;
            format!(
                "none reached: {host:.2} cores for {fleet:.0} mirrors at 1 h, so CPU binds first, \
                 near {:.0} mirrors at 1 h within 1.5 cores",
                fleet * 1.5 / host.max(1e-6)
            )
        }
    }

    /// The mirrors the upstream sent a change to hold it (or a later one): a sample of
    /// them, read from disk.
    pub fn check_mirrors(&self, env: &TestEnv, fleet: &Fleet) -> anyhow::Result<()> {
        let mut latest: BTreeMap<usize, u8> = BTreeMap::new();
        for &(repo, generation) in &self.served {
            let g = latest.entry(repo).or_default();
            *g = (*g).max(generation);
        }
        for (&repo, &generation) in latest.iter().take(200) {
            let path = env.mirror_path("fleet", &format!("m{repo}"));
            let mirror = git2::Repository::open_bare(&path)?;
            let head = mirror.refname_to_id("refs/heads/main")?.to_string();
            let reached = fleet.generation_of(&head).is_some_and(|g| g >= generation);
            ensure!(
                reached,
                "mirror m{repo} is at {head}, behind generation {generation} it was sent"
            );
        }
        Ok(())
    }

    pub fn rows(&self, f: &FleetScale, rows: &mut Vec<Row>) {
        let fleet = format!("{:.0} at 1 h", f.hourly_equivalent());
        let offered = f.mirrors as f64 / f.interval.as_secs_f64();
        let interval_ms = f.interval.as_secs_f64() * 1e3;
        rows.push(
            Row::new(
                "fleet",
                &format!("checks/s sustained, {fleet}"),
                self.checks_per_sec(),
                "/s",
            )
            .against("due", offered)
            .target("≥ 0.95×"),
        );
        rows.push(
            Row::new(
                "fleet",
                &format!("lag p99, in intervals, {fleet}"),
                self.lag(0.99) / interval_ms,
                "intervals",
            )
            .target("≤ 1.083 (1 h + 5 min)"),
        );
        rows.push(
            Row::new(
                "fleet",
                &format!("mirrors overdue by more than an interval, {fleet}"),
                self.overdue as f64,
                "mirrors",
            )
            .target("0"),
        );
        rows.push(
            Row::new(
                "fleet",
                &format!("cores busy, host (upstream apart), {fleet}"),
                self.cpu.host() / self.secs,
                "cores",
            )
            .target("≤ 1.5"),
        );
        rows.push(Row::new(
            "fleet",
            &format!("host CPU per 1,000 checks, {fleet}"),
            self.per_thousand(self.cpu.host()),
            "ms",
        ));
        rows.push(
            Row::new(
                "fleet",
                &format!("Postgres live data growth per mirror-day at steady state, {fleet}"),
                self.steady_bytes() as f64 / self.mirror_days(f),
                "B",
            )
            .target("≤ 100"),
        );
        rows.push(Row::new(
            "fleet",
            &format!("Postgres live data growth per mirror-day in the window, {fleet}"),
            self.live_bytes() as f64 / self.mirror_days(f),
            "B",
        ));
        rows.push(Row::new(
            "fleet",
            &format!("WAL per check, {fleet}"),
            self.wal as f64 / self.checks.max(1) as f64,
            "B",
        ));
        rows.push(Row::new(
            "fleet",
            &format!("Redis memory per mirror, {fleet}"),
            self.redis_bytes as f64 / f.mirrors as f64,
            "B",
        ));
        rows.push(Row::new(
            "fleet",
            &format!("workers' peak RSS, {fleet}"),
            self.worker_rss.1 as f64 / 1048576.0,
            "MiB",
        ));
    }
}

/// Bytes Redis holds for the environment's keys.
async fn redis_bytes(env: &TestEnv) -> anyhow::Result<u64> {
    let mut redis = env.redis.clone();
    let mut total = 0u64;
    for key in env.redis_keys().await? {
        let bytes: Option<u64> = redis::cmd("MEMORY")
            .arg("USAGE")
            .arg(&key)
            .query_async(&mut redis)
            .await?;
        total += bytes.unwrap_or(0);
    }
    Ok(total)
}
