-- Error ingestion (SPEC §7): each organization's Sentry-compatible project, the release and
-- environment of occurrences, and the durable alert outbox.

-- The numeric `project_id` is the DSN's path; an identity, so that an id is never
-- handed out twice, even after a row is deleted (an old DSN must not reach a new
-- organization). `public_key` is the DSN's user part: public by design, browsers embed it.
CREATE TABLE error_projects (
    project_id      BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    organization_id TEXT NOT NULL UNIQUE REFERENCES organizations (id),
    public_key      TEXT NOT NULL UNIQUE,
    created_at      BIGINT NOT NULL
);
-- Organizations created before this migration get a project too, numbered in creation order
-- (the key: a random UUID's 32 hex digits; gen_random_uuid is in core since PostgreSQL 13).
INSERT INTO error_projects (organization_id, public_key, created_at)
SELECT id, replace(gen_random_uuid()::text, '-', ''), created_at FROM organizations ORDER BY created_at, id;

ALTER TABLE error_events ADD COLUMN release TEXT;
ALTER TABLE error_events ADD COLUMN environment TEXT;
-- Retention deletes occurrences by age.
CREATE INDEX error_events_by_age ON error_events (received_at);

-- When the group's last alert was queued: the cooldown holds across instances because it
-- is stored with the group, set in the transaction that queues the alert.
ALTER TABLE error_groups ADD COLUMN last_alerted_at BIGINT;

-- A group row is updated by every batch that counts in it (thousands a second for a noisy
-- error). No index may cover a column those updates change, so PostgreSQL can update the
-- row in place (HOT) instead of adding index entries and dead versions with each: the
-- index on last_seen goes (listing groups sorts them instead; groups are few next to
-- events), and half of each page is left free for the in-place versions.
DROP INDEX error_groups_recent;
ALTER TABLE error_groups SET (fillfactor = 50);

-- Alerts are queued in the transaction that records the occurrence and delivered later,
-- at least once: a crash between commit and delivery loses nothing. A claimer leases an
-- alert by moving `next_attempt_at` forward; `attempts` counts finished attempts.
CREATE TABLE alert_outbox (
    id              TEXT PRIMARY KEY,
    group_id        TEXT NOT NULL REFERENCES error_groups (id),
    kind            TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('pending', 'sent', 'failed')),
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    last_error      TEXT,
    created_at      BIGINT NOT NULL,
    sent_at         BIGINT
);
-- The delivery worker's queue: pending alerts by due time.
CREATE INDEX alert_outbox_due ON alert_outbox (status, next_attempt_at);
-- Retention deletes a group's alerts with the group.
CREATE INDEX alert_outbox_by_group ON alert_outbox (group_id);
