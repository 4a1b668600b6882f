//! Upgrading a database whose migrations were applied in an earlier wording of their
//! comments: the record is moved to the current checksums and the migration runs; any
//! other difference from the files is still refused.

use stasis_shared::db::{self, reworded};
use stasis_testkit::TestEnv;

async fn checksum(env: &TestEnv, version: i64) -> Vec<u8> {
    sqlx::query_scalar("SELECT checksum FROM _sqlx_migrations WHERE version = $1")
        .bind(version)
        .fetch_one(&env.pool)
        .await
        .unwrap()
}

async fn record(env: &TestEnv, version: i64, checksum: &[u8]) {
    sqlx::query("UPDATE _sqlx_migrations SET checksum = $2 WHERE version = $1")
        .bind(version)
        .bind(checksum)
        .execute(&env.pool)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_database_migrated_with_earlier_comments_migrates_and_records_the_current_ones() {
    let env = TestEnv::new().await; // migrated with the current files
    let mut current = Vec::new();
    for &(version, earlier) in reworded::EARLIER {
        let now = checksum(&env, version).await;
        assert_ne!(now, hex::decode(earlier).unwrap(), "{version} was reworded");
        record(&env, version, &hex::decode(earlier).unwrap()).await;
        current.push((version, now));
    }
    db::migrate(&env.pool)
        .await
        .expect("an earlier wording is accepted");
    for (version, now) in current {
        assert_eq!(checksum(&env, version).await, now, "{version}");
    }
    // a second start has nothing to move
    db::migrate(&env.pool).await.expect("migrated again");
}

#[tokio::test]
async fn a_migration_that_differs_otherwise_is_still_refused() {
    let env = TestEnv::new().await;
    let (version, _) = reworded::EARLIER[0];
    record(&env, version, &[0u8; 48]).await;
    let refused = db::migrate(&env.pool)
        .await
        .expect_err("a changed migration");
    assert!(
        matches!(refused, sqlx::migrate::MigrateError::VersionMismatch(v) if v == version),
        "{refused:?}"
    );
}
