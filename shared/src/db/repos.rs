use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use crate::domain::{JobState, SyncStatus};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Repo {
    pub id: Uuid,
    pub owner_id: Uuid,
    pub owner: String,
    pub name: String,
    pub description: String,
    pub private: bool,
    pub is_mirror: bool,
    pub mirror_url: Option<String>,
    /// User info of the upstream, sealed (see `secrets`).
    pub mirror_credentials: Option<String>,
    /// Shared secret of push webhooks, sealed (see `secrets`).
    pub webhook_secret: Option<String>,
    /// The deploy key's private half (OpenSSH format), sealed (see `secrets`), and its
    /// public half.
    pub ssh_private_key: Option<String>,
    pub ssh_public_key: Option<String>,
    /// Upstream ssh host keys the owner confirmed, and the `host:port` they were
    /// confirmed for.
    pub ssh_host_keys: sqlx::types::Json<Vec<crate::ssh::HostKey>>,
    pub ssh_host_keys_for: Option<String>,
    /// Selective sync: ref patterns kept (empty: all) and left out.
    pub include_refs: Vec<String>,
    pub exclude_refs: Vec<String>,
    pub mirror_enabled: bool,
    /// Download the LFS objects the mirror's new commits point at.
    pub lfs_enabled: bool,
    /// When the first of the LFS objects it lacks is due for another try (`lfs_missing`).
    pub lfs_retry_at: Option<DateTime<Utc>>,
    pub sync_interval_secs: Option<i32>,
    pub last_synced_at: Option<DateTime<Utc>>,
    pub sync_status: SyncStatus,
    pub sync_error: Option<String>,
    pub next_sync_at: Option<DateTime<Utc>>,
    pub last_duration_ms: Option<i64>,
    /// Bytes of its objects on disk, measured after the last sync that wrote.
    pub size_bytes: Option<i64>,
    pub sync_fence: i64,
    /// The storage the mirror lives on, and the one it is moving to.
    pub storage: String,
    pub move_to: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Repo {
    /// The storage whose workers take the mirror's jobs: the target of a move under
    /// way, else its own.
    pub fn route(&self) -> &str {
        self.move_to.as_deref().unwrap_or(&self.storage)
    }
}

/// A repository's columns, as `Repo` reads them (from `r` and its owner `u`): a macro so
/// that every query naming them is one literal, built at compile time.
macro_rules! repo_columns {
    () => {
        "r.id, r.owner_id, u.username AS owner, r.name, r.description,
        r.private, r.is_mirror, r.mirror_url, r.mirror_credentials, r.webhook_secret,
        r.ssh_private_key, r.ssh_public_key, r.ssh_host_keys, r.ssh_host_keys_for,
        r.include_refs, r.exclude_refs, r.mirror_enabled, r.lfs_enabled, r.lfs_retry_at,
        r.sync_interval_secs,
        r.last_synced_at, r.sync_status, r.sync_error, r.next_sync_at, r.last_duration_ms,
        r.size_bytes, r.sync_fence, r.storage, r.move_to, r.created_at, r.updated_at"
    };
}

const SELECT: &str = concat!(
    "SELECT ",
    repo_columns!(),
    " FROM repositories r JOIN users u ON u.id = r.owner_id"
);

pub async fn find(pool: &PgPool, id: Uuid) -> sqlx::Result<Option<Repo>> {
    sqlx::query_as::<_, Repo>(&format!("{SELECT} WHERE r.id = $1"))
        .bind(id)
        .fetch_optional(pool)
        .await
}

/// A repository with its pending or running job, if any, and its last attempt.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RepoWithJob {
    #[sqlx(flatten)]
    pub repo: Repo,
    #[sqlx(flatten)]
    pub job: ActiveJob,
    /// When its latest run started, whatever its outcome.
    pub last_attempt_at: Option<DateTime<Utc>>,
    /// Git LFS objects its commits point at that it does not hold (`lfs_missing`).
    pub lfs_missing_objects: i64,
}

