-- Foundation: organizations, API keys, events, ticket types, holds, job runs.
-- Instants are BIGINT milliseconds since the Unix epoch (UTC), as in the SQLite schema.

CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE organizations (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE api_keys (
    id              TEXT PRIMARY KEY,
    organization_id TEXT NOT NULL REFERENCES organizations (id),
    secret_sha256   TEXT NOT NULL,
    created_at      BIGINT NOT NULL
);

CREATE TABLE events (
    id              TEXT PRIMARY KEY,
    organization_id TEXT NOT NULL REFERENCES organizations (id),
    name            TEXT NOT NULL,
    starts_at       BIGINT NOT NULL,
    currency        TEXT NOT NULL,
    hold_seconds    BIGINT,
    created_at      BIGINT NOT NULL
);
CREATE INDEX events_newest ON events (created_at DESC, id DESC);
CREATE INDEX events_by_organization ON events (organization_id, created_at DESC, id DESC);

-- `held` counts tickets in active holds, including holds that expired but are not swept
-- yet; readers subtract those. The CHECK makes overselling impossible even for a bug.
CREATE TABLE ticket_types (
    id            TEXT PRIMARY KEY,
    event_id      TEXT NOT NULL REFERENCES events (id),
    name          TEXT NOT NULL,
    price_cents   BIGINT NOT NULL CHECK (price_cents >= 0),
    capacity      BIGINT NOT NULL CHECK (capacity >= 0),
    max_per_order BIGINT NOT NULL CHECK (max_per_order > 0),
    on_sale       BOOLEAN NOT NULL,
    sold          BIGINT NOT NULL DEFAULT 0,
    held          BIGINT NOT NULL DEFAULT 0,
    created_at    BIGINT NOT NULL,
    CHECK (sold >= 0 AND held >= 0 AND sold + held <= capacity)
);
CREATE INDEX ticket_types_by_event ON ticket_types (event_id, created_at, id);

CREATE TABLE holds (
    id             TEXT PRIMARY KEY,
    event_id       TEXT NOT NULL REFERENCES events (id),
    status         TEXT NOT NULL CHECK (status IN ('active', 'expired', 'completed', 'cancelled')),
    customer_email TEXT,
    amount_cents   BIGINT NOT NULL,
    currency       TEXT NOT NULL,
    created_at     BIGINT NOT NULL,
    expires_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL
);
-- The sweeper's and the lazy release's queue: only active holds, by expiry.
CREATE INDEX holds_active_by_expiry ON holds (expires_at, id) WHERE status = 'active';
CREATE INDEX holds_by_status ON holds (status, expires_at);

CREATE TABLE hold_items (
    hold_id          TEXT NOT NULL REFERENCES holds (id),
    ticket_type_id   TEXT NOT NULL REFERENCES ticket_types (id),
    quantity         BIGINT NOT NULL CHECK (quantity > 0),
    unit_price_cents BIGINT NOT NULL,
    PRIMARY KEY (hold_id, ticket_type_id)
);
CREATE INDEX hold_items_by_ticket_type ON hold_items (ticket_type_id);

CREATE TABLE job_runs (
    id          TEXT PRIMARY KEY,
    job         TEXT NOT NULL,
    started_at  BIGINT NOT NULL,
    finished_at BIGINT NOT NULL,
    outcome     TEXT NOT NULL,
    affected    BIGINT NOT NULL,
    error       TEXT
);
CREATE INDEX job_runs_by_job ON job_runs (job, started_at DESC);
