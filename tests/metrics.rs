//! Every process's `/metrics` after a real sync through the separate binaries: the
//! series the dashboard and alert rules query exist, the counters the two syncs move
//! move by exactly them (read before and after), and no label carries a repository,
//! owner or URL.

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_dashboard_and_alerts_query_is_exported() {
    let env = TestEnv::new().await;
    let (_, token) = env.user("metrics-owner", true).await;
    let up = Upstream::create(env.dir.path().join("metrics-upstream"));
    let missing = env.dir.path().join("no-such-upstream");

    let api_port = free_port();
    let ports = [
        ("api", free_port()),
        ("scheduler", free_port()),
        ("worker", free_port()),
    ];
    let mut procs: Vec<(&str, Proc)> = ports
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
    let (worker_port, api_metrics_port) = (ports[2].1, ports[0].1);
    let worker_before = scrape(&http, worker_port).await;
    let api_before = scrape(&http, api_metrics_port).await;

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
            (status["sync_status"] == want).then_some(())
        })
        .await;
    }

    // the leader samples Postgres and Redis on its own schedule: wait for its gauges
    let scheduler_port = ports[1].1;
    eventually("the scheduler to sample both mirrors", WAIT, || async {
        let s = scrape(&http, scheduler_port).await;
        (value(&s, "stasis_mirrors", "sync_status=\"success\"") >= 1.0
            && value(&s, "stasis_mirrors", "sync_status=\"hard_failed\"") >= 1.0)
            .then_some(())
    })
    .await;

    let mut exported = BTreeSet::new();
    let mut all = Vec::new();
    for &(name, port) in &ports {
        let samples = scrape(&http, port).await;
        assert!(
            samples.iter().any(|s| s.name == "stasis_build_info"
                && s.labels.contains(&format!("process=\"{name}\""))),
            "{name} exports no build_info with its process label"
        );
        exported.extend(samples.iter().map(|s| s.name.clone()));
        all.extend(samples);
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
    let missing: Vec<_> = queried.difference(&exported).collect();
    assert!(
        missing.is_empty(),
        "queried but never exported: {missing:?}"
    );

    // the two syncs, as the worker counted them: each counter moved by exactly them
    let worker = scrape(&http, worker_port).await;
    let moved = |after: &[Sample], before: &[Sample], name: &str, label: &str| {
        value(after, name, label) - value(before, name, label)
    };
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
            moved(&worker, &worker_before, name, label),
            by,
            "worker {name}{{{label}}}"
        );
    }
    let api_metrics = scrape(&http, api_metrics_port).await;
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
            moved(&api_metrics, &api_before, name, label),
            by,
            "api {name}{{{label}}}: {what}"
        );
    }

    // bounded labels only: nothing names a repository, an owner or an upstream
    for sample in &all {
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
    for (name, proc) in &mut procs {
        proc.assert_running(name);
    }
}
