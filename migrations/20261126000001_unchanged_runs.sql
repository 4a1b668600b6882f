-- A sync whose upstream advertised exactly the mirror's refs records a successful run
-- without fetching; history and metrics tell those no-op syncs apart.
ALTER TABLE sync_runs ADD COLUMN unchanged boolean NOT NULL DEFAULT false;
