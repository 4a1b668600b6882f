//! Every metric of the system, described once with its help text and, for counters
//! with closed label sets, created at zero: a series that exists from start-up makes
//! `rate()` and alerts work before the first event, and its absence means a bug.

use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};

use crate::domain::{ErrorKind, SyncReason};

pub(crate) fn describe_worker() {
    describe_counter!(
        "stasis_syncs_started_total",
        "Sync attempts started, by reason"
    );
    describe_counter!(
        "stasis_jobs_finished_total",
        "Sync attempts finished, by outcome (success, failure, lost_lock) and reason"
    );
    describe_counter!(
        "stasis_sync_failures_total",
        "Failed sync attempts, by error kind"
    );
    describe_counter!(
        "stasis_sync_retries_total",
        "Retries scheduled after a transient failure"
    );
    describe_counter!(
        "stasis_lock_contention_total",
        "Deliveries that found their repository locked by another sync"
    );
    describe_counter!(
        "stasis_host_throttled_total",
        "Deliveries postponed because their upstream host or the fleet was at its sync cap"
    );
    describe_counter!(
        "stasis_jobs_rescued_total",
        "Jobs picked up again after the worker running them died"
    );
    describe_counter!(
        "stasis_jobs_poison_total",
        "Undecodable queue payloads dropped"
    );
    describe_counter!(
        "stasis_git_received_bytes_total",
        Unit::Bytes,
        "Bytes received from upstreams"
    );
    describe_counter!(
        "stasis_refs_updated_total",
        "Refs created or updated by syncs"
    );
    describe_counter!("stasis_refs_pruned_total", "Refs deleted by syncs");
    describe_counter!(
        "stasis_refs_created_total",
        "Refs created by syncs (also counted in stasis_refs_updated_total)"
    );
    describe_counter!(
        "stasis_git_received_objects_total",
        "Git objects received from upstreams"
    );
    describe_histogram!(
        "stasis_sync_step_duration_seconds",
        Unit::Seconds,
        "Duration of a successful sync's steps: list (ref advertisement), fetch (download, tips, prune)"
    );
    describe_counter!(
        "stasis_syncs_unchanged_total",
        "Successful syncs that found upstream's refs unchanged and fetched nothing"
    );
    describe_counter!(
        "stasis_worker_heartbeats_total",
        "Worker registry heartbeats"
    );
    describe_counter!(
        "stasis_worker_restarts_total",
        "Queue consumers restarted after an error"
    );
    describe_histogram!(
        "stasis_sync_duration_seconds",
        Unit::Seconds,
        "Duration of sync attempts, by outcome"
    );
    describe_histogram!(
        "stasis_job_queue_wait_seconds",
        Unit::Seconds,
        "Time from a job being due to its attempt starting"
    );
    describe_gauge!(
        "stasis_worker_inflight_jobs",
        "Syncs running in this worker"
    );
    describe_gauge!(
        "stasis_worker_concurrency",
        "Syncs this worker runs at most at once"
    );
    describe_gauge!(
        "stasis_storage_free_bytes",
        Unit::Bytes,
        "Bytes still free on each storage this worker serves, as it sees it, by storage"
    );
    describe_counter!(
        "stasis_storage_moves_total",
        "Moves of a mirror to this worker's storage, by outcome (done, failed)"
    );
    describe_counter!(
        "stasis_storage_removals_total",
        "Copies a storage no longer needs, by outcome (removed, kept: a mirror lives there again, failed)"
    );
    for outcome in ["done", "failed"] {
        metrics::counter!("stasis_storage_moves_total", "outcome" => outcome).absolute(0);
    }
    for outcome in ["removed", "kept", "failed"] {
        metrics::counter!("stasis_storage_removals_total", "outcome" => outcome).absolute(0);
    }
    for reason in SyncReason::ALL {
        metrics::counter!("stasis_syncs_started_total", "reason" => reason.as_str()).absolute(0);
        for outcome in ["success", "failure", "lost_lock"] {
            metrics::counter!("stasis_jobs_finished_total", "outcome" => outcome, "reason" => reason.as_str())
                .absolute(0);
        }
    }
    for kind in ErrorKind::ALL {
        metrics::counter!("stasis_sync_failures_total", "error_kind" => kind.as_str()).absolute(0);
    }
    for name in [
        "stasis_sync_retries_total",
        "stasis_lock_contention_total",
        "stasis_host_throttled_total",
        "stasis_jobs_rescued_total",
        "stasis_jobs_poison_total",
        "stasis_git_received_bytes_total",
        "stasis_refs_updated_total",
        "stasis_refs_pruned_total",
        "stasis_refs_created_total",
        "stasis_git_received_objects_total",
        "stasis_syncs_unchanged_total",
        "stasis_worker_restarts_total",
    ] {
        metrics::counter!(name).absolute(0);
    }
    metrics::gauge!("stasis_worker_inflight_jobs").set(0.0);
    describe_counter!(
        "stasis_locks_taken_over_total",
        "Repository locks taken over from a holder that died"
    );
    describe_counter!(
        "stasis_syncs_interrupted_total",
        "Syncs interrupted by the worker's shutdown, handed back to the queue"
    );
    describe_counter!(
        "stasis_housekeeping_runs_total",
        "Housekeeping passes (repacks) by kind and outcome"
    );
    describe_histogram!(
        "stasis_housekeeping_duration_seconds",
        Unit::Seconds,
        "Duration of housekeeping passes, by kind"
    );
    metrics::counter!("stasis_locks_taken_over_total").absolute(0);
    metrics::counter!("stasis_syncs_interrupted_total").absolute(0);
    for kind in ["geometric", "full"] {
        for outcome in ["success", "failure"] {
            metrics::counter!("stasis_housekeeping_runs_total", "kind" => kind, "outcome" => outcome)
                .absolute(0);
        }
    }
    describe_counter!(
        "stasis_upstream_connections_total",
        "Upstream HTTP(S) requests by the connection they went over: opened for them, or reused (kept open since an earlier request), by scheme"
    );
    for scheme in ["http", "https"] {
        for outcome in ["opened", "reused"] {
            metrics::counter!("stasis_upstream_connections_total", "scheme" => scheme, "outcome" => outcome)
                .absolute(0);
        }
    }
    describe_lfs();
    describe_enqueue();
    describe_backend_errors(&["deliver"]);
}

