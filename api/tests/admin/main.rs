//! Operator endpoints over HTTP, on jobs run through the real pipeline: a good
//! upstream, a failing one, and a job discarded before any worker ran. One module per
//! endpoint family, one behaviour per test.

mod fleet;
mod jobs;
mod lifecycle;
mod overview;
mod settings;
mod storages;

#[path = "../common/mod.rs"]
mod common;

use std::path::PathBuf;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};
use stasis_testkit::git::Upstream;
use stasis_testkit::worker::InProcessWorker;
use stasis_testkit::{eventually, TestEnv};

use common::{Api, Users};
use stasis_shared::db::repos;
use stasis_shared::domain::{JobState, SyncReason};
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(60);

fn job_ids(page: &Value) -> Vec<String> {
    page["jobs"]
        .as_array()
        .expect("jobs array")
        .iter()
        .map(|j| j["id"].as_str().unwrap().to_owned())
        .collect()
}

/// The API, the user alice and the admin root, alice's good upstream, and the path of
/// one that does not exist yet.
struct Ops {
    env: TestEnv,
    api: Api,
    alice: String,
    root: String,
    good: Upstream,
    later: PathBuf,
}

async fn ops() -> Ops {
    let env = TestEnv::new().await;
    let api = Api::start(&env).await;
    let Users { alice, root, .. } = Users::create(&env).await;
    let good = Upstream::create(env.dir.path().join("good"));
    let later = env.dir.path().join("later");
    Ops {
        env,
        api,
        alice,
        root,
        good,
        later,
    }
}

/// The jobs [`Ops::three_jobs`] leaves: the discarded one (`parked`), the done and the
/// failed imports' pages, and the failed job's id.
struct ThreeJobs {
    worker: InProcessWorker,
    parked: String,
    done: Value,
    failed: Value,
    broken_job: String,
}

impl Ops {
    fn admin(&self) -> Option<&str> {
        Some(self.root.as_str())
    }

    /// alice imports a mirror named `name` of `url`.
    async fn import(&self, name: &str, url: String) {
        let body = json!({ "name": name, "clone_url": url, "mirror": true });
        let (status, body) = self
            .api
            .call(
                "POST",
                "/api/v1/repos/import",
                Some(&self.alice),
                Some(body),
            )
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    }

    /// As root.
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        self.api.call(method, path, self.admin(), body).await
    }

    /// Imports `parked` with no worker running; returns its pending job's id.
    async fn park(&self) -> (String, Value) {
        self.import("parked", self.good.url()).await;
        let (_, pending) = self
            .call("GET", "/api/v1/admin/jobs?state=pending", None)
            .await;
        let parked = job_ids(&pending);
        assert_eq!(parked.len(), 1, "{pending}");
        (parked[0].clone(), pending)
    }

    async fn discard(&self, job: &str) -> (StatusCode, Value) {
        let path = format!("/api/v1/admin/jobs/{job}/discard");
        self.call("POST", &path, None).await
    }

    async fn retry(&self, job: &str) -> (StatusCode, Value) {
        let path = format!("/api/v1/admin/jobs/{job}/retry");
        self.call("POST", &path, None).await
    }

    /// The parked job discarded, then a good and a broken import through a real worker,
    /// which keeps running.
    async fn three_jobs(&self) -> ThreeJobs {
        let (parked, _) = self.park().await;
        let (status, body) = self.discard(&parked).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let worker = self.env.spawn_worker();
        self.import("good", self.good.url()).await;
        self.import("broken", format!("file://{}", self.later.display()))
            .await;
        let finished = |state: &'static str| async move {
            let path = format!("/api/v1/admin/jobs?state={state}");
            let (_, page) = self.call("GET", &path, None).await;
            (page["total"] == 1).then_some(page)
        };
        let done = eventually("the good import to finish", WAIT, || finished("done")).await;
        let failed = eventually("the broken import to fail", WAIT, || finished("failed")).await;
        let broken_job = job_ids(&failed)[0].clone();
        ThreeJobs {
            worker,
            parked,
            done,
            failed,
            broken_job,
        }
    }

    /// `n` scheduled syncs of alice's good mirror through the running worker, one after
    /// the other, each finding its upstream unchanged since the import: their jobs.
    async fn unchanged_syncs(&self, n: usize) -> Vec<Uuid> {
        let repo = repos::find_by_name(&self.env.pool, "alice", "good")
            .await
            .unwrap()
            .expect("alice/good")
            .id;
        let mut jobs = Vec::new();
        for _ in 0..n {
            let job = self.env.enqueue(repo, SyncReason::Scheduled).await;
            assert_eq!(self.env.finished(job, WAIT).await.state, JobState::Done);
            jobs.push(job);
        }
        jobs
    }

    /// The broken upstream created, its failed job retried and run to success; then
    /// the discarded job retried and run too.
    async fn retry_both(&self, jobs: &ThreeJobs) -> Upstream {
        let fixed = Upstream::create(self.later.clone());
        for job in [&jobs.broken_job, &jobs.parked] {
            let (status, body) = self.retry(job).await;
            assert_eq!(status, StatusCode::ACCEPTED, "{body}");
            let job = self.env.finished(job.parse().unwrap(), WAIT).await;
            assert_eq!(job.state, JobState::Done);
        }
        fixed
    }
}
