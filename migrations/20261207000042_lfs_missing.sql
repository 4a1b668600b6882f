-- Git LFS objects a mirror's commits point at and the mirror does not hold: a download
-- that failed (the upstream answered an error, or bytes that do not hash to the oid), an
-- object past a limit, a step that timed out. Remembered so that later syncs try them
-- again with backoff, whether or not they bring new commits (the scan after a fetch
-- looks at new objects only, so nothing else would ask for them again). A row leaves
-- once its object is stored, when the mirror's LFS is turned off, or with the mirror.
CREATE TABLE lfs_missing (
    repo_id uuid NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
    oid text NOT NULL,
    size bigint NOT NULL,
    first_failed_at timestamptz NOT NULL DEFAULT now(),
    attempts integer NOT NULL DEFAULT 1,
    next_try_at timestamptz NOT NULL,
    last_error text NOT NULL,
    PRIMARY KEY (repo_id, oid)
);

-- The earliest next_try_at of the mirror's rows (NULL: none): read with the mirror's
-- row by every delivery, so a sync learns whether a retry is due without another
-- round trip.
ALTER TABLE repositories ADD COLUMN lfs_retry_at timestamptz;
