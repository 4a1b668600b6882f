//! The REST contract, table by table: who may do what to public and private
//! repositories, listings, mirror settings, renaming, deletion and the OpenAPI document.

mod access;
mod deletion;
mod listings;
mod openapi;
mod rename;
mod settings;

#[path = "../common/mod.rs"]
mod common;

use reqwest::StatusCode;
use serde_json::{json, Value};
use stasis_shared::db::users;
use stasis_testkit::git::Upstream;
use stasis_testkit::TestEnv;

use common::{Api, Users};

const OK: u16 = 200;
const ACCEPTED: u16 = 202;
const NO_CONTENT: u16 = 204;
const BAD: u16 = 400;
const UNAUTH: u16 = 401;
const FORBIDDEN: u16 = 403;
const NOT_FOUND: u16 = 404;
const CONFLICT: u16 = 409;

struct World {
    env: TestEnv,
    api: Api,
    alice: String,
    mallory: String,
    root: String,
    revoked: String,
}

async fn world() -> World {
    let env = TestEnv::new().await;
    let api = Api::start(&env).await;
    let Users {
        alice,
        mallory,
        root,
        ..
    } = Users::create(&env).await;
    let (_, revoked) = env.user("rex", false).await;
    users::revoke_token(&env.pool, "rex").await.unwrap();
    World {
        env,
        api,
        alice,
        mallory,
        root,
        revoked,
    }
}

impl World {
    async fn import(&self, name: &str, mirror: bool, private: bool) -> Value {
        let up = self.env.dir.path().join(format!("up-{name}"));
        let url = Upstream::create(up).url();
        let body = json!({ "name": name, "clone_url": url, "mirror": mirror, "private": private });
        let (status, answer) = self
            .api
            .call(
                "POST",
                "/api/v1/repos/import",
                Some(&self.alice),
                Some(body),
            )
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
        answer
    }

    async fn status(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> u16 {
        self.api.call(method, path, token, body).await.0.as_u16()
    }
}
