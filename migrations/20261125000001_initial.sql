-- Status and kind columns are text with CHECK constraints rather than Postgres enums:
-- adding a value later is then a plain constraint swap inside a transaction.

CREATE TABLE users (
    id          uuid PRIMARY KEY,
    username    text NOT NULL UNIQUE,
    is_admin    boolean NOT NULL DEFAULT false,
    -- SHA-256 of the bearer token: tokens are 256-bit random, so a fast hash is enough
    -- and lets the API look a token up by equality. NULL once revoked.
    token_hash  text UNIQUE,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE repositories (
    id                  uuid PRIMARY KEY,
    owner_id            uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name                text NOT NULL,
    description         text NOT NULL DEFAULT '',
    private             boolean NOT NULL DEFAULT false,
    is_mirror           boolean NOT NULL DEFAULT false,
    -- upstream URL; for non-mirror imports it is the one-time clone source
    mirror_url          text,
    mirror_enabled      boolean NOT NULL DEFAULT true,
    sync_interval_secs  integer CHECK (sync_interval_secs IS NULL OR sync_interval_secs > 0),
    last_synced_at      timestamptz,
    sync_status         text NOT NULL DEFAULT 'idle'
                        CHECK (sync_status IN ('idle', 'queued', 'syncing', 'success', 'failed')),
    sync_error          text,
    next_sync_at        timestamptz,
    last_duration_ms    bigint,
    -- fencing token of the last lock holder that started a sync; a holder whose token is
    -- lower has lost its lock and must not write results
    sync_fence          bigint NOT NULL DEFAULT 0,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    UNIQUE (owner_id, name)
);

CREATE INDEX idx_repositories_is_mirror ON repositories (is_mirror) WHERE is_mirror = TRUE;
CREATE INDEX idx_repositories_due ON repositories (next_sync_at)
    WHERE is_mirror = TRUE AND mirror_enabled = TRUE;

CREATE TABLE sync_jobs (
    id            uuid PRIMARY KEY,
    repo_id       uuid NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
    reason        text NOT NULL CHECK (reason IN ('import', 'manual', 'scheduled')),
    state         text NOT NULL DEFAULT 'pending'
                  CHECK (state IN ('pending', 'running', 'done', 'failed', 'dead')),
    attempts      integer NOT NULL DEFAULT 0,
    max_attempts  integer NOT NULL,
    last_error    text,
    -- earliest time the next attempt may start (retry backoff)
    run_at        timestamptz NOT NULL DEFAULT now(),
    worker        text,
    enqueued_at   timestamptz NOT NULL DEFAULT now(),
    started_at    timestamptz,
    finished_at   timestamptz
);

-- The dedup rule: at most one pending or running job per repository, enforced by the
-- database so that concurrent API calls and schedulers cannot race past it.
CREATE UNIQUE INDEX sync_jobs_one_active_per_repo ON sync_jobs (repo_id)
    WHERE state IN ('pending', 'running');
CREATE INDEX sync_jobs_state ON sync_jobs (state, enqueued_at);

CREATE TABLE sync_runs (
    id              bigserial PRIMARY KEY,
    repo_id         uuid NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
    job_id          uuid NOT NULL REFERENCES sync_jobs(id) ON DELETE CASCADE,
    attempt         integer NOT NULL,
    worker          text NOT NULL,
    started_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz,
    outcome         text CHECK (outcome IN ('success', 'retrying', 'failed', 'abandoned', 'lost_lock')),
    error           text,
    error_kind      text,
    refs_updated    integer NOT NULL DEFAULT 0,
    refs_pruned     integer NOT NULL DEFAULT 0,
    bytes_received  bigint NOT NULL DEFAULT 0
);

CREATE INDEX sync_runs_repo ON sync_runs (repo_id, started_at DESC);
CREATE INDEX sync_runs_job ON sync_runs (job_id);

-- Run-time settings that override the config file without a restart
-- (the contract's run-time interval): read by workers when they schedule the next sync.
CREATE TABLE settings (
    key         text PRIMARY KEY,
    value       text NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
