-- Adaptive intervals and hard failure: unchanged syncs stretch a mirror's interval
-- (interval_factor × its base interval, up to mirror.max_sync_interval), changes shrink
-- it back; consecutive failures back off, and past mirror.hard_fail_after (or at once
-- for authentication and not-found errors) a mirror is `hard_failed`: not scheduled
-- until its owner syncs it by hand or changes its URL.
ALTER TABLE repositories
    ADD COLUMN interval_factor double precision NOT NULL DEFAULT 1
        CHECK (interval_factor >= 1),
    ADD COLUMN consecutive_failures integer NOT NULL DEFAULT 0;
ALTER TABLE repositories DROP CONSTRAINT repositories_sync_status_check;
ALTER TABLE repositories ADD CONSTRAINT repositories_sync_status_check
    CHECK (sync_status IN ('idle', 'queued', 'syncing', 'success', 'failed', 'hard_failed'));
