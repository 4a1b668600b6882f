-- Per-run detail for history and metrics: objects received, refs created (of the
-- refs_updated), and the time of each step (ref listing, fetch and ref update).
ALTER TABLE sync_runs
    ADD COLUMN objects_received integer NOT NULL DEFAULT 0,
    ADD COLUMN refs_created integer NOT NULL DEFAULT 0,
    ADD COLUMN list_ms integer,
    ADD COLUMN fetch_ms integer;
