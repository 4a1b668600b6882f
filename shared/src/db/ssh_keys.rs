//! A mirror's ssh keys: its deploy key (the private half sealed) and the upstream host
//! keys its owner confirmed. A change to either is a fresh start for the mirror, as a
//! new upstream URL is: failures forgotten, scheduled again, due now.

use sqlx::PgPool;
use uuid::Uuid;

use crate::ssh::HostKey;

/// Sets (`Some((sealed_private, public))`) or removes (`None`) the deploy key.
pub async fn set_deploy_key(
    pool: &PgPool,
    repo_id: Uuid,
    key: Option<(&str, &str)>,
) -> sqlx::Result<()> {
    let (sealed, public) = key.unzip();
    let mut tx = pool.begin().await?;
    sqlx::query(
        "UPDATE repositories SET ssh_private_key = $2, ssh_public_key = $3,
             next_sync_at = now(), consecutive_failures = 0, interval_factor = 1,
             updated_at = now()
         WHERE id = $1",
    )
    .bind(repo_id)
    .bind(sealed)
    .bind(public)
    .execute(&mut *tx)
    .await?;
    crate::domain::lifecycle::operator::new_upstream(&mut tx, repo_id).await?;
    tx.commit().await
}

/// Pins `keys` as the host keys of `host_port` (`host:port` of the mirror's upstream);
/// an empty list pins none.
pub async fn set_host_keys(
    pool: &PgPool,
    repo_id: Uuid,
    keys: &[HostKey],
    host_port: &str,
) -> sqlx::Result<()> {
    let mut tx = pool.begin().await?;
    sqlx::query(
        "UPDATE repositories SET ssh_host_keys = $2, ssh_host_keys_for = $3,
             next_sync_at = now(), consecutive_failures = 0, interval_factor = 1,
             updated_at = now()
         WHERE id = $1",
    )
    .bind(repo_id)
    .bind(sqlx::types::Json(keys))
    .bind((!keys.is_empty()).then_some(host_port))
    .execute(&mut *tx)
    .await?;
    crate::domain::lifecycle::operator::new_upstream(&mut tx, repo_id).await?;
    tx.commit().await
}
