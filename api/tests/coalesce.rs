//! Manual and webhook syncs coalesce per mirror: however many requests arrive, one sync
//! starts per `mirror.min_manual_interval`, the rest share its job; an admin may force one.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use reqwest::StatusCode;
use serde_json::{json, Value};
use sha2::Sha256;
use stasis_testkit::git::Upstream;
use stasis_testkit::{eventually, TestEnv};
use uuid::Uuid;

mod common;

use common::Api;

const WINDOW: Duration = Duration::from_secs(60);
const WAIT: Duration = Duration::from_secs(60);

async fn start(env: &TestEnv) -> Api {
    Api::start_with(env, |cfg| {
        cfg.mirror.min_manual_interval = WINDOW;
        // every request of the loop reaches the coalescing, not the rate limit
        cfg.ratelimit.write_burst = 100_000;
    })
    .await
}

async fn count(env: &TestEnv, sql: &str, repo: Uuid) -> i64 {
    sqlx::query_scalar(sql)
        .bind(repo)
        .fetch_one(&env.pool)
        .await
        .unwrap()
}

/// The mirror's checks, whether each has a run or was counted in the one before.
async fn checks(env: &TestEnv, repo: Uuid) -> i64 {
    count(
        env,
        "SELECT coalesce(sum(checks), 0)::bigint FROM sync_runs WHERE repo_id = $1",
        repo,
    )
    .await
}

fn at(body: &Value) -> DateTime<Utc> {
    body["next_run_at"].as_str().unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sync_now_loop_starts_one_sync_per_window_and_an_admin_may_force_one() {
    let env = TestEnv::new().await;
    let api = start(&env).await;
    let _worker = env.spawn_worker();
    let (owner, alice) = env.user("alice", false).await;
    let (_, admin) = env.user("root", true).await;
    let up = Upstream::create(env.dir.path().join("up"));
    let repo = env.mirror(&owner, "m", &up.url()).await;

    // a client's "sync now" loop, bounded: 3 s or 400 requests of one token
    let path = "/api/v1/repos/alice/m/sync";
    let (started, mut answers, mut jobs) = (Instant::now(), Vec::new(), Vec::new());
    while started.elapsed() < Duration::from_secs(3) && answers.len() < 400 {
        let (status, body) = api.call("POST", path, Some(&alice), None).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        for field in ["message", "status", "job_id", "next_run_at"] {
            assert!(body.get(field).is_some(), "{field} missing: {body}");
        }
        jobs.push((body["job_id"].as_str().unwrap().to_owned(), at(&body)));
        answers.push(status);
    }
    assert!(jobs.len() > 1, "{answers:?}");
    eventually("the first sync to finish", WAIT, || async {
        let done = count(
            &env,
            "SELECT count(*) FROM sync_jobs WHERE repo_id = $1 AND state = 'done'",
            repo,
        )
        .await;
        (done == 1).then_some(())
    })
    .await;
    // one fetch of the upstream in the window, and every other request shares one job
    // that waits for the window's end
    assert_eq!(checks(&env, repo).await, 1);
    let first_start: DateTime<Utc> =
        sqlx::query_scalar("SELECT min(started_at) FROM sync_runs WHERE repo_id = $1")
            .bind(repo)
            .fetch_one(&env.pool)
            .await
            .unwrap();
    let (status, body) = api.call("POST", path, Some(&alice), None).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let deferred = body["job_id"].as_str().unwrap().to_owned();
    let due = at(&body);
    assert!(due >= first_start + chrono::Duration::from_std(WINDOW).unwrap());
    let distinct: std::collections::BTreeSet<_> = jobs.iter().map(|(id, _)| id).collect();
    assert!(distinct.len() <= 2, "jobs: {distinct:?}");
    let pending =
        "SELECT count(*) FROM sync_jobs WHERE repo_id = $1 AND state IN ('pending', 'running')";
    assert_eq!(count(&env, pending, repo).await, 1);
    assert_eq!(checks(&env, repo).await, 1, "nothing ran early");

    // the owner cannot force; an admin can, and the deferred job runs now
    let forced = format!("{path}?force=true");
    let (status, body) = api.call("POST", &forced, Some(&alice), None).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("forbidden"))
    );
    let (status, body) = api.call("POST", &forced, Some(&admin), None).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["job_id"], deferred.as_str());
    assert!(at(&body) <= Utc::now(), "{body}");
    eventually("the forced sync", WAIT, || async {
        (checks(&env, repo).await == 2).then_some(())
    })
    .await;
    // with nothing pending, a forced request starts yet another sync at once
    eventually("the forced job to finish", WAIT, || async {
        (count(&env, pending, repo).await == 0).then_some(())
    })
    .await;
    let (status, body) = api.call("POST", &forced, Some(&admin), None).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["message"], "Mirror sync started");
    assert!(at(&body) <= Utc::now(), "{body}");
}

fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_push_events_give_one_sync() {
    const SECRET: &str = "hook-secret-8c1f";
    let env = TestEnv::new().await;
    let api = std::sync::Arc::new(start(&env).await);
    let (owner, alice) = env.user("alice", false).await;
    let repo = env.mirror(&owner, "m", "https://example.com/m.git").await;
    let (status, body) = api
        .call(
            "PATCH",
            "/api/v1/repos/alice/m/mirror",
            Some(&alice),
            Some(json!({ "webhook_secret": SECRET })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // a sync of this mirror started a moment ago
    let ran_at = Utc::now();
    let finished = Uuid::new_v4();
    sqlx::query(
        "INSERT INTO sync_jobs (id, repo_id, reason, state, max_attempts, started_at, finished_at)
         VALUES ($1, $2, 'scheduled', 'done', 3, now(), now())",
    )
    .bind(finished)
    .bind(repo)
    .execute(&env.pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO sync_runs (repo_id, job_id, attempt, worker, started_at, finished_at, outcome)
         VALUES ($1, $2, 1, 'test', now(), now(), 'success')",
    )
    .bind(repo)
    .bind(finished)
    .execute(&env.pool)
    .await
    .unwrap();

    let mut events = tokio::task::JoinSet::new();
    for branch in 0..50 {
        let api = api.clone();
        events.spawn(async move {
            let body = format!(r#"{{"ref":"refs/heads/b{branch}","commits":[]}}"#);
            let resp = reqwest::Client::new()
                .post(format!("{}/api/v1/hooks/alice/m", api.base))
                .header("content-type", "application/json")
                .header("x-github-event", "push")
                .header(
                    "x-hub-signature-256",
                    format!("sha256={}", sign(SECRET, body.as_bytes())),
                )
                .body(body)
                .send()
                .await
                .unwrap();
            let status = resp.status();
            (status, resp.json::<Value>().await.unwrap_or(Value::Null))
        });
    }
    let mut jobs = std::collections::BTreeSet::new();
    while let Some(answer) = events.join_next().await {
        let (status, body) = answer.unwrap();
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        // due a window after that sync, however long the answers took on a busy machine
        let window = chrono::Duration::from_std(WINDOW).unwrap();
        assert!(
            at(&body) >= ran_at + window - chrono::Duration::seconds(1),
            "{body}"
        );
        jobs.insert(body["job_id"].as_str().unwrap().to_owned());
    }
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    let webhook_jobs = "SELECT count(*) FROM sync_jobs WHERE repo_id = $1 AND reason = 'webhook'";
    assert_eq!(count(&env, webhook_jobs, repo).await, 1);
    // deferred: Postgres holds it until its window ends, then it is delivered once
    let waiting = stasis_shared::db::waiting::count(&env.pool).await.unwrap();
    assert_eq!(waiting.later, 1, "one job, waiting for its window");
    assert_eq!(
        env.waiting_deliveries().await,
        0,
        "nothing in Redis before it is due"
    );
}
