-- The buyer e-mail outbox (SPEC §9). Same version and shape on both engines.

-- A message is queued by the transaction that marks its order paid (a confirmation) or
-- refunded (a refund notice), so it is never lost and never queued twice: one per order
-- and kind. A sender leases a message by moving `next_attempt_at` forward; `attempts`
-- counts finished attempts. `recipient` is the hold's `customer_email` when queued.
CREATE TABLE emails (
    id              TEXT PRIMARY KEY,
    order_id        TEXT NOT NULL REFERENCES orders (id),
    kind            TEXT NOT NULL CHECK (kind IN ('confirmation', 'refund')),
    recipient       TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('queued', 'sent', 'failed')),
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    last_error      TEXT,
    created_at      BIGINT NOT NULL,
    sent_at         BIGINT,
    UNIQUE (order_id, kind)
);
-- The sender's queue: queued messages by due time.
CREATE INDEX emails_due ON emails (status, next_attempt_at);
-- The operator's listing, newest first.
CREATE INDEX emails_newest ON emails (created_at DESC, id DESC);

-- Every attempt to send a message: when, how it ended, and what the mail server said (or
-- the error). `attempt` numbers a message's attempts from 1; the primary key is also the
-- index by message.
CREATE TABLE email_attempts (
    email_id     TEXT NOT NULL REFERENCES emails (id),
    attempt      BIGINT NOT NULL,
    attempted_at BIGINT NOT NULL,
    outcome      TEXT NOT NULL CHECK (outcome IN ('sent', 'failed')),
    reply        TEXT NOT NULL,
    PRIMARY KEY (email_id, attempt)
);
