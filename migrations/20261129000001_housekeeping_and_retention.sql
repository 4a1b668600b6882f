-- Housekeeping of mirrors: what a sync's repack did, and how large the mirror is on disk.
ALTER TABLE sync_runs
    ADD COLUMN housekeeping text CHECK (housekeeping IN ('geometric', 'full')),
    ADD COLUMN housekeeping_ms integer;
ALTER TABLE repositories ADD COLUMN size_bytes bigint;

-- Retention keeps each mirror's last failed run: found per mirror without a scan.
CREATE INDEX sync_runs_repo_failed ON sync_runs (repo_id, id DESC) WHERE outcome = 'failed';
-- Finished jobs are deleted once no run refers to them (the run's FK cascades).
CREATE INDEX sync_jobs_finished ON sync_jobs (finished_at)
    WHERE state IN ('done', 'failed', 'dead');
