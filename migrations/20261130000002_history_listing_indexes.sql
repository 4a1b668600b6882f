-- History at 10 million runs (`stasis-bench history`, see BENCHMARKS.md).
--
-- The operator's job listing is ordered by (enqueued_at DESC, id): without an index in
-- that order every page sorted every job (and, as the generic plan its pooled
-- connections settle on, joined every repository to its jobs first). Walking this
-- index, a page reads its offset plus its rows.
CREATE INDEX sync_jobs_listing ON sync_jobs (enqueued_at DESC, id);

-- A mirror's history is read newest first with the run id as tie-break (the API's
-- listing, and the retention pass's window over each mirror's newest runs). With the
-- id in the index neither sorts, and the retention window is an index-only scan
-- instead of a heap fetch per run. It replaces the index without the id.
CREATE INDEX sync_runs_repo_newest ON sync_runs (repo_id, started_at DESC, id DESC);
DROP INDEX sync_runs_repo;