/// A repository's job in flight, as its status shows it (all `None` without one).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ActiveJob {
    #[sqlx(rename = "job_id")]
    pub id: Option<Uuid>,
    #[sqlx(rename = "job_state")]
    pub state: Option<JobState>,
    /// Attempts made so far, and allowed.
    #[sqlx(rename = "job_attempts")]
    pub attempts: Option<i32>,
    #[sqlx(rename = "job_max_attempts")]
    pub max_attempts: Option<i32>,
    /// When it is due: after its backoff, for a retry.
    #[sqlx(rename = "job_run_at")]
    pub run_at: Option<DateTime<Utc>>,
    #[sqlx(rename = "job_last_error")]
    pub last_error: Option<String>,
    /// Due, but waiting in Postgres for room in its lane (or for Redis to be back).
    #[sqlx(rename = "job_waiting_for_queue")]
    pub waiting_for_queue: Option<bool>,
    /// A sync was requested while it ran: a follow-up runs after it.
    #[sqlx(rename = "job_follow_up")]
    pub follow_up: Option<bool>,
}

/// What a status request reads, in one round trip (`$1` owner, `$2` name): the status
/// endpoint is the one pollers and UIs hammer. Public so that `stasis-bench history`
/// explains this text.
pub const STATUS: &str = concat!(
    "SELECT ",
    repo_columns!(),
    ", j.id AS job_id, j.state AS job_state, j.attempts AS job_attempts,
           j.max_attempts AS job_max_attempts, j.run_at AS job_run_at,
           j.last_error AS job_last_error,
           j.state = 'pending' AND NOT j.in_queue AND j.run_at <= now() AS job_waiting_for_queue,
           j.follow_up_reason IS NOT NULL AS job_follow_up,
           (SELECT COALESCE(s.last_checked_at, s.started_at) FROM sync_runs s
            WHERE s.repo_id = r.id ORDER BY s.started_at DESC, s.id DESC LIMIT 1)
               AS last_attempt_at,
           (SELECT count(*) FROM lfs_missing m WHERE m.repo_id = r.id) AS lfs_missing_objects
         FROM repositories r JOIN users u ON u.id = r.owner_id
         LEFT JOIN sync_jobs j ON j.repo_id = r.id AND ",
    crate::job_active!("j"),
    " WHERE u.username = $1 AND r.name = $2"
);

pub async fn find_with_active_job(
    pool: &PgPool,
    owner: &str,
    name: &str,
) -> sqlx::Result<Option<RepoWithJob>> {
    sqlx::query_as::<_, RepoWithJob>(STATUS)
        .bind(owner)
        .bind(name)
        .fetch_optional(pool)
        .await
}

/// A job with its repository, as a worker reads them for a delivery.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RepoForJob {
    #[sqlx(flatten)]
    pub repo: Repo,
    pub job_state: JobState,
    /// When the job is due: its enqueue, or the end of its retry backoff.
    pub job_run_at: DateTime<Utc>,
    pub job_max_attempts: i32,
}

/// What every delivery reads first, in one round trip: a no-op sync is mostly round
/// trips.
pub async fn find_for_job(pool: &PgPool, job_id: Uuid) -> sqlx::Result<Option<RepoForJob>> {
    const QUERY: &str = concat!(
        "SELECT ",
        repo_columns!(),
        ", j.state AS job_state, j.run_at AS job_run_at, j.max_attempts AS job_max_attempts
         FROM sync_jobs j JOIN repositories r ON r.id = j.repo_id
             JOIN users u ON u.id = r.owner_id
         WHERE j.id = $1"
    );
    sqlx::query_as::<_, RepoForJob>(QUERY)
        .bind(job_id)
        .fetch_optional(pool)
        .await
}

/// The storage each of `ids`' jobs go to ([`Repo::route`]); a repository that is gone
/// is not in the answer.
pub async fn routes(
    pool: &PgPool,
    ids: &[Uuid],
) -> sqlx::Result<std::collections::HashMap<Uuid, String>> {
    let rows: Vec<(Uuid, String)> = sqlx::query_as(
        "SELECT id, COALESCE(move_to, storage) FROM repositories WHERE id = ANY($1)",
    )
    .bind(ids)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().collect())
}

pub async fn find_by_name(pool: &PgPool, owner: &str, name: &str) -> sqlx::Result<Option<Repo>> {
    sqlx::query_as::<_, Repo>(&format!("{SELECT} WHERE u.username = $1 AND r.name = $2"))
        .bind(owner)
        .bind(name)
        .fetch_optional(pool)
        .await
}

