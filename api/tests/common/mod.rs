//! The API served on loopback for tests.

use reqwest::{Client, StatusCode};
use serde_json::Value;
use stasis_api::AppState;
use stasis_shared::db::users::User;
use stasis_shared::Config;
use stasis_testkit::TestEnv;
use tokio_util::sync::CancellationToken;

pub struct Api {
    pub base: String,
    http: Client,
    stop: CancellationToken,
}

impl Api {
    // suites that only need tweaked configurations leave it unused
    #[allow(dead_code)]
    pub async fn start(env: &TestEnv) -> Self {
        Self::start_with(env, |_| {}).await
    }

    /// The API with `tweak` applied to the environment's configuration.
    pub async fn start_with(env: &TestEnv, tweak: impl FnOnce(&mut Config)) -> Self {
        let mut cfg = env.cfg.clone();
        // Most suites sync one mirror back to back and wait for each sync; coalesce.rs
        // tests the minimum interval between manual syncs itself.
        cfg.mirror.min_manual_interval = std::time::Duration::ZERO;
        tweak(&mut cfg);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let stop = CancellationToken::new();
        let signal = stop.clone();
        let cipher = cfg.secrets.cipher().expect("valid secrets.key");
        let state = AppState::new(cfg, env.pool.clone(), env.redis.clone(), cipher);
        tokio::spawn(stasis_api::serve(listener, state, async move {
            signal.cancelled().await
        }));
        Self {
            base,
            http: Client::new(),
            stop,
        }
    }

    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self
            .http
            .request(method.parse().unwrap(), format!("{}{path}", self.base));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status();
        let body = resp.json::<Value>().await.unwrap_or(Value::Null);
        (status, body)
    }
}

/// The users the suites act as: alice owns the mirrors, mallory is another signed-in
/// user (refused what only the owner may do) and root is an admin. Their bearer tokens,
/// and alice's row for fixtures that create her mirrors directly.
// each suite reads the users it needs
#[allow(dead_code)]
pub struct Users {
    pub owner: User,
    pub alice: String,
    pub mallory: String,
    pub root: String,
}

#[allow(dead_code)]
impl Users {
    pub async fn create(env: &TestEnv) -> Self {
        let (owner, alice) = env.user("alice", false).await;
        let (_, mallory) = env.user("mallory", false).await;
        let (_, root) = env.user("root", true).await;
        Self {
            owner,
            alice,
            mallory,
            root,
        }
    }
}

impl Drop for Api {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}
