-- Outbound webhook subscribers and their deliveries; inbound payment webhooks.

CREATE TABLE webhook_endpoints (
    id         INTEGER PRIMARY KEY,
    url        TEXT NOT NULL,
    events     TEXT NOT NULL,   -- JSON array of event types
    secret     TEXT NOT NULL,   -- whsec_…
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

-- One row per event per subscribed endpoint. Its state, attempts and next attempt are those of
-- its job (keel_jobs); the row keeps what only the delivery knows.
CREATE TABLE webhook_deliveries (
    id               INTEGER PRIMARY KEY,
    endpoint_id      INTEGER NOT NULL REFERENCES webhook_endpoints (id),
    event            TEXT    NOT NULL,
    message_id       TEXT    NOT NULL UNIQUE,  -- webhook-id, the same on every attempt
    payload          TEXT    NOT NULL,         -- the exact body sent on every attempt
    job_id           INTEGER,
    last_status_code INTEGER,
    last_error       TEXT,
    created_at       TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE INDEX webhook_deliveries_endpoint ON webhook_deliveries (endpoint_id, id);

CREATE TABLE inbound_webhooks (
    id           INTEGER PRIMARY KEY,
    message_id   TEXT NOT NULL UNIQUE,          -- webhook-id: a repeat is not processed again
    type         TEXT NOT NULL,
    order_id     INTEGER NOT NULL,
    status       TEXT NOT NULL DEFAULT 'received'
                 CHECK (status IN ('received', 'processed', 'failed')),
    error        TEXT,
    received_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    processed_at TEXT
);
