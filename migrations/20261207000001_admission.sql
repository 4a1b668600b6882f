-- Every delivery enters a Redis lane through one admission point that keeps the lane
-- under its bound (apalis-redis 1.0 fails every fetch once about 8,000 deliveries are due
-- at once in one lane). A pending job is either in its lane (`in_queue`) or waits here
-- for room, or for its `run_at` (retry backoff, a postponed delivery): the dispatcher
-- delivers waiting jobs as room appears, oldest first and fair across owners.
-- Jobs pending before this change were delivered when they were opened.
ALTER TABLE sync_jobs ADD COLUMN in_queue boolean NOT NULL DEFAULT true;
ALTER TABLE sync_jobs ALTER COLUMN in_queue SET DEFAULT false;
CREATE INDEX sync_jobs_awaiting_queue ON sync_jobs (run_at)
    WHERE state = 'pending' AND NOT in_queue;

-- A sync requested while this job's attempt runs (its upstream's refs may already have
-- been listed): one follow-up job is opened when the attempt ends, whatever the number of
-- requests, due no earlier than `follow_up_at`.
ALTER TABLE sync_jobs ADD COLUMN follow_up_reason text
    CHECK (follow_up_reason IN ('import', 'manual', 'scheduled', 'webhook'));
ALTER TABLE sync_jobs ADD COLUMN follow_up_at timestamptz;