#[derive(Debug, Clone)]
pub struct NewRepo<'a> {
    pub owner_id: Uuid,
    pub name: &'a str,
    pub description: &'a str,
    pub private: bool,
    pub is_mirror: bool,
    /// Without credentials.
    pub clone_url: &'a str,
    /// Sealed user info split off the clone URL.
    pub credentials: Option<String>,
    pub sync_interval_secs: Option<i32>,
    /// Selective sync (patterns already validated).
    pub include_refs: &'a [String],
    pub exclude_refs: &'a [String],
    /// The storage it is placed on.
    pub storage: &'a str,
}

/// Inserts the repository; a taken name surfaces as a unique violation.
pub async fn create<'e, E>(executor: E, new: &NewRepo<'_>) -> sqlx::Result<Uuid>
where
    E: sqlx::PgExecutor<'e>,
{
    sqlx::query_scalar(
        "INSERT INTO repositories (id, owner_id, name, description, private, is_mirror,
             mirror_url, mirror_credentials, sync_interval_secs, include_refs, exclude_refs,
             storage)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING id",
    )
    .bind(Uuid::new_v4())
    .bind(new.owner_id)
    .bind(new.name)
    .bind(new.description)
    .bind(new.private)
    .bind(new.is_mirror)
    .bind(new.clone_url)
    .bind(&new.credentials)
    .bind(new.sync_interval_secs)
    .bind(new.include_refs)
    .bind(new.exclude_refs)
    .bind(new.storage)
    .fetch_one(executor)
    .await
}

/// What a listing of repositories filters by; `None`/`false` matches everything.
#[derive(Debug, Clone, Default)]
pub struct RepoFilter {
    /// `Some(true)`: mirrors only; `Some(false)`: other repositories only.
    pub mirror: Option<bool>,
    /// Any of these statuses; empty matches every status.
    pub status: Vec<SyncStatus>,
    pub owner: Option<String>,
    /// The upstream's host, lowercase.
    pub host: Option<String>,
    /// A substring of `owner/name`, case-insensitive.
    pub search: Option<String>,
    /// Mirrors on this storage (or moving to it).
    pub storage: Option<String>,
    pub viewer: Viewer,
}

/// A state's place in the `status` order, the most urgent first.
macro_rules! status_rank {
    () => {
        "array_position(ARRAY['hard_failed','failed','syncing','queued','idle','success'], r.sync_status)"
    };
}

/// The order of a listing. Each ends with `owner/name`, unique, so the order is total
/// and pages by offset neither repeat nor skip a repository that did not move.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RepoSort {
    /// `owner/name`, A to Z (`-name`: Z to A).
    #[default]
    Name,
    NameDesc,
    /// The most urgent first: `hard_failed`, `failed`, `syncing`, `queued`, `idle`,
    /// `success` (`-status`: the reverse).
    Status,
    StatusDesc,
    /// The oldest last success first, never-synced mirrors before all
    /// (`-last_success`: the newest first, never-synced last).
    LastSuccess,
    LastSuccessDesc,
    /// The soonest next sync first, unscheduled mirrors last (`-next_sync`: the
    /// latest first, unscheduled first).
    NextSync,
    NextSyncDesc,
}

impl RepoSort {
    /// Every value a listing's `sort` takes, as the API spells it.
    pub const NAMES: [&'static str; 8] = [
        "name",
        "-name",
        "status",
        "-status",
        "last_success",
        "-last_success",
        "next_sync",
        "-next_sync",
    ];

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "name" => Self::Name,
            "-name" => Self::NameDesc,
            "status" => Self::Status,
            "-status" => Self::StatusDesc,
            "last_success" => Self::LastSuccess,
            "-last_success" => Self::LastSuccessDesc,
            "next_sync" => Self::NextSync,
            "-next_sync" => Self::NextSyncDesc,
            _ => return None,
        })
    }

    /// The `ORDER BY` list: one literal per value, never built from the request.
    fn order_by(self) -> &'static str {
        match self {
            Self::Name => "u.username, r.name",
            Self::NameDesc => "u.username DESC, r.name DESC",
            Self::Status => concat!(status_rank!(), ", u.username, r.name"),
            Self::StatusDesc => concat!(status_rank!(), " DESC, u.username, r.name"),
            Self::LastSuccess => "r.last_synced_at ASC NULLS FIRST, u.username, r.name",
            Self::LastSuccessDesc => "r.last_synced_at DESC NULLS LAST, u.username, r.name",
            Self::NextSync => "r.next_sync_at ASC NULLS LAST, u.username, r.name",
            Self::NextSyncDesc => "r.next_sync_at DESC NULLS FIRST, u.username, r.name",
        }
    }
}

