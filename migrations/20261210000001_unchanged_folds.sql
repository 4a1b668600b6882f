-- Unchanged checks per second, for the operator's activity charts and throughput: a
-- folded run says how many checks it stands for but not when each happened. Kept for
-- a day and an hour (the longest chart is a day). `shard` (0 to 7, from the mirror's
-- id) spreads a busy second's increments over several rows, so concurrent ends of
-- syncs seldom wait for each other's row lock.
CREATE TABLE unchanged_checks (
    second  timestamptz NOT NULL,
    shard   smallint NOT NULL,
    checks  integer NOT NULL,
    PRIMARY KEY (second, shard)
) WITH (fillfactor = 50);

-- The unchanged runs of the last day and hour, each one check. Counted before sync_runs
-- is altered below: the exclusive lock that takes is then held only until the commit.
INSERT INTO unchanged_checks (second, shard, checks)
SELECT date_trunc('second', finished_at), 0, count(*)
FROM sync_runs
WHERE finished_at > now() - interval '25 hours' AND outcome = 'success' AND unchanged
GROUP BY 1;

-- Consecutive unchanged checks of a mirror share one history row: the run of the first
-- check stands for all of them. `checks` counts them (1 for any other run);
-- `last_checked_at` is when the latest began, `last_duration_ms` how long it took and
-- `last_job_id` its job (all NULL while the run is its only check). The jobs of the
-- checks in between are deleted as the row takes the next one in.
ALTER TABLE sync_runs
    ADD COLUMN checks integer NOT NULL DEFAULT 1,
    ADD COLUMN last_checked_at timestamptz,
    ADD COLUMN last_duration_ms integer,
    ADD COLUMN last_job_id uuid;

-- A check that folds into its run's row updates no indexed column, so with free space
-- on the row's page Postgres rewrites it in place (a HOT update: no new entry in any of
-- the table's five indexes). The runs a fold updates are the newest, on the pages
-- written last; applies to pages written from now on.
ALTER TABLE sync_runs SET (fillfactor = 80);
