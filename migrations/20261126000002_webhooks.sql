-- Push webhooks: each mirror's shared secret, sealed under secrets.key like upstream
-- credentials, and the job reason they create.
ALTER TABLE repositories ADD COLUMN webhook_secret text;
ALTER TABLE sync_jobs DROP CONSTRAINT sync_jobs_reason_check;
ALTER TABLE sync_jobs ADD CONSTRAINT sync_jobs_reason_check
    CHECK (reason IN ('import', 'manual', 'scheduled', 'webhook'));
