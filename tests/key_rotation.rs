//! Rotating the key that seals credentials while the service runs: workers and the API
//! hold the new key with the old one as a previous key, syncs keep running and an
//! owner changes credentials meanwhile, `stasisctl secrets rotate` re-seals everything,
//! and then the old key is retired: every mirror still syncs with the new key alone.

use std::process::Command;
use std::time::Duration;

use serde_json::json;
use stasis_shared::domain::{JobState, SyncReason};
use stasis_shared::secrets::{sealed_with, Cipher};
use stasis_testkit::git::{assert_mirrors, free_port, wait_for_port, Upstream};
use stasis_testkit::http::GitHttpServer;
use stasis_testkit::process::{binary, Proc};
use stasis_testkit::TestEnv;
use uuid::Uuid;

const MIRRORS: usize = 8;
const WAIT: Duration = Duration::from_secs(90);
const USER: &str = "deploy";
const PASSWORD: &str = "pw-r0tated-never-shown";
/// The key sealing everything at first, and the one that replaces it.
const OLD: &str = "1111111111111111111111111111111111111111111111111111111111111111";
const NEW: &str = "2222222222222222222222222222222222222222222222222222222222222222";

/// `stasisctl` with the environment's configuration and `keys`; its exit status and output.
fn ctl(env: &TestEnv, keys: &[(&str, String)], args: &[&str]) -> (bool, String) {
    let out = Command::new(binary("stasisctl"))
        .envs(env.env_vars())
        .envs(keys.iter().map(|(k, v)| (*k, v.as_str())))
        .args(args)
        .output()
        .expect("run stasisctl");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Asks for a sync of every mirror and waits for each to end; returns their states.
async fn sync_all(env: &TestEnv, repos: &[Uuid]) -> Vec<JobState> {
    let mut jobs = Vec::new();
    for &repo in repos {
        jobs.push(env.enqueue(repo, SyncReason::Manual).await);
    }
    let mut states = Vec::new();
    for job in jobs {
        states.push(env.finished(job, WAIT).await.state);
    }
    states
}

async fn seals(env: &TestEnv) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT mirror_credentials FROM repositories WHERE mirror_credentials IS NOT NULL
         UNION ALL
         SELECT webhook_secret FROM repositories WHERE webhook_secret IS NOT NULL
         UNION ALL
         SELECT ssh_private_key FROM repositories WHERE ssh_private_key IS NOT NULL",
    )
    .fetch_all(&env.pool)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_key_rotated_under_load_leaves_every_mirror_syncing_then_the_old_key_retires() {
    let mut env = TestEnv::new().await;
    env.cfg.secrets.key = Some(OLD.into());
    let served = env.dir.path().join("served");
    let mut ups = Vec::new();
    for i in 0..MIRRORS {
        ups.push(Upstream::create(served.join(format!("m{i}.git"))));
    }
    let http = GitHttpServer::start(&served);
    http.require_basic_auth(USER, PASSWORD);
    let (owner, token) = env.user("olga", false).await;
    let mut repos = Vec::new();
    for i in 0..MIRRORS {
        let url = http.url(&format!("m{i}.git"));
        let url = url.replacen("http://", &format!("http://{USER}:{PASSWORD}@"), 1);
        repos.push(env.mirror(&owner, &format!("m{i}"), &url).await);
    }
    // seals from before seals named their key open too: one such, made with the old key
    let old_id = Cipher::new(OLD).unwrap().current_id().to_owned();
    sqlx::query(
        "UPDATE repositories SET mirror_credentials = split_part(mirror_credentials, ':', 2)
         WHERE id = $1",
    )
    .bind(repos[0])
    .execute(&env.pool)
    .await
    .unwrap();

    // a deploy key, sealed with the old key too
    let only_old = [("STASIS_SECRETS_KEY", OLD.to_owned())];
    let (ok, said) = ctl(
        &env,
        &only_old,
        &["mirror", "deploy-key", "rotate", "olga/m2"],
    );
    assert!(ok, "{said}");

    // the new key everywhere, the old one kept to open what it sealed
    let both = [
        ("STASIS_SECRETS_KEY", NEW.to_owned()),
        ("STASIS_SECRETS_PREVIOUS_KEYS", OLD.to_owned()),
    ];
    let api_port = free_port();
    let mut api_env = both.to_vec();
    api_env.push(("STASIS_API_LISTEN", format!("127.0.0.1:{api_port}")));
    let mut api = Proc::spawn(&env, "stasis-api", "api.log", &api_env);
    let mut worker = Proc::spawn(&env, "stasis-worker", "worker.log", &both);
    wait_for_port(api_port, "stasis-api");
    let states = sync_all(&env, &repos).await;
    assert!(states.iter().all(|s| *s == JobState::Done), "{states:?}");

    // under load: syncs running, an owner's credentials and webhook secret changing
    let load = {
        let (env_repos, env_cfg) = (repos.clone(), env.cfg.clone());
        let pool = env.pool.clone();
        let redis = env.redis.clone();
        tokio::spawn(async move {
            let jobs = stasis_shared::jobs::Jobs::new(pool, redis, &env_cfg);
            for _ in 0..5 {
                for &repo in &env_repos {
                    jobs.request(repo, SyncReason::Manual).await.unwrap();
                }
                tokio::time::sleep(Duration::from_millis(150)).await;
            }
        })
    };
    let client = reqwest::Client::new();
    let owners_change = client
        .patch(format!(
            "http://127.0.0.1:{api_port}/api/v1/repos/olga/m1/mirror"
        ))
        .bearer_auth(&token)
        .json(&json!({
            "credentials": { "username": USER, "password": PASSWORD },
            "webhook_secret": "a-webhook-secret",
        }))
        .send();
    let keys: Vec<(&str, String)> = both.to_vec();
    let rotate = tokio::task::spawn_blocking({
        let env_vars = env.env_vars();
        move || {
            let out = Command::new(binary("stasisctl"))
                .envs(env_vars)
                .envs(keys.iter().map(|(k, v)| (*k, v.as_str())))
                .args(["secrets", "rotate", "--batch", "3"])
                .output()
                .expect("run stasisctl");
            (
                out.status.success(),
                String::from_utf8_lossy(&out.stdout).into_owned(),
            )
        }
    });
    let changed = owners_change.await.unwrap();
    assert!(changed.status().is_success(), "{:?}", changed.text().await);
    let (ok, said) = rotate.await.unwrap();
    assert!(ok, "{said}");
    load.await.unwrap();

    // every seal is the new key's; status says the old key seals nothing
    let new_id = Cipher::new(NEW).unwrap().current_id().to_owned();
    let all = seals(&env).await;
    assert_eq!(
        all.len(),
        MIRRORS + 2,
        "credentials, the webhook secret and the deploy key"
    );
    assert!(
        all.iter().all(|s| sealed_with(s) == Some(new_id.as_str())),
        "{all:?}"
    );
    let (ok, status) = ctl(&env, &both, &["secrets", "status"]);
    assert!(ok, "{status}");
    assert!(
        status.contains(&format!("{old_id} seals nothing")),
        "{status}"
    );
    for text in [&said, &status] {
        assert!(!text.contains(PASSWORD) && !text.contains(OLD) && !text.contains(NEW));
    }

    // the old key retired: every mirror syncs with the new key alone
    worker.child.kill().unwrap();
    worker.child.wait().unwrap();
    api.assert_running("the API");
    let only_new = [("STASIS_SECRETS_KEY", NEW.to_owned())];
    let _worker = Proc::spawn(&env, "stasis-worker", "worker-new.log", &only_new);
    // the killed worker's jobs are handed on once its liveness lapses
    let states = sync_all(&env, &repos).await;
    assert!(states.iter().all(|s| *s == JobState::Done), "{states:?}");
    for (i, up) in ups.iter().enumerate() {
        assert_mirrors(&env.mirror_path("olga", &format!("m{i}")), up);
    }
    // a process given only the old key cannot open the new seals, and says so
    let (ok, text) = ctl(
        &env,
        &[("STASIS_SECRETS_KEY", OLD.to_owned())],
        &["secrets", "status"],
    );
    assert!(!ok && text.contains("not configured"), "{text}");
    for log in [
        api.log_text(),
        std::fs::read_to_string(env.dir.path().join("worker.log")).unwrap(),
    ] {
        assert!(!log.contains(PASSWORD), "a log shows the password");
    }
}