/// Why an LFS object a mirror's new commits point at is missing after its sync: the
/// closed label set of `stasis_lfs_failures_total{kind}`.
pub const LFS_FAILURE_KINDS: [&str; 11] = [
    "no_endpoint",
    "internal",
    "batch",
    "blocked_url",
    "too_large",
    "corrupt",
    "download",
    "timeout",
    // an ssh upstream's `git-lfs-authenticate` step
    "host_key_mismatch",
    "auth",
    "ssh",
];

fn describe_lfs() {
    describe_counter!(
        "stasis_lfs_objects_total",
        "Git LFS objects downloaded into mirrors (verified and stored)"
    );
    describe_counter!(
        "stasis_lfs_bytes_total",
        Unit::Bytes,
        "Bytes of Git LFS objects downloaded into mirrors"
    );
    describe_counter!(
        "stasis_lfs_failures_total",
        "Git LFS objects or requests that failed after a sync, by kind (the git part stands)"
    );
    describe_counter!(
        "stasis_lfs_retried_objects_total",
        "Missing Git LFS objects tried again by a later sync, by outcome (arrived, missing)"
    );
    metrics::counter!("stasis_lfs_objects_total").absolute(0);
    metrics::counter!("stasis_lfs_bytes_total").absolute(0);
    for outcome in ["arrived", "missing"] {
        metrics::counter!("stasis_lfs_retried_objects_total", "outcome" => outcome).absolute(0);
    }
    for kind in LFS_FAILURE_KINDS {
        metrics::counter!("stasis_lfs_failures_total", "kind" => kind).absolute(0);
    }
}

