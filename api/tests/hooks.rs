//! Push webhooks through HTTP: the secret is set, sealed and never shown; a bad
//! signature is a 401 that enqueues nothing; only events that move refs enqueue a sync;
//! and, with a real worker and `git daemon`, each provider's signed push syncs the
//! mirror. One behaviour per test.

use std::time::Duration;

use hmac::{Hmac, Mac};
use reqwest::StatusCode;
use serde_json::{json, Value};
use sha2::Sha256;
use stasis_testkit::git::{assert_mirrors, GitDaemon, Upstream};
use stasis_testkit::worker::InProcessWorker;
use stasis_testkit::{eventually, TestEnv};

mod common;

use common::{Api, Users};
use stasis_shared::domain::{JobState, SyncReason};

const SECRET: &str = "hook-secret-8c1f";
const WAIT: Duration = Duration::from_secs(60);

fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

async fn hook(
    api: &Api,
    repo: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> (StatusCode, Value) {
    let mut req = reqwest::Client::new()
        .post(format!("{}/api/v1/hooks/{repo}", api.base))
        .header("content-type", "application/json")
        .body(body.to_vec());
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn webhook_jobs(env: &TestEnv) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM sync_jobs WHERE reason = 'webhook'")
        .fetch_one(&env.pool)
        .await
        .unwrap()
}

/// alice's mirror `up` of a local upstream, with the hook's secret set unless `secret`
/// is false. A row only, no job and no worker: what the hook checks (is there a hook,
/// is the event signed, does it move refs) and what it enqueues need nothing more, and
/// with no job pending a webhook's sync is a job of its own.
struct Hooked {
    env: TestEnv,
    api: Api,
    alice: String,
    mallory: String,
    up: Upstream,
}

const PUSH: &[u8] = br#"{"ref":"refs/heads/main","commits":[]}"#;

fn github(secret: &str, event: &str) -> Vec<(&'static str, String)> {
    vec![
        (
            "x-hub-signature-256",
            format!("sha256={}", sign(secret, PUSH)),
        ),
        ("x-github-event", event.to_owned()),
    ]
}

async fn hooked(secret: bool) -> Hooked {
    let env = TestEnv::new().await;
    let api = Api::start(&env).await;
    let Users {
        owner,
        alice,
        mallory,
        ..
    } = Users::create(&env).await;
    let up = Upstream::create(env.dir.path().join("up"));
    env.mirror(&owner, "up", &up.url()).await;
    let (status, repo) = api
        .call("GET", "/api/v1/repos/alice/up", Some(&alice), None)
        .await;
    assert_eq!(
        (status, &repo["webhook_configured"]),
        (StatusCode::OK, &json!(false))
    );
    let h = Hooked {
        env,
        api,
        alice,
        mallory,
        up,
    };
    if secret {
        let (status, repo) = h.patch(&h.alice, json!(SECRET)).await;
        assert_eq!(status, StatusCode::OK, "{repo}");
    }
    h
}

/// alice's mirror `up`, served by `git daemon`, imported through the API and synced by
/// a worker that keeps running, with the hook's secret set: for webhooks whose sync must
/// really run.
async fn imported() -> (Hooked, InProcessWorker, GitDaemon) {
    let env = TestEnv::new().await;
    let api = Api::start(&env).await;
    let worker = env.spawn_worker();
    let Users { alice, mallory, .. } = Users::create(&env).await;
    let served = env.dir.path().join("served");
    let up = Upstream::create(served.join("up"));
    let daemon = GitDaemon::start(&served);
    let (status, body) = api
        .call(
            "POST",
            "/api/v1/repos/import",
            Some(&alice),
            Some(json!({ "name": "up", "clone_url": daemon.url("up"), "mirror": true })),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["webhook_configured"], false);
    // synced, so a webhook finds no pending job to join and would create its own
    eventually("the import to finish", WAIT, || async {
        let (_, s) = api
            .call("GET", "/api/v1/repos/alice/up/mirror/status", None, None)
            .await;
        (s["sync_status"] == "success").then_some(())
    })
    .await;
    let h = Hooked {
        env,
        api,
        alice,
        mallory,
        up,
    };
    let (status, repo) = h.patch(&h.alice, json!(SECRET)).await;
    assert_eq!(status, StatusCode::OK, "{repo}");
    (h, worker, daemon)
}

impl Hooked {
    async fn patch(&self, token: &str, secret: Value) -> (StatusCode, Value) {
        self.api
            .call(
                "PATCH",
                "/api/v1/repos/alice/up/mirror",
                Some(token),
                Some(json!({ "webhook_secret": secret })),
            )
            .await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_a_secret_the_hook_is_unknown_like_a_missing_repository() {
    let h = hooked(false).await;
    let (status, err) = hook(&h.api, "alice/up", &github(SECRET, "push"), PUSH).await;
    assert_eq!(
        (status, err["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
    let (status, _) = hook(&h.api, "alice/nothing", &github(SECRET, "push"), PUSH).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(webhook_jobs(&h.env).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn only_the_owner_sets_a_long_enough_secret_and_it_is_never_shown_nor_stored_clear() {
    let h = hooked(false).await;
    assert_eq!(
        h.patch(&h.mallory, json!(SECRET)).await.0,
        StatusCode::FORBIDDEN
    );
    let (status, err) = h.patch(&h.alice, json!("short")).await;
    assert_eq!(
        (status, err["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_secret"))
    );
    let (status, repo) = h.patch(&h.alice, json!(SECRET)).await;
    assert_eq!(status, StatusCode::OK, "{repo}");
    assert_eq!(repo["webhook_configured"], true);
    let (_, shown) = h
        .api
        .call("GET", "/api/v1/repos/alice/up", Some(&h.alice), None)
        .await;
    for text in [repo.to_string(), shown.to_string()] {
        assert!(!text.contains(SECRET), "secret echoed: {text}");
    }
    let stored: String =
        sqlx::query_scalar("SELECT webhook_secret FROM repositories WHERE name = 'up'")
            .fetch_one(&h.env.pool)
            .await
            .unwrap();
    assert!(!stored.contains(SECRET), "stored in the clear");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_wrong_secret_a_tampered_body_or_no_signature_is_401_and_enqueues_nothing() {
    let mut h = hooked(true).await;
    h.up.commit("pushed upstream");
    for (headers, payload) in [
        (github("not-the-secret", "push"), PUSH),
        (
            github(SECRET, "push"),
            br#"{"ref":"refs/heads/evil"}"#.as_slice(),
        ),
        (vec![("x-gitlab-token", "not-the-secret".to_owned())], PUSH),
        (vec![("x-github-event", "push".to_owned())], PUSH),
    ] {
        let (status, err) = hook(&h.api, "alice/up", &headers, payload).await;
        assert_eq!(
            (status, err["code"].as_str()),
            (StatusCode::UNAUTHORIZED, Some("bad_signature"))
        );
    }
    assert_eq!(webhook_jobs(&h.env).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn github_s_ping_is_answered_without_a_sync() {
    let h = hooked(true).await;
    let (status, pong) = hook(&h.api, "alice/up", &github(SECRET, "ping"), PUSH).await;
    assert_eq!(
        (status, pong["message"].as_str()),
        (StatusCode::OK, Some("pong"))
    );
    assert_eq!(webhook_jobs(&h.env).await, 0);
}

/// Verified events that cannot change refs (an issue opened, a comment, a star) are
/// answered 200 without a sync, from every provider; ref-moving ones other than a push
/// (a branch or tag created or deleted) do sync.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn only_events_that_move_refs_sync_the_mirror() {
    let h = hooked(true).await;
    let gitea = |event: &str| {
        vec![
            ("x-gitea-signature", sign(SECRET, PUSH)),
            ("x-gitea-event", event.to_owned()),
        ]
    };
    let gitlab = |event: &str| {
        vec![
            ("x-gitlab-token", SECRET.to_owned()),
            ("x-gitlab-event", event.to_owned()),
        ]
    };
    for headers in [
        github(SECRET, "issues"),
        github(SECRET, "star"),
        gitea("issue_comment"),
        gitlab("Issue Hook"),
        gitlab("Note Hook"),
    ] {
        let (status, body) = hook(&h.api, "alice/up", &headers, PUSH).await;
        assert_eq!(status, StatusCode::OK, "{headers:?}: {body}");
        assert!(
            body["message"]
                .as_str()
                .is_some_and(|m| m.contains("no sync")),
            "{body}"
        );
    }
    assert_eq!(
        webhook_jobs(&h.env).await,
        0,
        "no event above enqueued a sync"
    );
    for headers in [github(SECRET, "create"), gitlab("Tag Push Hook")] {
        let (status, body) = hook(&h.api, "alice/up", &headers, PUSH).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{headers:?}: {body}");
    }
    // no worker runs it: the second event finds the first one's sync pending and joins it
    assert_eq!(webhook_jobs(&h.env).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_verified_push_from_each_provider_syncs_the_mirror() {
    let (mut h, worker, _daemon) = imported().await;
    h.up.commit("pushed upstream");
    let providers: [Vec<(&str, String)>; 3] = [
        github(SECRET, "push"),
        vec![
            ("x-gitea-signature", sign(SECRET, PUSH)),
            ("x-gitea-event", "push".into()),
        ],
        vec![
            ("x-gitlab-token", SECRET.to_owned()),
            ("x-gitlab-event", "Push Hook".into()),
        ],
    ];
    let mut jobs: Vec<uuid::Uuid> = Vec::new();
    for headers in providers {
        let (status, accepted) = hook(&h.api, "alice/up", &headers, PUSH).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
        let job = accepted["job_id"].as_str().unwrap().parse().unwrap();
        assert_eq!(h.env.finished(job, WAIT).await.state, JobState::Done);
        assert_eq!(h.env.job(job).await.reason, SyncReason::Webhook);
        assert_mirrors(&h.env.mirror_path("alice", "up"), &h.up);
        h.up.commit("more upstream work");
        jobs.push(job);
    }
    // each push made a run of its own; of their jobs, done, only the latest run's stays
    let runs: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM sync_runs WHERE job_id = ANY($1) AND refs_updated > 0",
    )
    .bind(&jobs)
    .fetch_one(&h.env.pool)
    .await
    .unwrap();
    assert_eq!(runs, 3);
    assert_eq!(webhook_jobs(&h.env).await, 1);
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn removing_the_secret_turns_the_hook_off() {
    let h = hooked(true).await;
    let (status, repo) = h.patch(&h.alice, Value::Null).await;
    assert_eq!(
        (status, &repo["webhook_configured"]),
        (StatusCode::OK, &json!(false))
    );
    let (status, _) = hook(&h.api, "alice/up", &github(SECRET, "push"), PUSH).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}
