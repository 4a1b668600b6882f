-- Failure notifications: an outbox of signed JSON events (a mirror failing, stopping
-- for good, recovering) to notify.urls and the owner's notify_url, delivered with
-- retries by the scheduler leader, and shown in the mirror's history.
ALTER TABLE users ADD COLUMN notify_url text;
CREATE TABLE notifications (
    id               bigserial PRIMARY KEY,
    repo_id          uuid NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
    event            text NOT NULL CHECK (event IN ('failed', 'hard_failed', 'recovered')),
    url              text NOT NULL,
    payload          jsonb NOT NULL,
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    delivered_at     timestamptz,
    given_up_at      timestamptz,
    last_error       text,
    created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX notifications_due ON notifications (next_attempt_at)
    WHERE delivered_at IS NULL AND given_up_at IS NULL;
CREATE INDEX notifications_repo ON notifications (repo_id, id DESC);
