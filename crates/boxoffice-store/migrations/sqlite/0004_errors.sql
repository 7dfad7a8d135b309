-- The error store (SPEC §7): groups of occurrences of one error, and the occurrences,
-- scrubbed before they get here.

-- `scope` is `org:<id>` for an organization's errors and `server` for boxoffice's own.
-- `severity_rank` orders severities so a group keeps its most severe one.
CREATE TABLE error_groups (
    id               TEXT PRIMARY KEY,
    scope            TEXT NOT NULL,
    fingerprint      TEXT NOT NULL,
    grouping_version BIGINT NOT NULL,
    title            TEXT NOT NULL,
    severity         TEXT NOT NULL,
    severity_rank    BIGINT NOT NULL,
    component        TEXT,
    event_count      BIGINT NOT NULL,
    first_seen       BIGINT NOT NULL,
    last_seen        BIGINT NOT NULL,
    resolved         BOOLEAN NOT NULL DEFAULT FALSE,
    resolved_at      BIGINT,
    UNIQUE (scope, fingerprint)
);
CREATE INDEX error_groups_recent ON error_groups (last_seen DESC, id DESC);

CREATE TABLE error_events (
    event_id    TEXT PRIMARY KEY,
    group_id    TEXT NOT NULL REFERENCES error_groups (id),
    severity    TEXT NOT NULL,
    message     TEXT NOT NULL,
    request_id  TEXT,
    payload     TEXT NOT NULL,
    received_at BIGINT NOT NULL
);
CREATE INDEX error_events_by_group ON error_events (group_id, received_at DESC);
