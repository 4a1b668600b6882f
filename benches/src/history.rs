//! Benchmark 8: the queries that read history, with 10 million run rows beside 10,000
//! (`--quick`: 200,000 beside 10,000): the mirror status, history listing, operator jobs
//! listing and queue overview endpoints of a `stasis-api` process, the scheduler's due
//! scan and the retention pass. One database, grown from the small size to the large
//! one by SQL (`generate_series`), so both sizes are measured on the same mirrors; at
//! the large size each query's `EXPLAIN (ANALYZE, BUFFERS)` is summarised
//! (`history_plans.rs`).
//!
//! The data is history in its steady state: `mirrors` mirrors with a finished job and
//! one run per sync (every 50th failed), newest first, spread over the last 60 days,
//! at most `history.max_runs_per_mirror` (1000) per mirror, so the retention pass finds
//! nothing to delete and can be timed again and again; a few mirrors are due.

use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use stasis_scheduler::retention::{enforce, Progress};
use stasis_shared::db::users::User;
use stasis_testkit::git::{free_port, wait_for_port};
use stasis_testkit::TestEnv;

use crate::report::{quantile, Row};
use crate::{history_plans, sibling_binary, Scale};

/// Runs are spread over this span, newest at now: all younger than `history.max_age`.
const SPAN_SECS: f64 = 60.0 * 86_400.0;
/// Mirrors due at each timed scheduler tick.
const DUE: i64 = 100;
/// Rows generated per statement.
const CHUNK: i64 = 500_000;

pub struct Sizes {
    pub small: i64,
    pub large: i64,
    pub mirrors: i64,
    pub samples: usize,
}

impl Sizes {
    pub fn new(scale: &Scale) -> Self {
        // 1000 runs per mirror at the large size: the retention bound, met exactly
        let large = scale.history_runs;
        Self {
            small: 10_000,
            large,
            mirrors: large / 1000,
            samples: if large >= 1_000_000 { 51 } else { 21 },
        }
    }
}

/// One figure at one size: the median of `samples` timings, in ms.
struct Timed {
    name: &'static str,
    ms: f64,
}

pub async fn run(scale: &Scale, rows: &mut Vec<Row>) -> anyhow::Result<()> {
    let sizes = Sizes::new(scale);
    let mut env = TestEnv::new().await;
    // every due mirror of a tick is pushed at once, however many deliveries wait
    env.cfg.queue.max_backlog = u64::MAX / 2;
    let (owner, token) = env.user("bench", true).await;
    mirrors(&env, &owner, sizes.mirrors).await?;
    generate(&env, 0, sizes.small, &sizes).await?;
    let small = measure(&env, &token, &sizes).await?;
    generate(&env, sizes.small, sizes.large, &sizes).await?;
    let large = measure(&env, &token, &sizes).await?;
    for (s, l) in small.iter().zip(&large) {
        rows.push(
            Row::new(
                "8 history",
                &format!("{} at {} runs", s.name, count(sizes.large)),
                l.ms,
                "ms",
            )
            .against(&format!("{} runs", count(sizes.small)), s.ms),
        );
    }
    let (runs, jobs): (i64, i64) = sqlx::query_as(
        "SELECT pg_total_relation_size('sync_runs'), pg_total_relation_size('sync_jobs')",
    )
    .fetch_one(&env.pool)
    .await?;
    rows.push(Row::new(
        "8 history",
        &format!(
            "Postgres bytes per run (with its job), {} runs",
            count(sizes.large)
        ),
        (runs + jobs) as f64 / sizes.large as f64,
        "B",
    ));
    history_plans::explain(&env.pool, sizes.mirrors).await?;
    Ok(())
}

fn count(n: i64) -> String {
    match n {
        n if n >= 1_000_000 && n % 1_000_000 == 0 => format!("{}M", n / 1_000_000),
        n if n >= 1_000 && n % 1_000 == 0 => format!("{}k", n / 1_000),
        n => n.to_string(),
    }
}

/// Mirror `i` has id `md5('repo' || i)` so that runs and jobs can name it without a
/// join; all synced, none due.
async fn mirrors(env: &TestEnv, owner: &User, n: i64) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO repositories (id, owner_id, name, is_mirror, mirror_url, sync_status,
                                   last_synced_at, next_sync_at, last_duration_ms)
         SELECT md5('repo' || i)::uuid, $1, 'm' || i, true,
                'https://example.com/m' || i || '.git', 'success', now(),
                now() + interval '1 hour', 1200
         FROM generate_series(0, $2 - 1) i",
    )
    .bind(owner.id)
    .bind(n)
    .execute(&env.pool)
    .await?;
    Ok(())
}

