//! Every process's `/metrics` after real syncs through the separate binaries: the
//! series the dashboard and alert rules query exist, the counters the two syncs move
//! move by exactly them (read before and after), and no label carries a repository,
//! owner or URL. Each is its own test on a stack of its own.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{json, Value};
use stasis_stack_tests::{parse_exposition, queried_metrics, Sample};
use stasis_testkit::git::{free_port, wait_for_port, Upstream};
use stasis_testkit::process::Proc;
use stasis_testkit::{eventually, TestEnv};

const WAIT: Duration = Duration::from_secs(90);

async fn scrape(http: &reqwest::Client, port: u16) -> Vec<Sample> {
    let text = http
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .send()
        .await
        .expect("scrape /metrics")
        .text()
        .await
        .expect("read /metrics");
    parse_exposition(&text)
}

fn value(samples: &[Sample], name: &str, label: &str) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == name && s.labels.contains(label))
        .map(|s| s.value)
        .sum()
}

/// The three processes, in [`PROCESSES`] order, and what each exported before and after
/// one mirror synced and another failed for good.
struct Stack {
    procs: Vec<(&'static str, Proc)>,
    before: Vec<Vec<Sample>>,
    after: Vec<Vec<Sample>>,
    // dropped last: the processes use its database
    _env: TestEnv,
}

const PROCESSES: [&str; 3] = ["api", "scheduler", "worker"];
const API: usize = 0;
const WORKER: usize = 2;

async fn stack_after_two_syncs() -> Stack {
    let env = TestEnv::new().await;
    let (_, token) = env.user("metrics-owner", true).await;
    let up = Upstream::create(env.dir.path().join("metrics-upstream"));
    let missing = env.dir.path().join("no-such-upstream");

    let api_port = free_port();
    let ports = PROCESSES.map(|name| (name, free_port()));
    let procs: Vec<(&str, Proc)> = ports
        .iter()
        .map(|&(name, metrics)| {
            let mut extra = vec![("STASIS_METRICS_LISTEN", format!("127.0.0.1:{metrics}"))];
            if name == "api" {
                extra.push(("STASIS_API_LISTEN", format!("127.0.0.1:{api_port}")));
            }
            let bin = format!("stasis-{name}");
            (
                name,
                Proc::spawn(&env, &bin, &format!("{name}.log"), &extra),
            )
        })
        .collect();
    wait_for_port(api_port, "stasis-api");
    for &(name, port) in &ports {
        wait_for_port(port, name);
    }

    // every counter the syncs below move, before them: pre-created at zero, a counter
    // is exported whether or not anything increments it, so only the change proves it
    let http = reqwest::Client::new();
    let mut before = Vec::new();
    for &(_, port) in &ports {
        before.push(scrape(&http, port).await);
    }

    // one mirror that syncs and one whose upstream does not exist
    let api = format!("http://127.0.0.1:{api_port}/api/v1");
    for (name, url) in [
        ("metrics-good", up.url()),
        ("metrics-gone", format!("file://{}", missing.display())),
    ] {
        let resp = http
            .post(format!("{api}/repos/import"))
            .bearer_auth(&token)
            .json(&json!({ "name": name, "clone_url": url, "mirror": true }))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 202, "{}", resp.text().await.unwrap());
    }
    // a missing upstream is permanent: the mirror stops being scheduled at once
    for (name, want) in [("metrics-good", "success"), ("metrics-gone", "hard_failed")] {
        eventually(&format!("{name} to be {want}"), WAIT, || async {
            let status: Value = http
                .get(format!("{api}/repos/metrics-owner/{name}/mirror/status"))
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            (status["sync_state"] == want).then_some(())
        })
        .await;
    }

    // the leader samples Postgres and Redis on its own schedule: wait for its gauges
    let scheduler_port = ports[1].1;
    // (whole passes: a scrape may land between two gauges of one sample, and the
    // reclaim pass runs on a period of its own)
    eventually("the scheduler to sample both mirrors", WAIT, || async {
        let s = scrape(&http, scheduler_port).await;
        let has = |name: &str| s.iter().any(|sample| sample.name == name);
        (value(&s, "stasis_mirrors", "sync_status=\"success\"") >= 1.0
            && value(&s, "stasis_mirrors", "sync_status=\"hard_failed\"") >= 1.0
            && has("stasis_lfs_missing_objects")
            && has("stasis_queue_reclaimed_total"))
        .then_some(())
    })
    .await;

