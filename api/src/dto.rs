//! Request and response bodies. Field names are the Stasis contract (docs/contract.md).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize};
use stasis_shared::db::repos::ActiveJob;
use stasis_shared::db::repos::Repo;
use stasis_shared::domain::{JobState, PublicStatus, SyncStatus};
use stasis_shared::git::url::redact_url;
use stasis_shared::progress::SyncProgress;
use stasis_shared::ssh::deploy_key::public_fingerprint;
use stasis_shared::ssh::HostKey;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::error::ApiError;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "name": "linux", "clone_url": "https://git.kernel.org/pub/scm/linux/kernel/git/torvalds/linux.git",
    "mirror": true, "private": false, "sync_interval": "2h", "exclude_refs": ["refs/pull/*"]
}))]
pub struct ImportRequest {
    /// Letters, digits, `.`, `-`, `_`; 1 to 100 characters.
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = "^[A-Za-z0-9_][A-Za-z0-9._-]*$"
    )]
    pub name: String,
    /// http, https, git or ssh; credentials in it are stored sealed and never shown.
    /// Stored in canonical form (lowercase host, no default port); no query or fragment.
    #[schema(min_length = 1, max_length = 2048)]
    pub clone_url: String,
    /// http(s) upstreams: credentials as fields rather than in `clone_url` (not both).
    #[serde(default)]
    pub credentials: Option<Credentials>,
    #[serde(default)]
    pub mirror: bool,
    /// At most 1,000 characters.
    #[serde(default)]
    #[schema(max_length = 1000)]
    pub description: Option<String>,
    #[serde(default)]
    pub private: Option<bool>,
    /// This mirror's interval (`30m`, `2h`), at least `mirror.min_sync_interval`;
    /// at most `mirror.max_sync_interval`; otherwise the default interval applies.
    #[serde(default)]
    #[schema(max_length = 64)]
    pub sync_interval: Option<String>,
    /// Mirrors: selective sync from the first fetch on, so an import never downloads
    /// what it would prune (e.g. `refs/pull/*`); the rules of the mirror settings.
    #[serde(default)]
    #[schema(max_items = 50)]
    pub include_refs: Option<Vec<String>>,
    #[serde(default)]
    #[schema(max_items = 50)]
    pub exclude_refs: Option<Vec<String>>,
    /// Admins only: the named storage to place the mirror on (otherwise one is chosen
    /// by weight among the storages taking new mirrors).
    #[serde(default)]
    #[schema(max_length = 32)]
    pub storage: Option<String>,
}

