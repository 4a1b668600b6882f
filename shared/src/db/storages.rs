//! Named storages as Postgres records them: what each worker reports of the storages
//! it serves (liveness, free space), the moves between storages, and the copies a
//! storage no longer needs.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

/// A worker's report of one storage it serves: it is alive for that storage, and this
/// much space is free there.
pub async fn report(
    pool: &PgPool,
    storage: &str,
    worker: &str,
    free_bytes: u64,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO storage_reports (storage, worker, free_bytes) VALUES ($1, $2, $3)
         ON CONFLICT (storage, worker) DO UPDATE
         SET free_bytes = EXCLUDED.free_bytes, reported_at = now()",
    )
    .bind(storage)
    .bind(worker)
    .bind(free_bytes.min(i64::MAX as u64) as i64)
    .execute(pool)
    .await?;
    Ok(())
}

/// A worker that stops cleanly serves nothing from now on.
pub async fn leave(pool: &PgPool, worker: &str) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM storage_reports WHERE worker = $1")
        .bind(worker)
        .execute(pool)
        .await?;
    Ok(())
}

/// Workers that reported `storage` within `window`.
pub async fn live_workers(pool: &PgPool, storage: &str, window: Duration) -> sqlx::Result<i64> {
    sqlx::query_scalar(
        "SELECT count(*) FROM storage_reports
         WHERE storage = $1 AND reported_at > now() - make_interval(secs => $2)",
    )
    .bind(storage)
    .bind(window.as_secs_f64())
    .fetch_one(pool)
    .await
}

/// One storage as its workers last reported it, with what lives on it.
#[derive(Debug, Clone, Default, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct StorageState {
    pub name: String,
    /// Workers that reported within the liveness window.
    pub live_workers: i64,
    /// Free bytes, as the newest live report says (`None`: no live worker).
    pub free_bytes: Option<i64>,
    /// Mirrors on it (moving away or not).
    pub mirrors: i64,
    /// Bytes of their objects, as last measured.
    pub bytes: i64,
    /// Mirrors moving to it.
    pub moving_in: i64,
}

/// The state of each of `names` (the configured storages), in that order.
pub async fn states(
    pool: &PgPool,
    names: &[String],
    window: Duration,
) -> sqlx::Result<Vec<StorageState>> {
    sqlx::query_as::<_, StorageState>(
        "SELECT n.name,
                (SELECT count(*) FROM storage_reports s
                  WHERE s.storage = n.name
                    AND s.reported_at > now() - make_interval(secs => $2)) AS live_workers,
                (SELECT s.free_bytes FROM storage_reports s
                  WHERE s.storage = n.name
                    AND s.reported_at > now() - make_interval(secs => $2)
                  ORDER BY s.reported_at DESC LIMIT 1) AS free_bytes,
                (SELECT count(*) FROM repositories r WHERE r.storage = n.name) AS mirrors,
                (SELECT COALESCE(sum(r.size_bytes), 0)::bigint FROM repositories r
                  WHERE r.storage = n.name) AS bytes,
                (SELECT count(*) FROM repositories r WHERE r.move_to = n.name) AS moving_in
         FROM unnest($1::text[]) WITH ORDINALITY AS n(name, place)
         ORDER BY n.place",
    )
    .bind(names)
    .bind(window.as_secs_f64())
    .fetch_all(pool)
    .await
}

/// Each of `names` as its live workers last reported it: how many reported within
/// `window`, and the newest report's free bytes. Reports only, nothing counted over the
/// repositories: what an import's placement needs, on every import.
pub async fn liveness(
    pool: &PgPool,
    names: &[String],
    window: Duration,
) -> sqlx::Result<Vec<(String, i64, Option<i64>)>> {
    sqlx::query_as(
        "SELECT n.name, count(s.worker), (array_agg(s.free_bytes ORDER BY s.reported_at DESC))[1]
         FROM unnest($1::text[]) WITH ORDINALITY AS n(name, place)
         LEFT JOIN storage_reports s
           ON s.storage = n.name AND s.reported_at > now() - make_interval(secs => $2)
         GROUP BY n.name, n.place
         ORDER BY n.place",
    )
    .bind(names)
    .bind(window.as_secs_f64())
    .fetch_all(pool)
    .await
}

