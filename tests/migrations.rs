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

/// A database from before named storages (every migration up to the one that adds them)
/// with a mirror and its pending job: migrated, the mirror is on `default`, the storage
/// `storage.root` stands for, whose lanes keep the names they had, and processes start.
#[tokio::test]
async fn a_database_from_before_storages_has_every_mirror_on_the_default_storage() {
    const STORAGES: i64 = 20261209000001;
    let env = TestEnv::new().await;
    let old = format!(
        "{}_old",
        env.cfg
            .database
            .url
            .rsplit('/')
            .next()
            .unwrap()
            .split('?')
            .next()
            .unwrap()
    );
    sqlx::query(&format!("CREATE DATABASE {old}"))
        .execute(&env.pool)
        .await
        .unwrap();
    let mut cfg = env.cfg.clone();
    let (base, rest) = cfg.database.url.rsplit_once('/').unwrap();
    let query = rest
        .split_once('?')
        .map_or(String::new(), |(_, q)| format!("?{q}"));
    cfg.database.url = format!("{base}/{old}{query}");
    let pool = db::connect(&cfg.database).await.unwrap();
    let before = sqlx::migrate::Migrator {
        migrations: std::borrow::Cow::Owned(
            db::MIGRATOR
                .migrations
                .iter()
                .filter(|m| m.version < STORAGES)
                .cloned()
                .collect(),
        ),
        ..sqlx::migrate::Migrator::DEFAULT
    };
    before.run(&pool).await.unwrap();
    let user: uuid::Uuid = sqlx::query_scalar(
        "INSERT INTO users (id, username, is_admin) VALUES (gen_random_uuid(), 'old', false)
         RETURNING id",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    let repo: uuid::Uuid = sqlx::query_scalar(
        "INSERT INTO repositories (id, owner_id, name, is_mirror, mirror_url)
         VALUES (gen_random_uuid(), $1, 'kept', true, 'git://127.0.0.1/x') RETURNING id",
    )
    .bind(user)
    .fetch_one(&pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO sync_jobs (id, repo_id, reason, max_attempts) VALUES (gen_random_uuid(), $1, 'manual', 3)",
    )
    .bind(repo)
    .execute(&pool)
    .await
    .unwrap();

    db::migrate(&pool).await.expect("migrates");
    let (storage, move_to): (String, Option<String>) =
        sqlx::query_as("SELECT storage, move_to FROM repositories WHERE id = $1")
            .bind(repo)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!((storage.as_str(), move_to), ("default", None));
    // `storage.root` alone is the storage `default`: the start-up check passes, and its
    // lanes are the ones deliveries were in
    stasis_shared::ops::process::refuse_missing_storages(&cfg, &pool)
        .await
        .expect("an upgraded database starts");
    let ns = &cfg.queue.namespace;
    for lane in stasis_shared::domain::Lane::ALL {
        assert_eq!(
            stasis_shared::queue::queue_name(ns, "default", lane),
            format!("{ns}:{}", lane.suffix())
        );
    }
    // and naming storages without `default` while mirrors are on it is refused
    let mut named = cfg.clone();
    named.storage.storages.insert(
        "a".into(),
        stasis_shared::config::NamedStorage {
            root: env.dir.path().join("a"),
            weight: 1,
            read_only: false,
        },
    );
    let refused = stasis_shared::ops::process::refuse_missing_storages(&named, &pool)
        .await
        .expect_err("a storage holding mirrors left out");
    let text = refused.to_string();
    assert!(text.contains("`default` (1 mirrors)"), "{text}");
    pool.close().await;
    // a closed connection's backend ends a moment later: FORCE does not wait on it
    sqlx::query(&format!("DROP DATABASE {old} WITH (FORCE)"))
        .execute(&env.pool)
        .await
        .unwrap();
}
