//! The sync pipeline through real Postgres, Redis and loopback git upstreams, with
//! workers running in this process. One module per concern, one behaviour per test.

mod caps;
mod deliveries;
mod errors;
mod failures;
mod folds;
mod follow;
mod recovery;
mod requests;
mod schedule;
mod selection;

use std::time::Duration;

use stasis_testkit::TestEnv;

const WAIT: Duration = Duration::from_secs(60);

/// Points the mirror at another upstream, behind the API's back.
async fn set_upstream(env: &TestEnv, repo: uuid::Uuid, url: &str) {
    sqlx::query("UPDATE repositories SET mirror_url = $1 WHERE id = $2")
        .bind(url)
        .bind(repo)
        .execute(&env.pool)
        .await
        .unwrap();
}
