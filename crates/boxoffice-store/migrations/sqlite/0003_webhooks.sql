-- Webhooks applied exactly once (SPEC §6): stored events, tickets, late refunds.

-- Every event received, kept as delivered. An event id appears once: a redelivery only
-- counts. `status` says whether its effect has happened; the effect and the status
-- change commit together.
CREATE TABLE webhook_events (
    id             TEXT PRIMARY KEY,
    event_type     TEXT NOT NULL,
    payload        TEXT NOT NULL,
    status         TEXT NOT NULL CHECK (status IN ('pending', 'applied', 'ignored', 'failed')),
    outcome        TEXT,
    last_error     TEXT,
    delivery_count BIGINT NOT NULL,
    attempts       BIGINT NOT NULL DEFAULT 0,
    received_at    BIGINT NOT NULL,
    applied_at     BIGINT,
    retry_at       BIGINT NOT NULL
);
CREATE INDEX webhook_events_due ON webhook_events (retry_at) WHERE status IN ('pending', 'failed');
CREATE INDEX webhook_events_newest ON webhook_events (received_at DESC, id DESC);

-- One row per seat of a paid order. Codes are 128 random bits.
CREATE TABLE tickets (
    code           TEXT PRIMARY KEY,
    order_id       TEXT NOT NULL REFERENCES orders (id),
    ticket_type_id TEXT NOT NULL REFERENCES ticket_types (id),
    status         TEXT NOT NULL CHECK (status IN ('valid', 'void')),
    created_at     BIGINT NOT NULL
);
CREATE INDEX tickets_by_order ON tickets (order_id);

-- Set when a payment arrived after its hold ran out and the tickets were gone: the
-- decision to refund is never reversed, even if capacity frees up later.
ALTER TABLE orders ADD COLUMN refund_requested_at BIGINT;