/// Runs `from..to` (run `k` is mirror `k % mirrors`'s, `k × step` before now, so the
/// small set is the newest), each with its finished job, then VACUUM ANALYZE as
/// autovacuum would have left a table that old.
async fn generate(env: &TestEnv, from: i64, to: i64, sizes: &Sizes) -> anyhow::Result<()> {
    let step = SPAN_SECS / sizes.large as f64;
    let began = Instant::now();
    let mut lo = from;
    while lo < to {
        let hi = (lo + CHUNK).min(to);
        let mut tx = env.pool.begin().await?;
        sqlx::query(
            "INSERT INTO sync_jobs (id, repo_id, reason, state, attempts, max_attempts, run_at,
                                    worker, enqueued_at, started_at, finished_at, last_error)
             SELECT md5('job' || k)::uuid, md5('repo' || (k % $3))::uuid, 'scheduled',
                    CASE WHEN k % 50 = 7 THEN 'failed' ELSE 'done' END, 1, 1, t,
                    'bench-worker', t, t, t + interval '2 seconds',
                    CASE WHEN k % 50 = 7 THEN 'upstream: connection refused' END
             FROM (SELECT k, now() - make_interval(secs => k * $4) AS t
                   FROM generate_series($1::bigint, $2 - 1) k) g",
        )
        .bind(lo)
        .bind(hi)
        .bind(sizes.mirrors)
        .bind(step)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO sync_runs (repo_id, job_id, attempt, worker, started_at, finished_at,
                                    outcome, error, error_kind, refs_updated, refs_pruned,
                                    bytes_received, unchanged, objects_received, refs_created,
                                    list_ms, fetch_ms)
             SELECT md5('repo' || (k % $3))::uuid, md5('job' || k)::uuid, 1, 'bench-worker',
                    t, t + interval '2 seconds',
                    CASE WHEN k % 50 = 7 THEN 'failed' ELSE 'success' END,
                    CASE WHEN k % 50 = 7 THEN 'upstream: connection refused' END,
                    CASE WHEN k % 50 = 7 THEN 'network' END,
                    (k % 3)::int, 0, CASE WHEN k % 4 = 0 THEN 40000 + k % 5000 ELSE 0 END,
                    k % 4 <> 0, CASE WHEN k % 4 = 0 THEN 12 ELSE 0 END, 0, 40, 100
             FROM (SELECT k, now() - make_interval(secs => k * $4) AS t
                   FROM generate_series($1::bigint, $2 - 1) k) g",
        )
        .bind(lo)
        .bind(hi)
        .bind(sizes.mirrors)
        .bind(step)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        lo = hi;
    }
    let loaded = began.elapsed();
    sqlx::query("VACUUM (ANALYZE) sync_runs, sync_jobs, repositories")
        .execute(&env.pool)
        .await?;
    let size: String =
        sqlx::query_scalar("SELECT pg_size_pretty(pg_database_size(current_database()))")
            .fetch_one(&env.pool)
            .await?;
    println!(
        "  history: {} runs and jobs generated in {:.0} s, vacuumed in {:.0} s; database {size}",
        count(to),
        loaded.as_secs_f64(),
        (began.elapsed() - loaded).as_secs_f64()
    );
    Ok(())
}

async fn measure(env: &TestEnv, token: &str, sizes: &Sizes) -> anyhow::Result<Vec<Timed>> {
    let mut timed = endpoints(env, token, sizes).await?;
    timed.push(Timed {
        name: "scheduler due scan (100 due mirrors claimed and pushed)",
        ms: due_scan(env, sizes.samples.min(21)).await?,
    });
    let mut progress = Progress::default();
    timed.push(Timed {
        name: "retention pass, a new leader's first (every mirror, nothing to delete)",
        ms: retention(env, &mut progress, 0).await?,
    });
    timed.push(Timed {
        name: "retention pass, steady state (100 mirrors synced since the last)",
        ms: retention(env, &mut progress, 5).await?,
    });
    Ok(timed)
}

