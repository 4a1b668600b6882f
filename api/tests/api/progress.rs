//! A long import's progress in the mirror's status: objects and bytes against the
//! total while the pack arrives through a throttled loopback link, none once done.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};
use stasis_testkit::git::{assert_mirrors, GitDaemon, Upstream};
use stasis_testkit::proxy::ThrottledProxy;
use stasis_testkit::{eventually, TestEnv};

use crate::common::{Api, Users};
use crate::WAIT;

const STATUS: &str = "/api/v1/repos/alice/up/mirror/status";

fn count(status: &Value, field: &str) -> u64 {
    status["progress"][field]
        .as_u64()
        .unwrap_or_else(|| panic!("progress.{field}: {status}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_status_carries_the_progress_while_a_slow_import_downloads_and_none_after() {
    let env = TestEnv::new().await;
    let api = Api::start(&env).await;
    let Users { alice, .. } = Users::create(&env).await;
    let served = env.dir.path().join("served");
    let mut up = Upstream::create(served.join("up"));
    // 3 MB in 150 objects at 400 kB/s: about 7 s of download
    up.add_blobs("data", 150, 20_000);
    let daemon = GitDaemon::start(&served);
    let proxy = ThrottledProxy::start(daemon.port, 400_000).await;
    let body = json!({ "name": "up", "clone_url": proxy.url("up"), "mirror": true });
    let (status, answer) = api
        .call("POST", "/api/v1/repos/import", Some(&alice), Some(body))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    let worker = env.spawn_worker();

    let first = eventually("the status to show received objects", WAIT, || async {
        let (_, s) = api.call("GET", STATUS, Some(&alice), None).await;
        s["progress"]["received_objects"]
            .as_u64()
            .is_some_and(|n| n > 0)
            .then_some(s)
    })
    .await;
    assert_eq!(
        (&first["sync_status"], &first["job"]["state"]),
        (&json!("syncing"), &json!("running")),
        "{first}"
    );
    assert_eq!(first["progress"]["phase"], "receiving_objects", "{first}");
    assert!(count(&first, "total_objects") > 150, "{first}");
    assert!(first["progress"]["updated_at"].is_string(), "{first}");
    // the worker publishes about once a second
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let (_, second) = api.call("GET", STATUS, Some(&alice), None).await;
    assert!(
        count(&second, "received_objects") > count(&first, "received_objects"),
        "{first}\nthen {second}"
    );
    assert!(
        count(&second, "received_bytes") > count(&first, "received_bytes"),
        "{first}\nthen {second}"
    );
    assert_eq!(
        count(&second, "total_objects"),
        count(&first, "total_objects")
    );

    let done = eventually("the import to succeed", WAIT, || async {
        let (_, s) = api.call("GET", STATUS, Some(&alice), None).await;
        (s["sync_status"] == "success").then_some(s)
    })
    .await;
    assert!(done["progress"].is_null(), "{done}");
    assert_mirrors(&env.mirror_path("alice", "up"), &up);
    worker.stop().await;
}
