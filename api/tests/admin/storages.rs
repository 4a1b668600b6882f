//! Named storages through the API: listed with their workers and free space, chosen at
//! import by an admin only, moved between (and a failed move leaves the mirror where it
//! was, working), and a storage below its free-space floor taking no new mirrors.

use std::path::{Path, PathBuf};
use std::process::Command;

use reqwest::StatusCode;
use serde_json::{json, Value};
use stasis_testkit::git::{assert_mirrors, Upstream};
use stasis_testkit::worker::InProcessWorker;
use stasis_testkit::{eventually, TestEnv};

use super::common::{Api, Users};
use super::WAIT;

/// One in-process worker per storage, each serving its own.
fn workers(env: &TestEnv) -> Vec<InProcessWorker> {
    ["a", "b"]
        .into_iter()
        .map(|name| {
            let mut cfg = env.cfg.clone();
            cfg.worker.storages = vec![name.to_owned()];
            InProcessWorker::start(cfg, env.pool.clone(), env.redis.clone())
        })
        .collect()
}

async fn storages(api: &Api, root: &str) -> Value {
    let (status, body) = api
        .call("GET", "/api/v1/admin/storages", Some(root), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

fn storage<'a>(list: &'a Value, name: &str) -> &'a Value {
    list["storages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("{name} in {list}"))
}

/// Waits until both storages have a live worker.
async fn both_live(api: &Api, root: &str) {
    eventually("a live worker on each storage", WAIT, || async {
        let list = storages(api, root).await;
        ["a", "b"]
            .iter()
            .all(|name| storage(&list, name)["live_workers"] == 1)
            .then_some(())
    })
    .await;
}

async fn repo(api: &Api, token: &str, full: &str) -> Value {
    let (status, body) = api
        .call("GET", &format!("/api/v1/repos/{full}"), Some(token), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

async fn import(api: &Api, token: &str, body: Value) -> (StatusCode, Value) {
    api.call("POST", "/api/v1/repos/import", Some(token), Some(body))
        .await
}

/// Waits until `full`'s last sync succeeded.
async fn synced(api: &Api, root: &str, full: &str) {
    eventually(&format!("{full} to sync"), WAIT, || async {
        (repo(api, root, full).await["sync_status"] == "success").then_some(())
    })
    .await;
}

#[tokio::test]
async fn an_admin_places_and_moves_a_mirror_and_the_storages_say_what_they_hold() {
    let mut env = TestEnv::new().await;
    env.two_storages(1, 1);
    let api = Api::start(&env).await;
    let Users { alice, root, .. } = Users::create(&env).await;
    let up = Upstream::create(env.dir.path().join("up"));
    let _workers = workers(&env);
    both_live(&api, &root).await;
    let list = storages(&api, &root).await;
    assert_eq!(storage(&list, "a")["accepting"], true, "{list}");
    assert!(
        storage(&list, "a")["free_bytes"].as_i64().unwrap() > 0,
        "{list}"
    );

    let request = |name: &str, storage: Option<&str>| {
        let mut body = json!({ "name": name, "clone_url": up.url(), "mirror": true });
        if let Some(s) = storage {
            body["storage"] = json!(s);
        }
        body
    };
    // only admins choose
    let (status, body) = import(&api, &alice, request("x", Some("b"))).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, body) = import(&api, &root, request("x", Some("nope"))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["code"], "invalid_storage", "{body}");
    assert!(body["error"].as_str().unwrap().contains("nope"), "{body}");
    let (status, body) = import(&api, &root, request("x", Some("b"))).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["storage"], "b", "{body}");
    synced(&api, &root, "root/x").await;
    assert_mirrors(&env.mirror_path_on("b", "root", "x"), &up);

    let (_, on_b) = api
        .call("GET", "/api/v1/repos?storage=b", Some(&root), None)
        .await;
    assert_eq!(on_b["total"], 1, "{on_b}");
    let (_, on_a) = api
        .call("GET", "/api/v1/repos?storage=a", Some(&root), None)
        .await;
    assert_eq!(on_a["total"], 0, "{on_a}");

    // moved to a: cloned there, switched, b's copy removed
    let path = "/api/v1/admin/mirrors/root/x/move";
    let (status, body) = api
        .call("POST", path, Some(&alice), Some(json!({"storage": "a"})))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, body) = api
        .call("POST", path, Some(&root), Some(json!({"storage": "a"})))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert!(body["move_id"].as_i64().is_some(), "{body}");
    eventually("the mirror on a", WAIT, || async {
        let r = repo(&api, &root, "root/x").await;
        (r["storage"] == "a" && r["moving_to"].is_null()).then_some(())
    })
    .await;
    assert_mirrors(&env.mirror_path_on("a", "root", "x"), &up);
    eventually("b's copy removed", WAIT, || async {
        (!env.mirror_path_on("b", "root", "x").exists()).then_some(())
    })
    .await;
    let (_, moves) = api
        .call("GET", "/api/v1/admin/moves?state=done", Some(&root), None)
        .await;
    assert_eq!(moves["moves"][0]["repo"], "root/x", "{moves}");
    assert_eq!(moves["moves"][0]["from_storage"], "b", "{moves}");
    let (status, body) = api
        .call("POST", path, Some(&root), Some(json!({"storage": "a"})))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let (status, _) = api
        .call(
            "POST",
            "/api/v1/admin/mirrors/root/none/move",
            Some(&root),
            Some(json!({"storage": "b"})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let list = storages(&api, &root).await;
    assert_eq!(storage(&list, "a")["mirrors"], 1, "{list}");
    assert_eq!(storage(&list, "b")["mirrors"], 0, "{list}");
}

#[tokio::test]
async fn a_failed_move_leaves_the_mirror_where_it_was_and_working() {
    let mut env = TestEnv::new().await;
    env.two_storages(1, 1);
    let api = Api::start(&env).await;
    let Users { root, .. } = Users::create(&env).await;
    let served = env.dir.path().join("up");
    let mut up = Upstream::create(served.clone());
    let _workers = workers(&env);
    both_live(&api, &root).await;
    let body = json!({ "name": "y", "clone_url": up.url(), "mirror": true, "storage": "a" });
    let (status, body) = import(&api, &root, body).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    synced(&api, &root, "root/y").await;

    // the upstream gone for the move
    let away = env.dir.path().join("away");
    std::fs::rename(&served, &away).unwrap();
    let (status, body) = api
        .call(
            "POST",
            "/api/v1/admin/storages/a/drain",
            Some(&root),
            Some(json!({"to": "b", "limit": 10})),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["moving"], 1, "{body}");
    let failed = eventually("the move to fail", WAIT, || async {
        let (_, moves) = api
            .call("GET", "/api/v1/admin/moves?state=failed", Some(&root), None)
            .await;
        moves["moves"].as_array().filter(|m| !m.is_empty()).cloned()
    })
    .await;
    assert_eq!(failed[0]["to_storage"], "b");
    assert!(
        !failed[0]["error"].as_str().unwrap_or("").is_empty(),
        "{failed:?}"
    );
    let r = repo(&api, &root, "root/y").await;
    assert_eq!(r["storage"], "a", "{r}");
    assert!(r["moving_to"].is_null(), "{r}");
    assert!(!env.mirror_path_on("b", "root", "y").exists());

    // the upstream back: the mirror syncs where it is
    std::fs::rename(&away, &served).unwrap();
    up.commit("after the failed move");
    let (status, body) = api
        .call(
            "POST",
            "/api/v1/repos/root/y/sync?force=true",
            Some(&root),
            None,
        )
        .await;
    assert!(status.is_success(), "{body}");
    eventually("the mirror at the new commit on a", WAIT, || async {
        let path = env.mirror_path_on("a", "root", "y");
        (stasis_testkit::git::refs(&path) == up.refs()).then_some(())
    })
    .await;
}

/// A tmpfs mounted over a directory for the test's life.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .expect("run mount");
        assert!(status.success(), "mounting a tmpfs (the tests run as root)");
        Self(dir.to_owned())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[tokio::test]
async fn a_storage_below_its_free_space_floor_takes_no_new_mirrors() {
    let mut env = TestEnv::new().await;
    env.two_storages(1, 1);
    // b is a filesystem of 8 MiB; the floor is 64 MiB
    let _small = Tmpfs::mount(env.cfg.storage.root_of("b").unwrap(), "8m");
    env.cfg.storage.min_free_bytes = 64 * 1024 * 1024;
    let api = Api::start(&env).await;
    let Users { alice, root, .. } = Users::create(&env).await;
    let up = Upstream::create(env.dir.path().join("up"));
    let _workers = workers(&env);
    both_live(&api, &root).await;
    let list = storages(&api, &root).await;
    let b = storage(&list, "b");
    assert_eq!(b["accepting"], false, "{list}");
    assert!(
        b["reason"]
            .as_str()
            .unwrap()
            .contains("below storage.min_free_bytes"),
        "{list}"
    );
    assert_eq!(storage(&list, "a")["accepting"], true, "{list}");
    for i in 0..12 {
        let body = json!({ "name": format!("m{i}"), "clone_url": up.url(), "mirror": true });
        let (status, body) = import(&api, &alice, body).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        assert_eq!(body["storage"], "a", "{body}");
    }
}

#[tokio::test]
async fn a_worker_that_mounts_both_storages_moves_a_mirror_by_copy_then_fetch() {
    let mut env = TestEnv::new().await;
    env.two_storages(1, 1);
    let api = Api::start(&env).await;
    let Users { root, .. } = Users::create(&env).await;
    let mut up = Upstream::create(env.dir.path().join("up"));
    up.add_blob("payload.bin", 200_000);
    // one worker serving both
    let _worker = env.spawn_worker();
    both_live(&api, &root).await;
    let body = json!({ "name": "z", "clone_url": up.url(), "mirror": true, "storage": "a" });
    let (status, body) = import(&api, &root, body).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    synced(&api, &root, "root/z").await;
    let (status, body) = api
        .call(
            "POST",
            "/api/v1/admin/mirrors/root/z/move",
            Some(&root),
            Some(json!({"storage": "b"})),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let job = body["job_id"].as_str().unwrap().to_owned();
    eventually("the mirror on b", WAIT, || async {
        let r = repo(&api, &root, "root/z").await;
        (r["storage"] == "b" && r["moving_to"].is_null()).then_some(())
    })
    .await;
    assert_mirrors(&env.mirror_path_on("b", "root", "z"), &up);
    // copied, then fetched: the upstream had nothing new, so the check only listed and
    // was counted in the import's run
    let (_, detail) = api
        .call(
            "GET",
            &format!("/api/v1/admin/jobs/{job}"),
            Some(&root),
            None,
        )
        .await;
    let run = &detail["runs"][0];
    assert_eq!(
        (&run["outcome"], &run["checks"]),
        (&json!("success"), &json!(2)),
        "{detail}"
    );
    assert_ne!(run["job_id"], json!(job), "{detail}");
}

#[tokio::test]
async fn draining_the_only_storage_is_refused_as_a_conflict() {
    let env = TestEnv::new().await;
    let api = Api::start(&env).await;
    let Users { root, .. } = Users::create(&env).await;
    let (status, body) = api
        .call(
            "POST",
            "/api/v1/admin/storages/default/drain",
            Some(&root),
            Some(json!({})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("no storage but `default`"),
        "{body}"
    );
    let (status, body) = api
        .call(
            "POST",
            "/api/v1/admin/storages/nope/drain",
            Some(&root),
            Some(json!({})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
}