/// Storages that hold mirrors but are not among `names`: a storage removed from the
/// configuration too early, with how many mirrors are still on it.
pub async fn unknown_in_use(pool: &PgPool, names: &[String]) -> sqlx::Result<Vec<(String, i64)>> {
    sqlx::query_as(
        "SELECT s, count(*) FROM (
             SELECT storage AS s FROM repositories
             UNION ALL SELECT move_to FROM repositories WHERE move_to IS NOT NULL
         ) used
         WHERE NOT (s = ANY($1)) GROUP BY s ORDER BY s",
    )
    .bind(names)
    .fetch_all(pool)
    .await
}

/// A move of one mirror, as operators follow it.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Move {
    pub id: i64,
    /// `owner/name`.
    pub repo: String,
    pub from_storage: String,
    pub to_storage: String,
    /// `pending`, `running`, `done`, `failed` or `cancelled`.
    pub state: String,
    /// Why it failed; its mirror stayed where it was.
    pub error: Option<String>,
    pub requested_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// The states a move goes through.
pub const MOVE_STATES: [&str; 5] = ["pending", "running", "done", "failed", "cancelled"];

/// Up to `limit` moves, newest first, in `state` if given.
pub async fn moves(pool: &PgPool, state: Option<&str>, limit: i64) -> sqlx::Result<Vec<Move>> {
    sqlx::query_as::<_, Move>(
        "SELECT m.id, u.username || '/' || r.name AS repo, m.from_storage, m.to_storage,
                m.state, m.error, m.requested_at, m.started_at, m.finished_at
         FROM storage_moves m JOIN repositories r ON r.id = m.repo_id
         JOIN users u ON u.id = r.owner_id
         WHERE $1::text IS NULL OR m.state = $1
         ORDER BY m.id DESC LIMIT $2",
    )
    .bind(state)
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// Why a move was not begun.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotMoved {
    /// The mirror is on that storage already.
    AlreadyThere,
    /// Another move of it is under way.
    Moving(String),
}

/// Begins moving a mirror to `to`: its jobs go to `to`'s workers from now on, the first
/// of which moves it. The caller requests the sync that does it.
pub async fn begin_move(
    pool: &PgPool,
    repo_id: Uuid,
    to: &str,
) -> sqlx::Result<Option<Result<i64, NotMoved>>> {
    let mut tx = pool.begin().await?;
    let current: Option<(String, Option<String>)> =
        sqlx::query_as("SELECT storage, move_to FROM repositories WHERE id = $1 FOR UPDATE")
            .bind(repo_id)
            .fetch_optional(&mut *tx)
            .await?;
    let Some((storage, move_to)) = current else {
        return Ok(None);
    };
    if let Some(moving) = move_to {
        return Ok(Some(Err(NotMoved::Moving(moving))));
    }
    if storage == to {
        return Ok(Some(Err(NotMoved::AlreadyThere)));
    }
    sqlx::query("UPDATE repositories SET move_to = $2, updated_at = now() WHERE id = $1")
        .bind(repo_id)
        .bind(to)
        .execute(&mut *tx)
        .await?;
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO storage_moves (repo_id, from_storage, to_storage) VALUES ($1, $2, $3)
         RETURNING id",
    )
    .bind(repo_id)
    .bind(&storage)
    .bind(to)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Some(Ok(id)))
}

/// Mirrors a bulk move takes off `from`: owned by `owner` if given, not moving already;
/// at most `limit`, oldest first.
pub async fn movable(
    pool: &PgPool,
    from: &str,
    owner: Option<&str>,
    limit: i64,
) -> sqlx::Result<Vec<Uuid>> {
    sqlx::query_scalar(
        "SELECT r.id FROM repositories r JOIN users u ON u.id = r.owner_id
         WHERE r.move_to IS NULL AND r.storage = $1
           AND ($2::text IS NULL OR u.username = $2)
         ORDER BY r.created_at, r.id LIMIT $3",
    )
    .bind(from)
    .bind(owner)
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// Mirrors on `from` (of `owner`, if given) that are not moving.
pub async fn staying(pool: &PgPool, from: &str, owner: Option<&str>) -> sqlx::Result<i64> {
    sqlx::query_scalar(
        "SELECT count(*) FROM repositories r JOIN users u ON u.id = r.owner_id
         WHERE r.move_to IS NULL AND r.storage = $1 AND ($2::text IS NULL OR u.username = $2)",
    )
    .bind(from)
    .bind(owner)
    .fetch_one(pool)
    .await
}

/// The move under way for a repository, marked as started by a worker.
pub async fn start_move(pool: &PgPool, repo_id: Uuid) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE storage_moves SET state = 'running', started_at = COALESCE(started_at, now())
         WHERE repo_id = $1 AND state IN ('pending', 'running')",
    )
    .bind(repo_id)
    .execute(pool)
    .await?;
    Ok(())
}

