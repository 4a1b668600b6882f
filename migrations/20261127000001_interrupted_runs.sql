-- A run stopped by its worker's shutdown: not a failure of the upstream, and its job is
-- pending again at once.
ALTER TABLE sync_runs DROP CONSTRAINT IF EXISTS sync_runs_outcome_check;
ALTER TABLE sync_runs ADD CONSTRAINT sync_runs_outcome_check
    CHECK (outcome IN ('success', 'retrying', 'failed', 'abandoned', 'lost_lock', 'interrupted'));
