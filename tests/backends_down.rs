//! A backend that dies (stopped, connections refused) or hangs (SIGSTOP: a paused VM, a
//! stuck failover; the kernel still accepts connections and acknowledges data, but
//! nothing answers) costs prompt answers and nothing else. Under a steady mix of "Sync
//! now", import, mirror status, `/admin/queue` and `/readyz`, every answer comes within
//! 2 s and is 2xx or a JSON 503 naming the backend; once it is back, a commit pushed
//! upstream is mirrored by the same worker, which resumed by itself. Each test stops or
//! freezes a Redis or Postgres of its own, never the shared ones.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use stasis_shared::domain::{JobState, SyncReason};
use stasis_testkit::git::{free_port, refs, wait_for_port, Upstream};
use stasis_testkit::process::Proc;
use stasis_testkit::services::{PrivatePostgres, PrivateRedis};
use stasis_testkit::{eventually, TestEnv};

/// The bar: every answer, during the outage too, within this.
const ANSWER_WITHIN: Duration = Duration::from_secs(2);
/// How long each outage lasts: several times every bound involved.
const OUTAGE: Duration = Duration::from_secs(6);
/// After the backend is back, how long before every answer must be 2xx again.
const SETTLE: Duration = Duration::from_secs(3);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Postgres,
    Redis,
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Backend::Postgres => "postgres",
            Backend::Redis => "redis",
        }
    }
}

#[derive(Debug, Clone)]
struct Answer {
    what: &'static str,
    sent: Instant,
    took: Duration,
    /// 0: no HTTP answer at all.
    status: u16,
    body: String,
}

/// Requests of every kind, one every 50 ms, until `stop`. Each kind has a client of its
/// own, so an answer that never comes holds up only its own kind.
async fn load(
    api: String,
    user: String,
    admin: String,
    kind: usize,
    log: Arc<Mutex<Vec<Answer>>>,
    stop: Arc<AtomicBool>,
) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let mut i = 0;
    while !stop.load(Ordering::Relaxed) {
        let (what, request) = match kind {
            0 => (
                "sync",
                http.post(format!("{api}/api/v1/repos/pat/m/sync"))
                    .bearer_auth(&user),
            ),
            1 => (
                "import",
                http.post(format!("{api}/api/v1/repos/import"))
                    .bearer_auth(&user)
                    .json(&json!({
                        "name": format!("i{i}"),
                        "clone_url": "git://127.0.0.1:9/never-fetched.git",
                        "mirror": true,
                    })),
            ),
            2 => (
                "status",
                http.get(format!("{api}/api/v1/repos/pat/m/mirror/status")),
            ),
            3 => (
                "queue",
                http.get(format!("{api}/api/v1/admin/queue"))
                    .bearer_auth(&admin),
            ),
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
        // imports spend a budget of 2 a second
        let pause = if kind == 1 { 600 } else { 250 };
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
}

/// Takes a backend away and brings it back.
trait Outage: Send + Sync + 'static {
    fn begin(&self);
    fn end(&self);
}

struct StopRedis(Mutex<PrivateRedis>);
struct FreezeRedis(PrivateRedis);
struct StopPostgres(Arc<PrivatePostgres>);
struct FreezePostgres(Arc<PrivatePostgres>);

impl Outage for StopRedis {
    fn begin(&self) {
        self.0.lock().unwrap().kill();
    }
    fn end(&self) {
        self.0.lock().unwrap().start_again();
    }
}

impl Outage for FreezeRedis {
    fn begin(&self) {
        self.0.freeze();
    }
    fn end(&self) {
        self.0.thaw();
    }
}

impl Outage for StopPostgres {
    fn begin(&self) {
        self.0.stop();
    }
    fn end(&self) {
        self.0.start_again();
    }
}

impl Outage for FreezePostgres {
    fn begin(&self) {
        self.0.freeze();
    }
    fn end(&self) {
        self.0.thaw();
    }
}

