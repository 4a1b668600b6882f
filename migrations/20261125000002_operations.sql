-- What operators inspect: live worker processes, and the indexes that keep the job and
-- history listings cheap as sync_jobs and sync_runs grow.

-- One row per running worker process, refreshed every heartbeat; a row whose heartbeat
-- is older than a few intervals belongs to a dead process. Jobs in flight are not stored
-- here: they are the `running` jobs naming the worker.
CREATE TABLE workers (
    name               text PRIMARY KEY,
    host               text NOT NULL,
    pid                integer NOT NULL,
    concurrency        integer NOT NULL,
    started_at         timestamptz NOT NULL DEFAULT now(),
    last_heartbeat_at  timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX sync_jobs_repo ON sync_jobs (repo_id, enqueued_at DESC);
CREATE INDEX sync_jobs_worker_running ON sync_jobs (worker) WHERE state = 'running';
CREATE INDEX sync_runs_finished ON sync_runs (finished_at) WHERE finished_at IS NOT NULL;
