//! The life of a sync job and of its repository's `sync_status`: every statement that
//! moves either is in this module, and only this module spells their values in SQL
//! (other queries use the predicate macros below, which keep the partial indexes
//! usable: a bound parameter would not match their `WHERE`).
//!
//! Job states (`sync_jobs.state`, [`JobState`](crate::domain::JobState)) and the
//! repository status each transition leaves (`repositories.sync_status`,
//! [`SyncStatus`](crate::domain::SyncStatus)); "settled" is the status the mirror's last
//! sync left (`idle`, `success`, `failed` or `hard_failed`, see `settled!`):
//!
//! | transition | from | to | repository | who |
//! |---|---|---|---|---|
//! | [`opening::open`], [`opening::open_due`] | (none) | `pending` | `queued` | API, scheduler, webhooks |
//! | [`opening::withdraw`] (a wave's push failed) | `pending`, no attempt | (deleted) | settled, if `queued` | scheduler |
//! | [`attempt::start`] | `pending`, `running` (a dead worker's) | `running` | `syncing` | worker |
//! | [`attempt::finish`]: success | `running` | `done` | `success` | worker |
//! | [`attempt::finish`]: success or failure, a sync was requested meanwhile | `running` | `done`/`failed`, and a new `pending` follow-up | `queued` | worker |
//! | [`attempt::finish`]: retry | `running` | `pending` (due after its backoff) | `queued` | worker |
//! | [`attempt::finish`]: failure | `running` | `failed` | `failed` or `hard_failed` | worker |
//! | [`attempt::finish`]: shutdown | `running` | `pending` (due now, attempt not counted) | `queued` | worker |
//! | [`rescue::requeue_running`] | `running` (worker gone) | `pending` | unchanged | scheduler (reaper, recovery) |
//! | [`rescue::postpone_held`] | `running` (worker gone), `pending` | `pending` (due after a delay) | unchanged | worker (holds the lease, cannot start yet) |
//! | [`operator::retry`] | `failed`, `dead` | `pending` | `queued` | operator |
//! | [`operator::discard`] | `pending`, `failed` | `dead` | settled, if `queued` | operator |
//! | [`operator::new_upstream`] | — | — | `hard_failed` → `failed` | owner (new URL) |
//!
//! A sync that ends within half a second with nothing written (most do: upstream
//! unchanged) has no separate start: [`attempt::finish`] runs `start`'s statement first,
//! in its own transaction, so `pending` → `running` → its end commit together. An
//! unchanged success right after another one of the same mirror writes no run row: it
//! is counted in that run ([`fold`]), and the job of the check before it is deleted.
//!
//! A `pending` job is in its Redis lane or waits in Postgres for admission to it
//! (`in_queue`, see `queue::admission`); whoever moves a job to `pending` leaves it
//! waiting, and the admission point delivers it.
//!
//! `done`, `failed` and `dead` are final but for an operator's retry. A repository has
//! at most one `pending` or `running` job (a partial unique index decides). The
//! end-of-sync decisions (status, next sync, hard failure, notification) are a pure
//! function in [`policy`]; [`attempt`] writes what it decides.

pub mod attempt;
pub mod fold;
pub mod housekept;
pub mod manifest;
pub mod opening;
pub mod operator;
pub mod policy;
pub mod rescue;

/// `<alias>.state` is `pending` or `running`: the job a repository has in flight.
#[macro_export]
macro_rules! job_active {
    ($alias:literal) => {
        concat!($alias, ".state IN ('pending', 'running')")
    };
}

#[macro_export]
macro_rules! job_pending {
    ($alias:literal) => {
        concat!($alias, ".state = 'pending'")
    };
}

#[macro_export]
macro_rules! job_running {
    ($alias:literal) => {
        concat!($alias, ".state = 'running'")
    };
}

/// Jobs that will not run again unless an operator retries them.
#[macro_export]
macro_rules! job_finished {
    ($alias:literal) => {
        concat!($alias, ".state IN ('done', 'failed', 'dead')")
    };
}

/// A run that was an unchanged check which only listed: a run of such checks shows the
/// latest one's listing time, worker and duration, having no figures of its own worth
/// keeping (see [`fold`]).
#[macro_export]
macro_rules! run_only_listed {
    ($alias:literal) => {
        concat!(
            "(",
            $alias,
            ".unchanged AND ",
            $alias,
            ".lfs_objects IS NULL AND ",
            $alias,
            ".lfs_error IS NULL AND ",
            $alias,
            ".housekeeping IS NULL)"
        )
    };
}

/// A repository shown as having a sync in flight.
#[macro_export]
macro_rules! repo_in_flight {
    ($alias:literal) => {
        concat!($alias, ".sync_status IN ('queued', 'syncing')")
    };
}

/// A run that ended in a failure of the mirror (not a retry, not an interruption).
#[macro_export]
macro_rules! run_failed {
    ($alias:literal) => {
        concat!($alias, ".outcome = 'failed'")
    };
}

/// The status of a repository (`r`) once it has no job in flight: what its last sync
/// left. Used where a job is taken back before it ran.
macro_rules! settled {
    () => {
        "CASE
            WHEN r.sync_error IS NOT NULL AND r.next_sync_at IS NULL AND r.consecutive_failures > 0
                THEN 'hard_failed'
            WHEN r.sync_error IS NOT NULL THEN 'failed'
            WHEN r.last_synced_at IS NULL THEN 'idle' ELSE 'success' END"
    };
}
pub(crate) use settled;
