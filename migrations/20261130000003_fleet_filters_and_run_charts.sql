-- The fleet view filters mirrors by upstream host: the same expression as
-- `db::repos::UPSTREAM_HOST`, so the planner can use this index for it.
CREATE INDEX repositories_upstream_host ON repositories
    ((lower(substring(mirror_url from '^[A-Za-z][A-Za-z0-9+.-]*://(?:[^@/]*@)?(\[[^]/]*\]|[^:/?#]+)'))));

-- The operator's throughput and failure charts count the attempts finished in the last
-- hour or day by outcome: with these columns in the index the count reads no table page.
CREATE INDEX sync_runs_finished_outcome ON sync_runs (finished_at) INCLUDE (outcome, unchanged)
    WHERE finished_at IS NOT NULL;
DROP INDEX sync_runs_finished;