/// Median latency of sequential GETs to each endpoint of a `stasis-api` process.
async fn endpoints(env: &TestEnv, token: &str, sizes: &Sizes) -> anyhow::Result<Vec<Timed>> {
    let port = free_port();
    let mut api = std::process::Command::new(sibling_binary("stasis-api")?)
        .envs(env.env_vars())
        .env("STASIS_API_LISTEN", format!("127.0.0.1:{port}"))
        .env("STASIS_LOG_LEVEL", "warn")
        .env("STASIS_RATELIMIT_ENABLED", "false")
        .stdout(std::process::Stdio::null())
        .spawn()?;
    wait_for_port(port, "stasis-api");
    let base = format!("http://127.0.0.1:{port}/api/v1");
    let http = reqwest::Client::new();
    // a mirror in the middle of the id order, with the full history of its share
    let repo = format!("bench/m{}", sizes.mirrors / 2);
    let targets: [(&'static str, String); 8] = [
        ("GET mirror/status", format!("/repos/{repo}/mirror/status")),
        (
            "GET mirror/history (20, owner)",
            format!("/repos/{repo}/mirror/history"),
        ),
        (
            "GET mirror/history?limit=100",
            format!("/repos/{repo}/mirror/history?limit=100"),
        ),
        (
            "GET admin/jobs first page (100)",
            "/admin/jobs?per_page=100".into(),
        ),
        (
            "GET admin/jobs page 50 (offset 4,900)",
            "/admin/jobs?per_page=100&page=50".into(),
        ),
        (
            "GET admin/jobs?state=failed",
            "/admin/jobs?state=failed&per_page=100".into(),
        ),
        (
            "GET admin/jobs?repo= (one mirror)",
            format!("/admin/jobs?repo={repo}&per_page=100"),
        ),
        ("GET admin/queue (operator overview)", "/admin/queue".into()),
    ];
    let mut timed = Vec::new();
    let result = async {
        for (name, path) in targets {
            let url = format!("{base}{path}");
            let mut samples = Vec::with_capacity(sizes.samples);
            let began = Instant::now();
            // a slow endpoint gets fewer samples: at least five, then 20 s at most
            while samples.len() < sizes.samples
                && (samples.len() < 5 || began.elapsed() < Duration::from_secs(20))
            {
                let t = Instant::now();
                let resp = http.get(&url).bearer_auth(token).send().await?;
                let status = resp.status();
                let body = resp.bytes().await?;
                ensure!(status == 200, "{path} answered {status}: {body:?}");
                samples.push(t.elapsed().as_secs_f64() * 1e3);
            }
            timed.push(Timed {
                name,
                ms: quantile(&mut samples, 0.5),
            });
        }
        Ok(())
    }
    .await;
    api.kill().ok();
    api.wait().ok();
    result.map(|()| timed)
}

/// Median of `n` real scheduler ticks (`enqueue_due`) over `DUE` due mirrors, each
/// undone afterwards (jobs removed, mirrors not due) so the next finds the same.
async fn due_scan(env: &TestEnv, n: usize) -> anyhow::Result<f64> {
    let job_service = env.jobs();
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        sqlx::query(
            "UPDATE repositories SET next_sync_at = now() - interval '1 minute'
             WHERE id IN (SELECT id FROM repositories ORDER BY name LIMIT $1)",
        )
        .bind(DUE)
        .execute(&env.pool)
        .await?;
        let t = Instant::now();
        let tick =
            stasis_scheduler::due::enqueue_due(&env.cfg, &env.pool, &env.redis, &job_service)
                .await?;
        samples.push(t.elapsed().as_secs_f64() * 1e3);
        ensure!(
            tick.enqueued == DUE as u64,
            "enqueued {} of {DUE}",
            tick.enqueued
        );
        sqlx::query(
            "WITH gone AS (DELETE FROM sync_jobs WHERE state = 'pending' RETURNING repo_id)
             UPDATE repositories SET sync_status = 'success',
                                     next_sync_at = now() + interval '1 hour'
             WHERE id IN (SELECT repo_id FROM gone)",
        )
        .execute(&env.pool)
        .await?;
    }
    Ok(quantile(&mut samples, 0.5))
}

/// One pass of a leader that has not passed before (`n` = 0), which must delete
/// nothing since the history is within its bounds; or the median of `n` passes after
/// it, each after a new run for each of 100 mirrors, which must delete no more than
/// the run each of those may now be over `max_runs_per_mirror` by.
async fn retention(env: &TestEnv, progress: &mut Progress, n: usize) -> anyhow::Result<f64> {
    let mut samples = Vec::with_capacity(n.max(1));
    for _ in 0..n.max(1) {
        let synced = if n == 0 {
            0
        } else {
            one_more_run_each(env, 100).await?
        };
        let t = Instant::now();
        let deleted = enforce(&env.cfg, &env.pool, progress)
            .await
            .context("retention pass")?;
        samples.push(t.elapsed().as_secs_f64() * 1e3);
        // at the small size mirrors are under the cap: a new run pushes none out
        ensure!(
            deleted.runs <= synced && deleted.notifications == 0,
            "the pass deleted {deleted:?} for {synced} new runs"
        );
    }
    // the generated history as it was, but for the runs these passes pushed out
    sqlx::query("DELETE FROM sync_runs WHERE worker = 'bench-worker' AND attempt = 2")
        .execute(&env.pool)
        .await?;
    Ok(quantile(&mut samples, 0.5))
}

/// A new run (of the job of its newest one) for each of the first `mirrors` mirrors.
async fn one_more_run_each(env: &TestEnv, mirrors: i64) -> anyhow::Result<u64> {
    let done = sqlx::query(
        "INSERT INTO sync_runs (repo_id, job_id, attempt, worker, started_at, finished_at,
                                outcome, unchanged)
         SELECT n.repo_id, n.job_id, 2, 'bench-worker', now(), now(), 'success', true
         FROM (SELECT DISTINCT ON (repo_id) repo_id, job_id FROM sync_runs
               WHERE repo_id IN (SELECT md5('repo' || k)::uuid
                                 FROM generate_series(0, $1 - 1) k)
               ORDER BY repo_id, started_at DESC, id DESC) n",
    )
    .bind(mirrors)
    .execute(&env.pool)
    .await?;
    Ok(done.rows_affected())
}
