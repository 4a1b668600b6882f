-- Named storages: each mirror lives on one storage, a filesystem that only that
-- storage's workers mount. A database that never named a storage has every mirror on
-- `default`, the storage `storage.root` stands for.
ALTER TABLE repositories ADD COLUMN storage text NOT NULL DEFAULT 'default';
-- A move under way: the mirror's jobs go to this storage's workers, the first of which
-- clones it afresh there and switches `storage` under the repository's lock.
ALTER TABLE repositories ADD COLUMN move_to text;
CREATE INDEX repositories_storage ON repositories (storage);
CREATE INDEX repositories_moving ON repositories (move_to) WHERE move_to IS NOT NULL;

-- A sync that moves its mirror to another storage.
ALTER TABLE sync_jobs DROP CONSTRAINT sync_jobs_reason_check;
ALTER TABLE sync_jobs ADD CONSTRAINT sync_jobs_reason_check
    CHECK (reason IN ('import', 'manual', 'scheduled', 'webhook', 'move'));
ALTER TABLE sync_jobs DROP CONSTRAINT sync_jobs_follow_up_reason_check;
ALTER TABLE sync_jobs ADD CONSTRAINT sync_jobs_follow_up_reason_check
    CHECK (follow_up_reason IN ('import', 'manual', 'scheduled', 'webhook', 'move'));

-- Each worker's view of each storage it serves, refreshed every heartbeat: a storage
-- with no fresh row has no live worker; the newest row's free bytes decide placement.
CREATE TABLE storage_reports (
    storage     text NOT NULL,
    worker      text NOT NULL,
    free_bytes  bigint NOT NULL,
    reported_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (storage, worker)
);

-- Every move asked for, and how it ended.
CREATE TABLE storage_moves (
    id           bigserial PRIMARY KEY,
    repo_id      uuid NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
    from_storage text NOT NULL,
    to_storage   text NOT NULL,
    state        text NOT NULL DEFAULT 'pending'
                 CHECK (state IN ('pending', 'running', 'done', 'failed', 'cancelled')),
    error        text,
    requested_at timestamptz NOT NULL DEFAULT now(),
    started_at   timestamptz,
    finished_at  timestamptz
);
CREATE INDEX storage_moves_repo ON storage_moves (repo_id, id DESC);
CREATE INDEX storage_moves_open ON storage_moves (state) WHERE state IN ('pending', 'running');

-- Copies a storage no longer needs (the source of a finished move, a deleted mirror's
-- directory the API could not reach): a worker of that storage removes each, unless a
-- mirror lives at that path on that storage again.
CREATE TABLE storage_removals (
    id           bigserial PRIMARY KEY,
    storage      text NOT NULL,
    owner        text NOT NULL,
    name         text NOT NULL,
    requested_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX storage_removals_storage ON storage_removals (storage, id);