    let mut after = Vec::new();
    for &(_, port) in &ports {
        after.push(scrape(&http, port).await);
    }
    Stack {
        procs,
        before,
        after,
        _env: env,
    }
}

impl Stack {
    fn moved(&self, process: usize, name: &str, label: &str) -> f64 {
        value(&self.after[process], name, label) - value(&self.before[process], name, label)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_dashboard_and_alerts_query_is_exported() {
    let mut stack = stack_after_two_syncs().await;
    let mut exported = BTreeSet::new();
    for (name, samples) in PROCESSES.iter().zip(&stack.after) {
        assert!(
            samples.iter().any(|s| s.name == "stasis_build_info"
                && s.labels.contains(&format!("process=\"{name}\""))),
            "{name} exports no build_info with its process label"
        );
        exported.extend(samples.iter().map(|s| s.name.clone()));
    }

    let dashboard = std::fs::read_to_string("../deploy/grafana/dashboards/stasis.json").unwrap();
    let alerts = std::fs::read_to_string("../deploy/prometheus/alerts.yml").unwrap();
    let queried: BTreeSet<String> = queried_metrics(&dashboard)
        .into_iter()
        .chain(queried_metrics(&alerts))
        .collect();
    assert!(
        queried.len() >= 20,
        "too few metrics found in deploy/: {queried:?}"
    );
    // a histogram is exported as its _bucket, _count and _sum series
    let missing: Vec<_> = queried
        .iter()
        .filter(|name| {
            !["", "_bucket", "_count", "_sum"]
                .iter()
                .any(|suffix| exported.contains(&format!("{name}{suffix}")))
        })
        .collect();
    assert!(
        missing.is_empty(),
        "queried but never exported: {missing:?}"
    );
    for (name, proc) in &mut stack.procs {
        proc.assert_running(name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_two_syncs_move_each_counter_by_exactly_them() {
    let stack = stack_after_two_syncs().await;
    // the two syncs, as the worker counted them
    for (name, label, by) in [
        ("stasis_syncs_started_total", "reason=\"import\"", 2.0),
        ("stasis_jobs_finished_total", "outcome=\"success\"", 1.0),
        ("stasis_jobs_finished_total", "outcome=\"failure\"", 1.0),
        (
            "stasis_sync_failures_total",
            "error_kind=\"not_found\"",
            1.0,
        ),
        ("stasis_sync_duration_seconds_count", "", 2.0),
    ] {
        assert_eq!(
            stack.moved(WORKER, name, label),
            by,
            "worker {name}{{{label}}}"
        );
    }
    // the two imports, as the API counted them
    for (name, label, by, what) in [
        (
            "stasis_jobs_enqueued_total",
            "reason=\"import\"",
            2.0,
            "imports not counted as enqueued",
        ),
        (
            "stasis_http_requests_total",
            "route=\"/api/v1/repos/import\"",
            2.0,
            "imports not counted by route template",
        ),
    ] {
        assert_eq!(
            stack.moved(API, name, label),
            by,
            "api {name}{{{label}}}: {what}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_label_names_a_repository_an_owner_or_an_upstream() {
    let stack = stack_after_two_syncs().await;
    for sample in stack.after.iter().flatten() {
        for needle in [
            "metrics-good",
            "metrics-gone",
            "metrics-owner",
            "file://",
            "/tmp",
        ] {
            assert!(
                !sample.labels.contains(needle),
                "unbounded label value in {} {}",
                sample.name,
                sample.labels
            );
        }
    }
}

/// The gauges the scheduler leader samples, as a scheduler exports them.
const LEADER_ONLY: [&str; 7] = [
    "stasis_scheduler_paused",
    "stasis_queue_jobs",
    "stasis_queue_redis_jobs",
    "stasis_workers_alive",
    "stasis_mirrors",
    "stasis_mirrors_overdue",
    "stasis_mirrors_oldest_overdue_seconds",
];

/// A scheduler that loses the lease stops exporting what it sampled as leader (a
/// stand-by speaks for nothing), while it still says it is up and not leading.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduler_that_loses_the_lease_stops_exporting_the_leaders_gauges() {
    let env = TestEnv::new().await;
    let port = free_port();
    let mut scheduler = Proc::spawn(
        &env,
        "stasis-scheduler",
        "scheduler.log",
        &[("STASIS_METRICS_LISTEN", format!("127.0.0.1:{port}"))],
    );
    wait_for_port(port, "stasis-scheduler");
    let http = reqwest::Client::new();
    let present = |s: &[Sample], name: &str| s.iter().any(|x| x.name == name);
    eventually("the leader to sample its gauges", WAIT, || async {
        let s = scrape(&http, port).await;
        (value(&s, "stasis_scheduler_leader", "") == 1.0
            && LEADER_ONLY.iter().all(|name| present(&s, name)))
        .then_some(())
    })
    .await;

    // another holder takes the lease (a stand-by after this one froze) and keeps it
    let key = format!("{}:scheduler:leader", env.cfg.queue.namespace);
    let _: () = redis::cmd("SET")
        .arg(&key)
        .arg("another-scheduler")
        .arg("EX")
        .arg(600)
        .query_async(&mut env.redis.clone())
        .await
        .unwrap();
    let after = eventually("the former leader to drop its gauges", WAIT, || async {
        let s = scrape(&http, port).await;
        (value(&s, "stasis_scheduler_leader", "") == 0.0
            && !LEADER_ONLY.iter().any(|name| present(&s, name)))
        .then_some(s)
    })
    .await;
    assert!(
        after.iter().any(|s| s.name == "stasis_build_info"
            && s.labels.contains("revision=\"")
            && !s.labels.contains("revision=\"\"")),
        "build_info with its revision stays: {after:?}"
    );
    scheduler.assert_running("scheduler");
}

/// A client's method is a label only when it is a standard one; every request gets an
/// id (the client's plain token, else a new one), echoed back and carried by the
/// request's access log line with the route template.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_methods_share_one_label_and_each_request_is_logged_with_its_id() {
    let env = TestEnv::new().await;
    let (api_port, metrics_port) = (free_port(), free_port());
    let mut api = Proc::spawn(
        &env,
        "stasis-api",
        "api.log",
        &[
            ("STASIS_API_LISTEN", format!("127.0.0.1:{api_port}")),
            ("STASIS_METRICS_LISTEN", format!("127.0.0.1:{metrics_port}")),
        ],
    );
    wait_for_port(api_port, "stasis-api");
    wait_for_port(metrics_port, "stasis-api metrics");
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{api_port}");
    for method in ["FOOBAR", "PROPFIND", "FOOBAR"] {
        let resp = http
            .request(
                reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
                format!("{base}/api/v1/repos/someone/{method}"),
            )
            .send()
            .await
            .unwrap();
        assert!(
            resp.status().is_client_error(),
            "{method}: {}",
            resp.status()
        );
        assert!(
            resp.headers().contains_key("x-request-id"),
            "{method}: {resp:?}"
        );
    }
    let resp = http
        .get(format!("{base}/api/v1/repos/someone/some-repo"))
        .header("x-request-id", "trace-4711.a")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-request-id"], "trace-4711.a");
    let resp = http
        .get(format!("{base}/healthz"))
        .header("x-request-id", "forged\" level=ERROR")
        .send()
        .await
        .unwrap();
    let made = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert!(uuid::Uuid::parse_str(&made).is_ok(), "not replaced: {made}");

    let samples = scrape(&http, metrics_port).await;
    let requests: Vec<_> = samples
        .iter()
        .filter(|s| s.name == "stasis_http_requests_total")
        .collect();
    assert!(
        requests
            .iter()
            .all(|s| !s.labels.contains("FOOBAR") && !s.labels.contains("PROPFIND")),
        "{requests:?}"
    );
    assert_eq!(
        value(&samples, "stasis_http_requests_total", "method=\"other\""),
        3.0
    );

    let line = eventually("the access log line of the request", WAIT, || async {
        plain(&api.log_text())
            .lines()
            .find(|l| l.contains("trace-4711.a") && l.contains("request served"))
            .map(str::to_owned)
    })
    .await;
    for part in ["/api/v1/repos/{owner}/{repo}", "status=", "duration_ms="] {
        assert!(line.contains(part), "{part} missing: {line}");
    }
    assert!(
        !line.contains("some-repo"),
        "the raw path is logged: {line}"
    );
    assert!(
        !api.log_text().contains("forged"),
        "a forged id reached the log"
    );
    api.assert_running("api");
}

/// The text without its terminal colour codes (`ESC [ ... m`).
fn plain(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