/// The host of a mirror's upstream URL, as the `repositories_upstream_host` index has it:
/// the filter must use the same expression for the index to serve it.
pub const UPSTREAM_HOST: &str =
    "lower(substring(r.mirror_url from '^[A-Za-z][A-Za-z0-9+.-]*://(?:[^@/]*@)?(\\[[^]/]*\\]|[^:/?#]+)'))";

/// `text` as a literal part of an `ILIKE` pattern.
fn like_literal(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('%');
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('%');
    out
}

/// Who is looking: private repositories are listed only for their owner and admins.
#[derive(Debug, Clone, Copy, Default)]
pub enum Viewer {
    /// Admins and operators.
    All,
    /// Public repositories, and private ones of this user if any.
    #[default]
    Anonymous,
    User(Uuid),
}

/// One page of repositories ordered by owner and name, and how many match in all.
pub async fn list(
    pool: &PgPool,
    filter: &RepoFilter,
    sort: RepoSort,
    limit: i64,
    offset: i64,
) -> sqlx::Result<(Vec<Repo>, i64)> {
    let mut tx = super::snapshot(pool).await?;
    let filtered = format!(
        "WHERE ($1::boolean IS NULL OR r.is_mirror = $1) AND (cardinality($2::text[]) = 0 OR r.sync_status = ANY($2))
        AND ($3::text IS NULL OR u.username = $3)
        AND (NOT r.private OR $4 OR r.owner_id = $5)
        AND ($6::text IS NULL OR {UPSTREAM_HOST} = $6)
        AND ($7::text IS NULL OR (u.username || '/' || r.name) ILIKE $7)
        AND ($8::text IS NULL OR r.storage = $8 OR r.move_to = $8)"
    );
    let host = filter.host.as_deref().map(str::to_lowercase);
    let search = filter.search.as_deref().map(like_literal);
    let status: Vec<&str> = filter.status.iter().map(|s| s.as_str()).collect();
    let (is_admin, viewer_id) = match filter.viewer {
        Viewer::All => (true, None),
        Viewer::Anonymous => (false, None),
        Viewer::User(id) => (false, Some(id)),
    };
    let repos = sqlx::query_as::<_, Repo>(&format!(
        "{SELECT} {filtered} ORDER BY {} LIMIT $9 OFFSET $10",
        sort.order_by()
    ))
    .bind(filter.mirror)
    .bind(&status)
    .bind(filter.owner.as_deref())
    .bind(is_admin)
    .bind(viewer_id)
    .bind(&host)
    .bind(&search)
    .bind(filter.storage.as_deref())
    .bind(limit)
    .bind(offset)
    .fetch_all(&mut *tx)
    .await?;
    let total = sqlx::query_scalar(&format!(
        "SELECT count(*) FROM repositories r JOIN users u ON u.id = r.owner_id {filtered}"
    ))
    .bind(filter.mirror)
    .bind(status)
    .bind(filter.owner.as_deref())
    .bind(is_admin)
    .bind(viewer_id)
    .bind(&host)
    .bind(&search)
    .bind(filter.storage.as_deref())
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok((repos, total))
}

/// A mirror's settings as its owner changes them; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct MirrorSettings {
    /// `Some(None)` returns to the default interval.
    pub sync_interval_secs: Option<Option<i32>>,
    pub enabled: Option<bool>,
    /// Git LFS objects downloaded after syncs, or not.
    pub lfs: Option<bool>,
    /// New upstream, without credentials.
    pub upstream: Option<String>,
    /// `Some(None)` removes the upstream's credentials; `Some(Some(sealed))` sets them.
    pub credentials: Option<Option<String>>,
    /// `Some(None)` removes the webhook secret; `Some(Some(sealed))` sets it.
    pub webhook_secret: Option<Option<String>>,
    /// New ref selection (patterns already validated).
    pub include_refs: Option<Vec<String>>,
    pub exclude_refs: Option<Vec<String>>,
}