/// Switches the mirror to `to` under the lock whose fence is `fence`: `false` when the
/// fence moved on (another holder took over) or the move was withdrawn, and nothing
/// changed. The source copy is left for a worker of `from` to remove.
pub async fn finish_move(pool: &PgPool, repo_id: Uuid, fence: i64, to: &str) -> sqlx::Result<bool> {
    let mut tx = pool.begin().await?;
    let from: Option<(String, String, String)> = sqlx::query_as(
        "UPDATE repositories r SET storage = $3, move_to = NULL, updated_at = now()
         FROM users u, (SELECT storage FROM repositories WHERE id = $1) old
         WHERE r.id = $1 AND u.id = r.owner_id AND r.sync_fence = $2 AND r.move_to = $3
         RETURNING old.storage, u.username, r.name",
    )
    .bind(repo_id)
    .bind(fence)
    .bind(to)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((from, owner, name)) = from else {
        return Ok(false);
    };
    sqlx::query(
        "UPDATE storage_moves SET state = 'done', finished_at = now(), error = NULL
         WHERE repo_id = $1 AND state IN ('pending', 'running')",
    )
    .bind(repo_id)
    .execute(&mut *tx)
    .await?;
    queue_removal(&mut *tx, &from, &owner, &name).await?;
    tx.commit().await?;
    Ok(true)
}

/// A move that could not be completed: the mirror stays where it was, its jobs go to
/// its own storage again.
pub async fn fail_move(pool: &PgPool, repo_id: Uuid, error: &str) -> sqlx::Result<()> {
    let mut tx = pool.begin().await?;
    sqlx::query("UPDATE repositories SET move_to = NULL, updated_at = now() WHERE id = $1")
        .bind(repo_id)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "UPDATE storage_moves SET state = 'failed', finished_at = now(), error = $2
         WHERE repo_id = $1 AND state IN ('pending', 'running')",
    )
    .bind(repo_id)
    .bind(error)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Moves by state: `pending` and `running` ones, and those `failed` in the last day.
pub async fn move_counts(pool: &PgPool) -> sqlx::Result<Vec<(String, i64)>> {
    sqlx::query_as(
        "SELECT state, count(*) FROM storage_moves
         WHERE state IN ('pending', 'running')
            OR (state = 'failed' AND finished_at > now() - interval '1 day')
         GROUP BY state",
    )
    .fetch_all(pool)
    .await
}

/// Records that `storage` no longer needs `<owner>/<name>.git`.
pub async fn queue_removal<'e, E: sqlx::PgExecutor<'e>>(
    executor: E,
    storage: &str,
    owner: &str,
    name: &str,
) -> sqlx::Result<()> {
    sqlx::query("INSERT INTO storage_removals (storage, owner, name) VALUES ($1, $2, $3)")
        .bind(storage)
        .bind(owner)
        .bind(name)
        .execute(executor)
        .await?;
    Ok(())
}

/// A copy to remove.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Removal {
    pub id: i64,
    pub storage: String,
    pub owner: String,
    pub name: String,
    /// A mirror lives at that path on that storage again (or is moving there): the
    /// directory is its own and must stay.
    pub in_use: bool,
}

/// Up to `limit` copies `storages` no longer need, oldest first.
pub async fn removals(
    pool: &PgPool,
    storages: &[String],
    limit: i64,
) -> sqlx::Result<Vec<Removal>> {
    sqlx::query_as::<_, Removal>(
        "SELECT d.id, d.storage, d.owner, d.name,
                EXISTS (SELECT 1 FROM repositories r JOIN users u ON u.id = r.owner_id
                         WHERE u.username = d.owner AND r.name = d.name
                           AND (r.storage = d.storage OR r.move_to = d.storage)) AS in_use
         FROM storage_removals d WHERE d.storage = ANY($1) ORDER BY d.id LIMIT $2",
    )
    .bind(storages)
    .bind(limit)
    .fetch_all(pool)
    .await
}

pub async fn removed(pool: &PgPool, id: i64) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM storage_removals WHERE id = $1")
        .bind(id)
        .execute(pool)
        .await?;
    Ok(())
}
