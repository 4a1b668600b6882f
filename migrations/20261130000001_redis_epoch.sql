-- Redis holds only deliveries; Postgres is the record. Each time the scheduler leader
-- finds that Redis lost its data (a restart without persistence, or a restart that lost
-- its last writes) it starts a new epoch, and every pending job delivered in an older
-- epoch whose delivery is no longer in Redis is delivered again.
CREATE SEQUENCE redis_epoch;
-- called once, so that the first new epoch (nextval) differs from the one jobs start in
SELECT setval('redis_epoch', 1, true);

CREATE FUNCTION current_redis_epoch() RETURNS bigint
    LANGUAGE sql STABLE AS 'SELECT last_value FROM redis_epoch';

-- The epoch a job's latest delivery was pushed in: set on insert, and again by whoever
-- re-delivers it.
ALTER TABLE sync_jobs ADD COLUMN delivery_epoch bigint NOT NULL DEFAULT current_redis_epoch();