pub(crate) fn describe_scheduler() {
    describe_counter!(
        "stasis_manifest_requests_total",
        "Upstream manifest reads, by result (fetched, not_modified, failed)"
    );
    describe_counter!(
        "stasis_manifest_skipped_total",
        "Due mirrors moved on without a sync because their upstream's manifest showed their refs unchanged"
    );
    for result in ["fetched", "not_modified", "failed"] {
        metrics::counter!("stasis_manifest_requests_total", "result" => result).absolute(0);
    }
    metrics::counter!("stasis_manifest_skipped_total").absolute(0);
    describe_counter!(
        "stasis_scheduler_ticks_total",
        "Scheduler ticks that looked for due mirrors"
    );
    describe_histogram!(
        "stasis_scheduler_enqueue_duration_seconds",
        Unit::Seconds,
        "Time a tick took to claim and push due mirrors"
    );
    describe_gauge!("stasis_scheduler_leader", "1 while this scheduler leads");
    describe_gauge!(
        "stasis_scheduler_paused",
        "1 while an operator paused scheduled syncs (sampled by the leader)"
    );
    describe_gauge!(
        "stasis_queue_jobs",
        "Jobs per state in Postgres (sampled by the leader)"
    );
    describe_gauge!(
        "stasis_queue_redis_jobs",
        "Deliveries in Redis by location (sampled by the leader)"
    );
    describe_gauge!(
        "stasis_queue_oldest_job_age_seconds",
        Unit::Seconds,
        "Seconds since the oldest pending job was first enqueued, its retries' waits included (sampled by the leader)"
    );
    describe_gauge!(
        "stasis_mirrors_overdue",
        "Mirrors past their next sync by more than one sync interval (sampled by the leader)"
    );
    describe_gauge!(
        "stasis_mirrors_oldest_overdue_seconds",
        Unit::Seconds,
        "Seconds the most overdue mirror is past its next sync, 0 when none is overdue (sampled by the leader)"
    );
    describe_gauge!(
        "stasis_workers_alive",
        "Workers with a recent heartbeat (sampled by the leader)"
    );
    describe_gauge!(
        "stasis_mirrors",
        "Mirrors per sync status (sampled by the leader)"
    );
    describe_gauge!(
        "stasis_mirror_storage_bytes",
        Unit::Bytes,
        "Bytes the mirrors take on disk, by storage (sampled by the leader)"
    );
    describe_gauge!(
        "stasis_storage_mirrors",
        "Mirrors on each storage (sampled by the leader)"
    );
    describe_gauge!(
        "stasis_storage_live_workers",
        "Workers that reported each storage within the liveness window (sampled by the leader)"
    );
    describe_gauge!(
        "stasis_storage_moves",
        "Moves between storages pending, running, and failed in the last day (sampled by the leader)"
    );
    describe_gauge!(
        "stasis_lfs_missing_objects",
        "Git LFS objects mirrors' commits point at that the mirrors lack, awaiting another try (sampled by the leader)"
    );
    describe_counter!(
        "stasis_jobs_reaped_total",
        "Stuck jobs and mirrors the reaper repaired, by kind (running, pending, repository)"
    );
    for kind in ["running", "pending", "repository"] {
        metrics::counter!("stasis_jobs_reaped_total", "kind" => kind).absolute(0);
    }
    describe_counter!(
        "stasis_notifications_total",
        "Notification deliveries by event and result (delivered, retry, given_up)"
    );
    // zeroed, so an alert on given-up deliveries has a series before the first one
    for event in ["failed", "hard_failed", "recovered"] {
        for result in ["delivered", "retry", "given_up"] {
            metrics::counter!("stasis_notifications_total", "event" => event, "result" => result)
                .absolute(0);
        }
    }
    describe_counter!(
        "stasis_history_deleted_total",
        "History rows deleted by retention, by table"
    );
    for table in [
        "sync_runs",
        "sync_jobs",
        "notifications",
        "unchanged_checks",
    ] {
        metrics::counter!("stasis_history_deleted_total", "table" => table).absolute(0);
    }
    describe_counter!(
        "stasis_jobs_redelivered_total",
        "Jobs given a fresh delivery, by cause (dead_worker, redis_lost)"
    );
    for cause in ["dead_worker", "redis_lost"] {
        metrics::counter!("stasis_jobs_redelivered_total", "cause" => cause).absolute(0);
    }
    describe_counter!(
        "stasis_redis_data_lost_total",
        "Times the leader found Redis lost its data, by sign (marker_gone, restarted)"
    );
    for sign in ["marker_gone", "restarted"] {
        metrics::counter!("stasis_redis_data_lost_total", "sign" => sign).absolute(0);
    }
    metrics::counter!("stasis_scheduler_ticks_total").absolute(0);
    metrics::gauge!("stasis_scheduler_leader").set(0.0);
    describe_enqueue();
    describe_backend_errors(&["tick", "manifest", "sample", "reap", "notify"]);
}

