//! What the processes log, read from their output as an operator reads it: ERROR only
//! where someone must act, one WARN for an outage and one INFO for its end, nothing
//! alarming on a fresh stack.

use std::time::Duration;

use stasis_shared::domain::{JobState, SyncReason};
use stasis_shared::queue;
use stasis_stack_tests::parse_exposition;
use stasis_testkit::git::{free_port, wait_for_port, Upstream};
use stasis_testkit::process::Proc;
use stasis_testkit::services::PrivateRedis;
use stasis_testkit::{eventually, TestEnv};

const WAIT: Duration = Duration::from_secs(60);

/// A process's log lines, without the terminal's colour codes.
fn lines(proc: &Proc) -> Vec<String> {
    proc.log_text().lines().map(strip_ansi).collect()
}

fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ parameters final-byte
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The lines logged at `level` (`WARN`, `ERROR`), as tracing's text format shows it.
fn at_level(lines: &[String], level: &str) -> Vec<String> {
    lines
        .iter()
        .filter(|l| l.split_whitespace().nth(1) == Some(level))
        .cloned()
        .collect()
}

fn containing(lines: &[String], text: &str) -> usize {
    lines.iter().filter(|l| l.contains(text)).count()
}

/// The API, the scheduler and the worker, each with its log (and metrics for the
/// worker); the API's port.
fn spawn_stack(env: &TestEnv) -> (Vec<(&'static str, Proc)>, u16, u16) {
    let api_port = free_port();
    let worker_metrics = free_port();
    let api = Proc::spawn(
        env,
        "stasis-api",
        "api.log",
        &[("STASIS_API_LISTEN", format!("127.0.0.1:{api_port}"))],
    );
    let scheduler = Proc::spawn(env, "stasis-scheduler", "scheduler.log", &[]);
    let worker = Proc::spawn(
        env,
        "stasis-worker",
        "worker.log",
        &[(
            "STASIS_METRICS_LISTEN",
            format!("127.0.0.1:{worker_metrics}"),
        )],
    );
    wait_for_port(api_port, "stasis-api");
    wait_for_port(worker_metrics, "stasis-worker metrics");
    (
        vec![("api", api), ("scheduler", scheduler), ("worker", worker)],
        api_port,
        worker_metrics,
    )
}

/// The scheduler leader's first recovery pass marks the delivery epoch in Redis.
async fn wait_for_marked_epoch(env: &TestEnv) {
    eventually("the leader to mark the epoch", WAIT, || async {
        queue::marked(&env.redis, &env.cfg.queue.namespace)
            .await
            .ok()
            .filter(|marked| *marked)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_stack_warns_of_nothing_through_its_first_sync() {
    let env = TestEnv::new().await;
    let (procs, api_port, _) = spawn_stack(&env);
    // a namespace never marked: what a new deployment's scheduler finds
    wait_for_marked_epoch(&env).await;

    let (owner, _) = env.user("fresh", false).await;
    let up = Upstream::create(env.dir.path().join("up"));
    let repo = env.mirror(&owner, "up", &up.url()).await;
    let job = env.enqueue(repo, SyncReason::Manual).await;
    assert_eq!(env.finished(job, WAIT).await.state, JobState::Done);
    let ready = reqwest::get(format!("http://127.0.0.1:{api_port}/readyz"))
        .await
        .expect("readyz");
    assert!(ready.status().is_success(), "{}", ready.status());

    for (name, proc) in &procs {
        let lines = lines(proc);
        assert!(!lines.is_empty(), "{name} logged nothing");
        let alarming: Vec<_> = [at_level(&lines, "WARN"), at_level(&lines, "ERROR")].concat();
        assert!(alarming.is_empty(), "{name}:\n{}", alarming.join("\n"));
    }
    let scheduler = lines(&procs[1].1);
    assert_eq!(containing(&scheduler, "Redis lost data"), 0);
    assert_eq!(
        containing(&scheduler, "nothing to re-deliver"),
        1,
        "{}",
        scheduler.join("\n")
    );
    // the start is logged before the end
    let worker = lines(&procs[2].1);
    let started = worker.iter().position(|l| l.contains("sync started"));
    let ended = worker.iter().position(|l| l.contains("sync succeeded"));
    assert!(
        matches!((started, ended), (Some(s), Some(e)) if s < e),
        "{}",
        worker.join("\n")
    );
}

async fn worker_restarts(http: &reqwest::Client, port: u16) -> f64 {
    let Ok(answer) = http
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .send()
        .await
    else {
        return 0.0;
    };
    let text = answer.text().await.unwrap_or_default();
    parse_exposition(&text)
        .iter()
        .filter(|s| s.name == "stasis_worker_restarts_total")
        .map(|s| s.value)
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_outage_is_one_warning_and_one_recovery_per_process() {
    let mut redis = PrivateRedis::start();
    let env = TestEnv::with_redis(&redis.url()).await;
    let (procs, api_port, worker_metrics) = spawn_stack(&env);
    wait_for_marked_epoch(&env).await;
    let http = reqwest::Client::new();

    redis.kill();
    // expected refusals while it is away
    for _ in 0..3 {
        let ready = http
            .get(format!("http://127.0.0.1:{api_port}/readyz"))
            .send()
            .await
            .expect("readyz");
        assert_eq!(ready.status(), reqwest::StatusCode::SERVICE_UNAVAILABLE);
    }
    // the queue consumers fail and are restarted again and again
    let before = worker_restarts(&http, worker_metrics).await;
    eventually(
        "the worker's consumers to restart a few times",
        WAIT,
        || async { (worker_restarts(&http, worker_metrics).await >= before + 3.0).then_some(()) },
    )
    .await;
    for (name, proc) in &procs[1..] {
        eventually("the outage to be logged", WAIT, || async {
            (containing(&lines(proc), "redis unreachable") > 0).then_some(())
        })
        .await;
        println!("{name} logged the outage");
    }

    redis.start_again();
    for (_, proc) in &procs[1..] {
        eventually("the end of the outage to be logged", WAIT, || async {
            (containing(&lines(proc), "redis reachable again") > 0).then_some(())
        })
        .await;
    }
    // Redis came back empty with no job waiting on it: nothing was lost
    wait_for_marked_epoch(&env).await;

    for (name, proc) in &procs {
        let lines = lines(proc);
        let errors = at_level(&lines, "ERROR");
        assert!(errors.is_empty(), "{name}:\n{}", errors.join("\n"));
        let warnings = at_level(&lines, "WARN");
        if *name == "api" {
            assert!(
                warnings
                    .iter()
                    .all(|l| l.contains("request refused: server unavailable")),
                "{}",
                warnings.join("\n")
            );
            continue;
        }
        assert_eq!(
            containing(&lines, "redis unreachable"),
            1,
            "{name}:\n{}",
            lines.join("\n")
        );
        assert_eq!(
            containing(&lines, "redis reachable again"),
            1,
            "{name}:\n{}",
            lines.join("\n")
        );
        assert_eq!(containing(&lines, "Redis lost data"), 0, "{name}");
        if *name == "worker" {
            // however often its consumers failed and were restarted
            assert_eq!(warnings.len(), 1, "{}", warnings.join("\n"));
        }
        println!(
            "{name}: {} warnings\n{}",
            warnings.len(),
            warnings.join("\n")
        );
    }
}

/// The start of a sync is logged as it starts, not once a slow upstream has answered:
/// this one accepts the connection and never says a word (`sync.timeout` is a minute).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_is_logged_as_started_while_its_upstream_is_still_silent() {
    use stasis_testkit::hostile::{HostileGitServer, Hostility};
    let env = TestEnv::new().await;
    let server = HostileGitServer::start(Hostility::Silent);
    let (owner, _) = env.user("patient", false).await;
    let repo = env.mirror(&owner, "slow", &server.url("slow.git")).await;
    let worker = Proc::spawn(&env, "stasis-worker", "worker.log", &[]);
    let job = env.enqueue(repo, SyncReason::Manual).await;

    eventually("the worker to connect", WAIT, || async {
        (server.connections() > 0).then_some(())
    })
    .await;
    eventually("the start in the log", Duration::from_secs(10), || async {
        (containing(&lines(&worker), "sync started") > 0).then_some(())
    })
    .await;
    assert_eq!(server.bytes_sent(), 0, "the upstream has not answered yet");
    assert_ne!(env.job(job).await.state, JobState::Failed);
}
