//! Postgres restarted under load (`pg_ctl stop -m fast`, sessions terminated, then
//! started again): while it is down every answer of the API is a prompt 503 naming
//! it (never a 500), `/readyz` says so within a second, no process exits, and once it
//! is back the API answers without a 503 and every mirror reaches its upstream's head.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use stasis_shared::domain::SyncReason;
use stasis_testkit::git::{free_port, refs, wait_for_port, Upstream};
use stasis_testkit::process::Proc;
use stasis_testkit::services::PrivatePostgres;
use stasis_testkit::{eventually, TestEnv};

const MIRRORS: usize = 3;

#[derive(Debug, Clone)]
struct Answer {
    what: &'static str,
    sent: Instant,
    took: Duration,
    /// 0: no HTTP answer at all.
    status: u16,
    body: String,
}

/// Requests of every kind, ten a second, until `stop`.
async fn load(api: String, token: String, log: Arc<Mutex<Vec<Answer>>>, stop: Arc<Mutex<bool>>) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let mut i = 0;
    while !*stop.lock().unwrap() {
        let repo = format!("{api}/api/v1/repos/pat/m{}", i % MIRRORS);
        let (what, request) = match i % 3 {
            0 => (
                "sync",
                http.post(format!("{repo}/sync")).bearer_auth(&token),
            ),
            1 => ("status", http.get(format!("{repo}/mirror/status"))),
            _ => ("readyz", http.get(format!("{api}/readyz"))),
        };
        let sent = Instant::now();
        let (status, body) = match request.send().await {
            Ok(resp) => (
                resp.status().as_u16(),
                resp.text().await.unwrap_or_default(),
            ),
            Err(e) => (0, e.to_string()),
        };
        log.lock().unwrap().push(Answer {
            what,
            sent,
            took: sent.elapsed(),
            status,
            body,
        });
        i += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_restart_costs_prompt_503s_and_nothing_else() {
    let pg = Arc::new(PrivatePostgres::start());
    let env = TestEnv::with_postgres(&pg.admin_url()).await;
    let (owner, token) = env.user("pat", false).await;
    let mut ups = Vec::new();
    for i in 0..MIRRORS {
        let up = Upstream::create(env.dir.path().join(format!("up{i}")));
        let repo = env.mirror(&owner, &format!("m{i}"), &up.url()).await;
        env.enqueue(repo, SyncReason::Import).await;
        ups.push(up);
    }
    let port = free_port();
    let mut procs = [
        Proc::spawn(
            &env,
            "stasis-api",
            "api.log",
            &[
                ("STASIS_API_LISTEN", format!("127.0.0.1:{port}")),
                // every "Sync now" fetches: no coalescing window to wait out
                ("STASIS_MIRROR_MIN_MANUAL_INTERVAL", "0s".into()),
            ],
        ),
        Proc::spawn(&env, "stasis-worker", "worker.log", &[]),
        Proc::spawn(&env, "stasis-scheduler", "scheduler.log", &[]),
    ];
    wait_for_port(port, "stasis-api");
    let api = format!("http://127.0.0.1:{port}");

    let log = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(Mutex::new(false));
    let driver = tokio::spawn(load(api.clone(), token.clone(), log.clone(), stop.clone()));
    tokio::time::sleep(Duration::from_secs(2)).await;

    let down_pg = pg.clone();
    let went_down = tokio::task::spawn_blocking(move || {
        down_pg.stop();
        Instant::now()
    })
    .await
    .unwrap();
    for (i, up) in ups.iter_mut().enumerate() {
        up.commit(&format!("while Postgres is down {i}"));
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    let up_pg = pg.clone();
    let came_back = tokio::task::spawn_blocking(move || {
        up_pg.start_again();
        Instant::now()
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_secs(6)).await;
    *stop.lock().unwrap() = true;
    driver.await.unwrap();

    let answers = log.lock().unwrap().clone();
    for a in &answers {
        assert!(a.status != 0, "no answer at all: {a:?}");
        assert!(a.status < 500 || a.status == 503, "{a:?}");
        assert!(
            a.took < Duration::from_secs(2),
            "answered after {:?}: {a:?}",
            a.took
        );
        if a.what == "readyz" {
            assert!(a.took < Duration::from_secs(1), "/readyz took {:?}", a.took);
        }
        if a.status == 503 {
            let body: Value = serde_json::from_str(&a.body).expect("503 body is JSON");
            assert_eq!(body["code"], "unavailable", "{a:?}");
            if a.what != "readyz" {
                assert_eq!(body["dependency"], "postgres", "{a:?}");
            } else {
                assert_eq!(body["down"], serde_json::json!(["postgres"]), "{a:?}");
            }
        }
    }
    let during: Vec<_> = answers
        .iter()
        .filter(|a| a.sent > went_down && a.sent + a.took < came_back)
        .collect();
    assert!(
        during.iter().any(|a| a.what == "readyz" && a.status == 503),
        "/readyz never said Postgres was down: {during:?}"
    );
    // back: the first request after the restart (a grace for the server's own start-up
    // and the worst-case ping) is answered by the new server
    let grace = Duration::from_secs(2);
    let after: Vec<_> = answers
        .iter()
        .filter(|a| a.sent > came_back + grace)
        .collect();
    assert!(
        after.len() >= 20,
        "too few requests after the restart: {}",
        after.len()
    );
    for a in &after {
        assert!(
            a.status < 300,
            "{:?} after Postgres came back: {a:?}",
            a.sent - came_back
        );
    }
    let (ok, unavailable) = answers.iter().fold((0, 0), |(ok, un), a| {
        (
            ok + usize::from(a.status < 300),
            un + usize::from(a.status == 503),
        )
    });
    println!(
        "Postgres down {:.1?}: {} answers, {ok} 2xx, {unavailable} 503, slowest {:?}",
        came_back - went_down,
        answers.len(),
        answers.iter().map(|a| a.took).max().unwrap()
    );

    // nothing lost: each mirror reaches the commit made while Postgres was down
    let http = reqwest::Client::new();
    for (i, up) in ups.iter().enumerate() {
        let mirror = env.mirror_path("pat", &format!("m{i}"));
        eventually(
            &format!("m{i} at its upstream's head"),
            Duration::from_secs(60),
            || async {
                let _ = http
                    .post(format!("{api}/api/v1/repos/pat/m{i}/sync"))
                    .bearer_auth(&token)
                    .send()
                    .await;
                (mirror.exists() && refs(&mirror) == up.refs()).then_some(())
            },
        )
        .await;
    }
    for (p, name) in procs.iter_mut().zip(["api", "worker", "scheduler"]) {
        p.assert_running(name);
    }
}
