-- A mirror's history is its runs. A job that ended `done` is deleted once its mirror
-- writes its next run of its own (a change, a failure, an interruption): until then it
-- answers its caller, afterwards its attempts stay in `sync_runs` (still naming it in
-- `job_id`) for as long as history retention keeps them. A change then costs its run
-- alone, not a run and a job. Runs no longer go with their job, so the key goes; a
-- job's runs are still found by `sync_runs_job`.
ALTER TABLE sync_runs DROP CONSTRAINT sync_runs_job_id_fkey;

-- Job ids in time order (the layout of a version 7 UUID: 48 bits of Unix milliseconds,
-- then random bits). A new job's key lands at the right edge of `sync_jobs_pkey` and
-- `sync_runs_job`, where a full B-tree page splits 90/10 and stays in memory, instead of
-- on a random page of an index as large as the history: a scheduler tick opening a
-- million jobs dirties a few thousand pages of them, not every one.
CREATE FUNCTION time_ordered_uuid() RETURNS uuid
LANGUAGE sql VOLATILE PARALLEL SAFE AS $$
    SELECT encode(
        set_bit(set_bit(
            overlay(uuid_send(gen_random_uuid())
                    placing substring(int8send(floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint) FROM 3)
                    FROM 1 FOR 6),
            52, 1), 53, 1),
        'hex')::uuid
$$;

-- The job listing is newest first. Kept in descending order, every new job went to the
-- index's first page, and a first page splits in half: the index stayed half empty.
-- Ascending, it is read backwards, and new jobs fill its last page.
CREATE INDEX sync_jobs_listing_new ON sync_jobs (enqueued_at, id);
DROP INDEX sync_jobs_listing;
ALTER INDEX sync_jobs_listing_new RENAME TO sync_jobs_listing;