/// Applies the settings. A new interval (its own, or back to the default
/// `default_interval` unless overridden at run time) starts afresh: the stretch of
/// unchanged syncs is forgotten, and a shorter one brings the next sync forward, so a
/// mirror moved from daily to hourly does not wait out the old day. An unscheduled
/// (hard-failed) mirror stays unscheduled.
pub async fn update_mirror(
    pool: &PgPool,
    id: Uuid,
    s: &MirrorSettings,
    default_interval: std::time::Duration,
) -> sqlx::Result<()> {
    let url = &s.upstream;
    // new credentials are a fresh start, as a new upstream is
    let fresh = url.is_some() || s.credentials.is_some();
    let mut tx = pool.begin().await?;
    sqlx::query(
        "UPDATE repositories SET
             sync_interval_secs = CASE WHEN $2 THEN $3 ELSE sync_interval_secs END,
             -- a new upstream is due now; a shorter interval brings the next sync forward
             next_sync_at = CASE WHEN $14 THEN now()
                 WHEN $2 AND next_sync_at IS NOT NULL
                 THEN LEAST(next_sync_at, COALESCE(last_synced_at, now()) + make_interval(
                     secs => COALESCE($3::double precision,
                         (SELECT value::double precision FROM settings WHERE key = $11), $12)))
                 ELSE next_sync_at END,
             mirror_enabled = COALESCE($4, mirror_enabled),
             mirror_url = COALESCE($5, mirror_url),
             mirror_credentials = CASE WHEN $15 THEN $6 ELSE mirror_credentials END,
             -- and a fresh start: failures forgotten, scheduled again
             consecutive_failures = CASE WHEN $14 THEN 0 ELSE consecutive_failures END,
             interval_factor = CASE WHEN $14 OR $2 THEN 1 ELSE interval_factor END,
             webhook_secret = CASE WHEN $7 THEN $8 ELSE webhook_secret END,
             include_refs = COALESCE($9, include_refs),
             exclude_refs = COALESCE($10, exclude_refs),
             lfs_enabled = COALESCE($13, lfs_enabled),
             updated_at = now()
         WHERE id = $1",
    )
    .bind(id)
    .bind(s.sync_interval_secs.is_some())
    .bind(s.sync_interval_secs.flatten())
    .bind(s.enabled)
    .bind(url)
    .bind(s.credentials.clone().flatten())
    .bind(s.webhook_secret.is_some())
    .bind(s.webhook_secret.clone().flatten())
    .bind(&s.include_refs)
    .bind(&s.exclude_refs)
    .bind(super::settings::SYNC_INTERVAL)
    .bind(default_interval.as_secs_f64())
    .bind(s.lfs)
    .bind(fresh)
    .bind(s.credentials.is_some())
    .execute(&mut *tx)
    .await?;
    if fresh {
        crate::domain::lifecycle::operator::new_upstream(&mut tx, id).await?;
    }
    if s.lfs == Some(false) {
        super::lfs_missing::forget_in(&mut tx, id).await?;
    }
    tx.commit().await
}

pub async fn delete(pool: &PgPool, id: Uuid) -> sqlx::Result<bool> {
    let done = sqlx::query("DELETE FROM repositories WHERE id = $1")
        .bind(id)
        .execute(pool)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Whether any mirror has sealed credentials, a deploy key or a webhook secret: then `secrets.key`
/// is required.
pub(crate) async fn any_credentials(pool: &PgPool) -> sqlx::Result<bool> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM repositories
                        WHERE mirror_credentials IS NOT NULL OR webhook_secret IS NOT NULL
                           OR ssh_private_key IS NOT NULL)",
    )
    .fetch_one(pool)
    .await
}

/// Mirrors per sync status, for the `stasis_mirrors` gauge.
pub async fn mirrors_by_status(pool: &PgPool) -> sqlx::Result<Vec<(SyncStatus, i64)>> {
    sqlx::query_as("SELECT sync_status, count(*) FROM repositories WHERE is_mirror GROUP BY 1")
        .fetch_all(pool)
        .await
}

/// Mirrors shown as queued or syncing for longer than `older_than` with no pending or
/// running job behind them.
pub async fn stuck_without_job(
    pool: &PgPool,
    older_than: std::time::Duration,
    limit: i64,
) -> sqlx::Result<Vec<Uuid>> {
    sqlx::query_scalar(concat!(
        "SELECT r.id FROM repositories r WHERE r.is_mirror AND ",
        crate::repo_in_flight!("r"),
        " AND r.updated_at < now() - make_interval(secs => $1)
           AND NOT EXISTS (SELECT 1 FROM sync_jobs j WHERE j.repo_id = r.id AND ",
        crate::job_active!("j"),
        ") LIMIT $2"
    ))
    .bind(older_than.as_secs_f64())
    .bind(limit)
    .fetch_all(pool)
    .await
}
