-- Payments: orders (one per reservation) and idempotency records (SPEC §5).
-- Same version and shape as the PostgreSQL migration.

-- The payment grace extends a hold once, when its first payment starts.
ALTER TABLE holds ADD COLUMN payment_grace_applied BOOLEAN NOT NULL DEFAULT FALSE;

CREATE TABLE orders (
    id                TEXT PRIMARY KEY,
    hold_id           TEXT NOT NULL UNIQUE REFERENCES holds (id),
    status            TEXT NOT NULL CHECK (status IN ('pending', 'paid', 'failed', 'refunded', 'cancelled')),
    amount_cents      BIGINT NOT NULL CHECK (amount_cents >= 0),
    currency          TEXT NOT NULL,
    payment_intent_id TEXT UNIQUE,
    client_secret     TEXT,
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL
);

-- One row per (caller scope, client key). `locked_until` is the in-flight lock: a request
-- holds it while it works, and it lapses by itself if the process dies.
CREATE TABLE idempotency_keys (
    scope           TEXT NOT NULL,
    client_key      TEXT NOT NULL,
    hold_id         TEXT NOT NULL,
    fingerprint     TEXT NOT NULL,
    recovery_point  TEXT NOT NULL CHECK (recovery_point IN ('started', 'order_created', 'finished')),
    order_id        TEXT REFERENCES orders (id),
    locked_until    BIGINT,
    response_status BIGINT,
    response_body   TEXT,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    PRIMARY KEY (scope, client_key)
);
CREATE INDEX idempotency_keys_by_age ON idempotency_keys (created_at);
-- The completer's queue.
CREATE INDEX idempotency_keys_stalled ON idempotency_keys (created_at) WHERE recovery_point = 'order_created';