pub(crate) fn describe_api() {
    describe_counter!(
        "stasis_http_requests_total",
        "HTTP requests by method, route template and status"
    );
    describe_histogram!(
        "stasis_http_request_duration_seconds",
        Unit::Seconds,
        "HTTP request latency by method and route template"
    );
    describe_counter!(
        "stasis_jobs_retried_total",
        "Jobs an operator sent back to the queue"
    );
    describe_counter!("stasis_jobs_discarded_total", "Jobs an operator discarded");
    describe_counter!(
        "stasis_webhooks_total",
        "Push webhooks received, by provider and result"
    );
    for provider in ["github", "gitea", "gitlab"] {
        for result in ["accepted", "ignored", "ping"] {
            metrics::counter!("stasis_webhooks_total", "provider" => provider, "result" => result)
                .absolute(0);
        }
    }
    metrics::counter!("stasis_jobs_retried_total").absolute(0);
    metrics::counter!("stasis_jobs_discarded_total").absolute(0);
    describe_enqueue();
    describe_backend_errors(&["request"]);
}

fn describe_enqueue() {
    describe_counter!(
        "stasis_jobs_enqueued_total",
        "Jobs created and pushed, by reason"
    );
    describe_counter!(
        "stasis_jobs_deduplicated_total",
        "Sync requests answered with the job already pending or running"
    );
    for reason in SyncReason::ALL {
        metrics::counter!("stasis_jobs_enqueued_total", "reason" => reason.as_str()).absolute(0);
    }
    metrics::counter!("stasis_jobs_deduplicated_total").absolute(0);
    describe_counter!(
        "stasis_queue_admitted_total",
        "Deliveries admitted into a Redis lane, by lane"
    );
    describe_counter!(
        "stasis_queue_admissions_deferred_total",
        "Admissions put off for want of room in a lane, by lane"
    );
    describe_counter!(
        "stasis_queue_dispatch_errors_total",
        "Dispatcher passes that failed"
    );
    for lane in crate::domain::Lane::ALL {
        metrics::counter!("stasis_queue_admitted_total", "lane" => lane.name()).absolute(0);
        metrics::counter!("stasis_queue_admissions_deferred_total", "lane" => lane.name())
            .absolute(0);
    }
    metrics::counter!("stasis_queue_dispatch_errors_total").absolute(0);
}

fn describe_backend_errors(ops: &[&'static str]) {
    describe_counter!(
        "stasis_backend_errors_total",
        "Failed calls to Postgres or Redis, by backend and operation"
    );
    for &op in ops {
        for backend in ["postgres", "redis"] {
            metrics::counter!("stasis_backend_errors_total", "backend" => backend, "op" => op)
                .absolute(0);
        }
    }
}