async fn run_outage(env: &TestEnv, backend: Backend, outage: Arc<dyn Outage>) {
    let (owner, user) = env.user("pat", false).await;
    let (_, admin) = env.user("root", true).await;
    let mut up = Upstream::create(env.dir.path().join("up"));
    let repo = env.mirror(&owner, "m", &up.url()).await;
    let port = free_port();
    let mut procs = [
        Proc::spawn(
            env,
            "stasis-api",
            "api.log",
            &[
                ("STASIS_API_LISTEN", format!("127.0.0.1:{port}")),
                // every "Sync now" fetches: no coalescing window to wait out
                ("STASIS_MIRROR_MIN_MANUAL_INTERVAL", "0s".into()),
            ],
        ),
        Proc::spawn(env, "stasis-worker", "worker.log", &[]),
        Proc::spawn(env, "stasis-scheduler", "scheduler.log", &[]),
    ];
    let import = env.enqueue(repo, SyncReason::Import).await;
    assert_eq!(
        env.finished(import, Duration::from_secs(60)).await.state,
        JobState::Done
    );
    wait_for_port(port, "stasis-api");
    let api = format!("http://127.0.0.1:{port}");

    let log = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let drivers: Vec<_> = (0..5)
        .map(|kind| {
            tokio::spawn(load(
                api.clone(),
                user.clone(),
                admin.clone(),
                kind,
                log.clone(),
                stop.clone(),
            ))
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(2)).await;

    let going = outage.clone();
    let went = tokio::task::spawn_blocking(move || {
        going.begin();
        Instant::now()
    })
    .await
    .unwrap();
    tokio::time::sleep(OUTAGE).await;
    let coming = outage.clone();
    let came_back = tokio::task::spawn_blocking(move || {
        coming.end();
        Instant::now()
    })
    .await
    .unwrap();
    tokio::time::sleep(SETTLE + Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    for driver in drivers {
        driver.await.unwrap();
    }

    let answers = log.lock().unwrap().clone();
    let dependency = backend.name();
    for a in &answers {
        assert!(a.status != 0, "no answer at all: {a:?}");
        assert!(a.took < ANSWER_WITHIN, "answered after {:?}: {a:?}", a.took);
        assert!(
            (200..300).contains(&a.status) || a.status == 503,
            "neither 2xx nor 503: {a:?}"
        );
        if a.status == 503 {
            let body: Value = serde_json::from_str(&a.body).expect("503 body is JSON");
            assert_eq!(body["code"], "unavailable", "{a:?}");
            if a.what == "readyz" {
                assert_eq!(body["down"], json!([dependency]), "{a:?}");
            } else {
                assert_eq!(body["dependency"], dependency, "{a:?}");
            }
        }
    }
    let during: Vec<_> = answers
        .iter()
        .filter(|a| a.sent > went + Duration::from_secs(1) && a.sent + a.took < came_back)
        .collect();
    for what in ["readyz", "status", "sync", "import", "queue"] {
        assert!(
            during.iter().any(|a| a.what == what),
            "no {what} answered during the outage: {during:?}"
        );
    }
    // the outage was real, and seen
    assert!(
        during.iter().any(|a| a.what == "readyz" && a.status == 503),
        "/readyz never said {dependency} was down: {during:?}"
    );
    if backend == Backend::Postgres {
        assert!(
            during.iter().any(|a| a.what == "status" && a.status == 503),
            "mirror status never said Postgres was down: {during:?}"
        );
    }
    let after: Vec<_> = answers
        .iter()
        .filter(|a| a.sent > came_back + SETTLE)
        .collect();
    assert!(after.len() >= 10, "too few requests after: {}", after.len());
    for a in &after {
        assert!(
            a.status < 300,
            "{:?} after {dependency} came back: {a:?}",
            a.sent - came_back
        );
    }
    let slowest = answers.iter().max_by_key(|a| a.took).unwrap();
    let unavailable = answers.iter().filter(|a| a.status == 503).count();
    println!(
        "{dependency} out for {:.1?}: {} answers, {unavailable} 503, slowest {:?} ({} {}, sent {:.2?} after the outage began)",
        came_back - went,
        answers.len(),
        slowest.took,
        slowest.what,
        slowest.status,
        slowest.sent.saturating_duration_since(went),
    );

    // the worker that lived through it mirrors a commit pushed afterwards
    up.commit("after the outage");
    let http = reqwest::Client::new();
    let mirror = env.mirror_path("pat", "m");
    eventually(
        "m at its upstream's head",
        Duration::from_secs(60),
        || async {
            let _ = http
                .post(format!("{api}/api/v1/repos/pat/m/sync"))
                .bearer_auth(&user)
                .send()
                .await;
            (refs(&mirror) == up.refs()).then_some(())
        },
    )
    .await;
    for (p, name) in procs.iter_mut().zip(["api", "worker", "scheduler"]) {
        p.assert_running(name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_stopped_costs_prompt_answers_and_nothing_else() {
    let redis = PrivateRedis::start();
    let env = TestEnv::with_redis(&redis.url()).await;
    run_outage(&env, Backend::Redis, Arc::new(StopRedis(Mutex::new(redis)))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_frozen_costs_prompt_answers_and_nothing_else() {
    let redis = PrivateRedis::start();
    let env = TestEnv::with_redis(&redis.url()).await;
    run_outage(&env, Backend::Redis, Arc::new(FreezeRedis(redis))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_stopped_costs_prompt_answers_and_nothing_else() {
    let pg = Arc::new(PrivatePostgres::start());
    // a Redis of its own too: `/admin/queue` scans the keyspace, and the shared one
    // holds every other test's keys
    let redis = PrivateRedis::start();
    let env = TestEnv::with_services(&pg.admin_url(), &redis.url()).await;
    run_outage(&env, Backend::Postgres, Arc::new(StopPostgres(pg))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_frozen_costs_prompt_answers_and_nothing_else() {
    let pg = Arc::new(PrivatePostgres::start());
    // a Redis of its own too: `/admin/queue` scans the keyspace, and the shared one
    // holds every other test's keys
    let redis = PrivateRedis::start();
    let env = TestEnv::with_services(&pg.admin_url(), &redis.url()).await;
    run_outage(&env, Backend::Postgres, Arc::new(FreezePostgres(pg))).await;
}
