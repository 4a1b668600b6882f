//! Migrations whose comments were reworded after they shipped. sqlx refuses to start when
//! an applied migration's checksum differs from its file's, so an installation that
//! applied an earlier wording has its record moved to the current one before migrating.
//! Only that exact earlier checksum is moved: any other difference (an edited statement)
//! is still refused by sqlx.

use sqlx::PgConnection;

/// (version, SHA-384 of the earlier wording, hex).
pub const EARLIER: &[(i64, &str)] = &[
    (
        20261125000001,
        "fc2ecada9fd72c334392bae9b30b98f8006708e5afb924270cf2b4577b457c4443247c6148cb87db927f09630e5ae427",
    ),
    (
        20261130000002,
        "bb551794bde6d664de1cfeef3c44422b29a54a92e516111c19cf98428cb1536ef530dff93b42f879707abd1ccef3b9f0",
    ),
];

/// Moves the record of each reworded migration applied in its earlier wording to the
/// current checksum. Nothing to do on a database that has never been migrated.
pub(crate) async fn adopt(conn: &mut PgConnection) -> sqlx::Result<u64> {
    let migrated: bool = sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
        .fetch_one(&mut *conn)
        .await?;
    if !migrated {
        return Ok(0);
    }
    let mut adopted = 0;
    for &(version, earlier) in EARLIER {
        let Some(current) = super::MIGRATOR.iter().find(|m| m.version == version) else {
            continue;
        };
        let earlier = hex::decode(earlier).expect("a SHA-384 in hex");
        adopted += sqlx::query(
            "UPDATE _sqlx_migrations SET checksum = $3 WHERE version = $1 AND checksum = $2",
        )
        .bind(version)
        .bind(earlier)
        .bind(current.checksum.as_ref())
        .execute(&mut *conn)
        .await?
        .rows_affected();
    }
    Ok(adopted)
}