/// An upstream's credentials as fields: a user name with a password or a token (one
/// of the two). Stored sealed apart from the URL; never returned or logged.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"username": "x-access-token", "token": "ghp_…"}))]
pub struct Credentials {
    /// 1 to 256 characters.
    #[schema(min_length = 1, max_length = 256)]
    pub username: String,
    /// 1 to 4,096 characters.
    #[schema(min_length = 1, max_length = 4096)]
    pub password: Option<String>,
    /// An access token, in place of a password (1 to 4,096 characters).
    #[schema(min_length = 1, max_length = 4096)]
    pub token: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// `PATCH /repos/{owner}/{repo}`: a new name, as Gitea's "edit repository" takes it.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RenameRequest {
    /// The same rules as an import's name.
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = "^[A-Za-z0-9_][A-Za-z0-9._-]*$"
    )]
    pub name: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RepoResponse {
    pub id: Uuid,
    pub owner: String,
    pub name: String,
    pub full_name: String,
    pub description: String,
    pub private: bool,
    pub is_mirror: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mirror_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_synced_at: Option<DateTime<Utc>>,
    /// One of four values that every client of this API has always known: `idle`,
    /// `syncing`, `success`, `failed`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sync_status: Option<PublicStatus>,
    /// The full state: also `queued` (waiting for a worker) and `hard_failed` (failed
    /// too often, or for good: no longer scheduled).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sync_state: Option<SyncStatus>,
    /// Mirrors only: the last failure's message, absent when the last sync did not fail.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sync_error: Option<String>,
    /// Mirrors only: when the next scheduled sync is due; absent when none is scheduled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_sync_at: Option<DateTime<Utc>>,
    /// Mirrors only: scheduled syncs on or paused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mirror_enabled: Option<bool>,
    /// Mirrors only: Git LFS objects are downloaded after syncs (`lfs` in the settings).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lfs_enabled: Option<bool>,
    /// Mirrors only: this mirror's own interval in seconds; absent means the default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sync_interval_seconds: Option<i32>,
    /// Mirrors only: a webhook secret is set (the secret itself is never shown).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook_configured: Option<bool>,
    /// Mirrors: whether credentials for the upstream are stored (they are never shown).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credentials_configured: Option<bool>,
    /// Mirrors only: the public half of the mirror's ssh deploy key, when it has one
    /// (the private half is never shown).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deploy_key: Option<DeployKeyView>,
    /// Mirrors only: the upstream ssh host keys its owner confirmed (`[]`: none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ssh_host_keys: Option<Vec<HostKey>>,
    /// Mirrors only: the ref selection (empty `include_refs`: every ref).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub include_refs: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exclude_refs: Option<Vec<String>>,
    /// The named storage the repository lives on.
    pub storage: String,
    /// The storage it is moving to, while a move is under way.
    pub moving_to: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<&Repo> for RepoResponse {
    fn from(r: &Repo) -> Self {
        Self {
            id: r.id,
            owner: r.owner.clone(),
            name: r.name.clone(),
            full_name: format!("{}/{}", r.owner, r.name),
            description: r.description.clone(),
            private: r.private,
            is_mirror: r.is_mirror,
            mirror_url: shown_url(r),
            last_synced_at: r.last_synced_at,
            sync_status: Some(r.sync_status.public()),
            sync_state: Some(r.sync_status),
            sync_error: r
                .sync_error
                .clone()
                .filter(|e| r.is_mirror && !e.is_empty()),
            next_sync_at: r.next_sync_at.filter(|_| r.is_mirror),
            mirror_enabled: r.is_mirror.then_some(r.mirror_enabled),
            lfs_enabled: r.is_mirror.then_some(r.lfs_enabled),
            sync_interval_seconds: r.sync_interval_secs.filter(|_| r.is_mirror),
            webhook_configured: r.is_mirror.then_some(r.webhook_secret.is_some()),
            credentials_configured: r.is_mirror.then_some(r.mirror_credentials.is_some()),
            deploy_key: DeployKeyView::of(r),
            ssh_host_keys: r.is_mirror.then(|| r.ssh_host_keys.0.clone()),
            include_refs: r.is_mirror.then(|| r.include_refs.clone()),
            exclude_refs: r.is_mirror.then(|| r.exclude_refs.clone()),
            storage: r.storage.clone(),
            moving_to: r.move_to.clone(),
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

/// Only mirrors expose their upstream, never with its credentials (stored apart: the
/// response says whether there are any).
fn shown_url(r: &Repo) -> Option<String> {
    let url = r.mirror_url.as_deref().filter(|_| r.is_mirror)?;
    Some(redact_url(url))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RepoPage {
    pub repos: Vec<RepoResponse>,
    pub page: u32,
    pub per_page: u32,
    pub total: i64,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RepoQuery {
    /// Only mirrors (`true`) or only other repositories (`false`).
    pub mirror: Option<bool>,
    /// A `sync_status` (idle, syncing, success, failed: `syncing` includes `queued`,
    /// `failed` includes `hard_failed`) or one exact `sync_state` (queued, hard_failed).
    #[param(pattern = "^(idle|queued|syncing|success|failed|hard_failed)$")]
    pub sync_status: Option<String>,
    /// Mirrors whose upstream is on this host (case-insensitive), e.g. `github.com`.
    #[param(max_length = 253)]
    pub host: Option<String>,
    /// Repositories whose `owner/name` contains this text (case-insensitive).
    #[param(max_length = 100)]
    pub q: Option<String>,
    /// Mirrors on this storage, or moving to it.
    #[param(max_length = 32)]
    pub storage: Option<String>,
    /// The order: `name` (`owner/name`, the default), `status` (failing first:
    /// hard_failed, failed, syncing, queued, idle, success), `last_success` (the oldest
    /// first, never synced before all) or `next_sync` (the soonest first, unscheduled
    /// last); a leading `-` reverses it. Ties go by `owner/name`, so pages neither
    /// repeat nor skip a repository that did not move between them.
    #[param(
        pattern = "^-?(name|status|last_success|next_sync)$",
        example = "status"
    )]
    pub sort: Option<String>,
    /// From 1.
    #[param(minimum = 1)]
    pub page: Option<u32>,
    /// 1 to 100, 30 by default.
    #[param(minimum = 1, maximum = 100)]
    pub per_page: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MirrorStatus {
    pub is_mirror: bool,
    pub mirror_url: String,
    /// The last successful sync.
    pub last_synced_at: Option<DateTime<Utc>>,
    /// When the latest attempt started, whatever its outcome.
    pub last_attempt_at: Option<DateTime<Utc>>,
    /// One of four values that every client of this API has always known: `idle`,
    /// `syncing`, `success`, `failed`.
    pub sync_status: PublicStatus,
    /// The full state: also `queued` and `hard_failed`.
    pub sync_state: SyncStatus,
    pub sync_error: String,
    pub next_sync_at: Option<DateTime<Utc>>,
    pub last_duration_ms: Option<i64>,
    /// Bytes the mirror's objects take on disk, as of its last sync that wrote.
    pub size_bytes: Option<i64>,
    /// Git LFS objects the mirror's commits point at that it does not hold (a download
    /// failed, or the object is past a limit): later syncs try them again with backoff
    /// (`lfs.retry_base_delay`), and `POST …/sync?lfs_retry=true` at once. 0 when it
    /// holds them all or LFS is off for it.
    pub lfs_missing_objects: i64,
    /// The pending or running job, if any.
    pub job_id: Option<Uuid>,
    /// That job: its attempts so far and allowed, when it runs (after a failed attempt:
    /// its next retry) and its last error.
    pub job: Option<JobSummary>,
    /// While that job's fetch downloads: objects and bytes received against the total,
    /// then deltas resolved, as the worker last published them (about once a second).
    /// `null` otherwise, and while the worker has nothing to report yet.
    pub progress: Option<SyncProgress>,
    /// The named storage the mirror lives on, and the one it is moving to.
    pub storage: String,
    pub moving_to: Option<String>,
    /// Why the pending job cannot run now, when no worker serves the storage it goes to
    /// (e.g. `storage b has no live worker`): it runs once one is back. `null` otherwise.
    pub waiting_for_storage: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct JobSummary {
    pub id: Uuid,
    pub state: JobState,
    pub attempts: i32,
    pub max_attempts: i32,
    pub run_at: DateTime<Utc>,
    pub last_error: Option<String>,
    /// Due, but waiting for room in the queue (or for the queue to be reachable): it is
    /// recorded and runs as soon as it is admitted, oldest first and fair across owners.
    pub waiting_for_queue: bool,
    /// A sync was requested while this one ran: a follow-up sync runs after it.
    pub follow_up: bool,
}

impl JobSummary {
    fn of(job: &ActiveJob) -> Option<Self> {
        Some(Self {
            id: job.id?,
            state: job.state?,
            attempts: job.attempts?,
            max_attempts: job.max_attempts?,
            run_at: job.run_at?,
            last_error: job.last_error.clone(),
            waiting_for_queue: job.waiting_for_queue.unwrap_or(false),
            follow_up: job.follow_up.unwrap_or(false),
        })
    }
}

impl MirrorStatus {
    pub fn new(
        r: &Repo,
        job: &ActiveJob,
        last_attempt_at: Option<DateTime<Utc>>,
        lfs_missing_objects: i64,
    ) -> Self {
        Self {
            is_mirror: r.is_mirror,
            mirror_url: shown_url(r).unwrap_or_default(),
            last_synced_at: r.last_synced_at,
            last_attempt_at,
            sync_status: r.sync_status.public(),
            sync_state: r.sync_status,
            sync_error: r.sync_error.clone().unwrap_or_default(),
            next_sync_at: r.next_sync_at,
            last_duration_ms: r.last_duration_ms,
            size_bytes: r.size_bytes,
            lfs_missing_objects,
            job_id: job.id,
            job: JobSummary::of(job),
            progress: None,
            storage: r.storage.clone(),
            moving_to: r.move_to.clone(),
            waiting_for_storage: None,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SyncAccepted {
    pub message: &'static str,
    /// Always `syncing`: the sync is asked for (see `sync_state` for where it is).
    pub status: PublicStatus,
    /// The mirror's full state now (`queued` until a worker takes the job).
    pub sync_state: SyncStatus,
    pub job_id: Uuid,
    /// When the job runs: later than now when the mirror synced less than
    /// `mirror.min_manual_interval` ago (requests within that window share one sync).
    pub next_run_at: chrono::DateTime<chrono::Utc>,
    /// The mirror's sync was already running: another sync runs after it (one, however
    /// many requests arrive meanwhile), so the mirror ends at least as new as the
    /// upstream was at this request.
    pub follow_up: bool,
    /// Accepted and recorded, but waiting for room in the queue (or for the queue to be
    /// reachable): it runs as soon as it is admitted.
    pub waiting_for_queue: bool,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SyncQuery {
    /// Admins only: start the sync now even within `mirror.min_manual_interval` of the
    /// last one.
    pub force: Option<bool>,
    /// Also try again, in this sync, every Git LFS object the mirror lacks
    /// (`lfs_missing_objects` in its status), however long their backoff has left.
    pub lfs_retry: Option<bool>,
}

/// `PATCH /repos/{owner}/{repo}/mirror`: absent fields stay as they are.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"sync_interval": "30m", "enabled": true, "exclude_refs": ["refs/pull/*"]}))]
pub struct MirrorSettingsRequest {
    /// `30m`, `2h`…, from `mirror.min_sync_interval` to `mirror.max_sync_interval`;
    /// `null` returns to the default interval.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, max_length = 64)]
    pub sync_interval: Option<Option<String>>,
    /// `false` pauses scheduled syncs of this mirror ("Sync now" still works).
    pub enabled: Option<bool>,
    /// `false`: Git LFS objects the mirror's commits point at are not downloaded (on by
    /// default; objects already stored stay).
    pub lfs: Option<bool>,
    /// A new upstream; credentials in it, or in `credentials` sent with it, replace the
    /// stored ones (none: removed, so that they never go to another host unasked).
    #[schema(min_length = 1, max_length = 2048)]
    pub mirror_url: Option<String>,
    /// http(s) upstreams: new credentials, sealed and never shown again; `null` removes
    /// them. Without `mirror_url` they apply to the current upstream.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Credentials>)]
    pub credentials: Option<Option<Credentials>>,
    /// Shared secret that push webhooks (`POST /hooks/{owner}/{repo}`) are verified
    /// with; stored sealed and never shown again. `null` removes it.
    #[serde(default, deserialize_with = "present")]
    #[schema(
        value_type = Option<String>,
        min_length = 8,
        max_length = 256,
        pattern = r"^\S([\s\S]*\S)?$"
    )]
    pub webhook_secret: Option<Option<String>>,
    /// Selective sync: ref patterns to keep, e.g. `refs/heads/release/*` (one `*` at
    /// most; 255 characters at most); `[]` keeps every ref. 50 patterns at most.
    #[schema(max_items = 50)]
    pub include_refs: Option<Vec<String>>,
    /// Ref patterns to leave out, e.g. `refs/pull/*`; they win over `include_refs`.
    #[schema(max_items = 50)]
    pub exclude_refs: Option<Vec<String>>,
}

/// Tells a field sent as `null` (`Some(None)`) from one left out (`None`).
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// `?page=&per_page=` of every listing: pages count from 1, at most 100 items each
/// (30 by default).
pub fn paging(page: Option<u32>, per_page: Option<u32>) -> Result<(u32, u32), ApiError> {
    let page = page.unwrap_or(1);
    let per_page = per_page.unwrap_or(30);
    if page == 0 || !(1..=100).contains(&per_page) {
        return Err(ApiError::BadRequest(
            "invalid_query",
            "page must be 1 or more and per_page between 1 and 100".into(),
        ));
    }
    Ok((page, per_page))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    /// How many of the latest runs; 20 by default, at most 100.
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct History {
    /// Newest first. The unchanged syncs after a successful run are counted in it:
    /// `checks` is the run's own check plus those, `last_checked_at` says when the
    /// latest began.
    pub runs: Vec<stasis_shared::db::runs::Run>,
    /// Failure and recovery notifications sent about this mirror, newest first: only
    /// for its owner and admins.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notifications: Option<Vec<stasis_shared::db::notifications::Sent>>,
}

/// The body of every error.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: String,
    pub code: String,
    /// On 503 `unavailable`: the backend that is down, `postgres` or `redis`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dependency: Option<String>,
}

impl ErrorBody {
    /// The body `e` answers with, for a part of a response that reports it inline.
    pub fn of(e: &crate::error::ApiError) -> Self {
        Self {
            error: e.to_string(),
            code: e.code().to_owned(),
            dependency: None,
        }
    }
}

/// A mirror's ssh deploy key as its owner adds it upstream: the public half only.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DeployKeyView {
    /// An `authorized_keys` line, e.g. `ssh-ed25519 AAAA… stasis-mirror-alice/tools`.
    pub public_key: String,
    /// `SHA256:…`, as `ssh-keygen -lf` and forges' deploy key lists show it.
    pub fingerprint: String,
}

impl DeployKeyView {
    pub fn of(r: &Repo) -> Option<Self> {
        let public = r.ssh_public_key.as_deref().filter(|_| r.is_mirror)?;
        Some(Self {
            public_key: public.to_owned(),
            fingerprint: public_fingerprint(public).unwrap_or_default(),
        })
    }
}

/// `PUT /repos/{owner}/{repo}/mirror/deploy-key`: the owner's own private key.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeployKeyUpload {
    /// An OpenSSH private key (`-----BEGIN OPENSSH PRIVATE KEY-----`), ed25519, ecdsa
    /// or rsa, without a passphrase. Stored sealed and never shown again.
    #[schema(min_length = 1, max_length = 16384)]
    pub private_key: String,
}

/// The host keys an upstream's ssh server offers, as detected now.
#[derive(Debug, Serialize, ToSchema)]
pub struct DetectedHostKeys {
    /// `host:port` of the upstream, which confirmed keys are pinned to.
    pub host: String,
    /// The address the handshakes reached (the one the address policy approved).
    pub address: String,
    pub host_keys: Vec<HostKey>,
}

/// `PUT /repos/{owner}/{repo}/mirror/host-keys`: the host keys the owner accepts,
/// as fingerprints, public key lines, or both; `[]` and `[]` confirm none.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HostKeysRequest {
    /// `SHA256:…` fingerprints, as detect or `ssh-keygen -lf` gives them.
    #[serde(default)]
    #[schema(max_items = 16)]
    pub fingerprints: Vec<String>,
    /// Public keys as `known_hosts` or `ssh-keyscan` give them (`ssh-ed25519 AAAA…`),
    /// with or without a leading host name.
    #[serde(default)]
    #[schema(max_items = 16)]
    pub keys: Vec<String>,
}

/// The host keys a mirror's ssh syncs accept.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConfirmedHostKeys {
    /// `host:port` they are confirmed for; `null` when none are.
    pub host: Option<String>,
    pub host_keys: Vec<HostKey>,
}
