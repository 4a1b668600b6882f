//! The HTTP API served on loopback, with a real worker behind it where a sync must run:
//! importing, syncing and reading a mirror's status, and the service itself.

mod credentials;
mod import;
mod progress;
mod service;
mod ssh;
mod sync;

#[path = "../common/mod.rs"]
mod common;

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};
use stasis_testkit::git::Upstream;
use stasis_testkit::{eventually, TestEnv};

use common::{Api, Users};

const WAIT: Duration = Duration::from_secs(60);

/// The API, an upstream, the users alice and mallory and the admin root's tokens.
struct Site {
    env: TestEnv,
    api: Api,
    up: Upstream,
    alice: String,
    mallory: String,
    admin: String,
}

async fn site() -> Site {
    let env = TestEnv::new().await;
    let api = Api::start(&env).await;
    let up = Upstream::create(env.dir.path().join("up"));
    let Users {
        alice,
        mallory,
        root,
        ..
    } = Users::create(&env).await;
    Site {
        env,
        api,
        up,
        alice,
        mallory,
        admin: root,
    }
}

impl Site {
    /// `POST /api/v1/repos/import` as alice.
    async fn import(&self, body: Value) -> (StatusCode, Value) {
        self.api
            .call(
                "POST",
                "/api/v1/repos/import",
                Some(&self.alice),
                Some(body),
            )
            .await
    }

    /// alice's mirror `up` of the upstream, imported and waited for until its status
    /// shows the sync succeeded; returns that status.
    async fn synced_mirror(&self) -> Value {
        let body = json!({ "name": "up", "clone_url": self.up.url(), "mirror": true });
        let (status, answer) = self.import(body).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
        eventually("the import to sync", WAIT, || async {
            let (_, body) = self
                .api
                .call("GET", "/api/v1/repos/alice/up/mirror/status", None, None)
                .await;
            (body["sync_status"] == "success").then_some(body)
        })
        .await
    }
}
