-- The service's tables on PostgreSQL: the same columns as on SQLite. Constraints are named as
-- PostgreSQL names them by default ({table}_{column}_key, _fkey, _check), which is how a
-- violation's 409 names its field.

CREATE TABLE users (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- stored lowercased: unique regardless of case
    email      TEXT        NOT NULL CONSTRAINT users_email_key UNIQUE,
    -- kept as typed, unique regardless of case (usernames are ASCII only)
    username   TEXT        NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX users_username_key ON users (lower(username));

CREATE TABLE products (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        TEXT        NOT NULL,
    price_cents BIGINT      NOT NULL CONSTRAINT products_price_cents_check CHECK (price_cents >= 0),
    stock       BIGINT      NOT NULL CONSTRAINT products_stock_check CHECK (stock >= 0),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE orders (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id     BIGINT      NOT NULL CONSTRAINT orders_user_id_fkey REFERENCES users (id),
    product_id  BIGINT      NOT NULL CONSTRAINT orders_product_id_fkey REFERENCES products (id),
    quantity    BIGINT      NOT NULL CONSTRAINT orders_quantity_check CHECK (quantity BETWEEN 1 AND 1000),
    total_cents BIGINT      NOT NULL CONSTRAINT orders_total_cents_check CHECK (total_cents >= 0),
    status      TEXT        NOT NULL DEFAULT 'pending'
                CONSTRAINT orders_status_check CHECK (status IN ('pending', 'paid', 'cancelled')),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX orders_user_id ON orders (user_id);
CREATE INDEX orders_product_id ON orders (product_id);

CREATE TABLE analytics_events (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name       TEXT        NOT NULL,
    properties JSONB       NOT NULL,
    request_id TEXT,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX analytics_events_name ON analytics_events (name, created_at);
CREATE INDEX analytics_events_created ON analytics_events (created_at);

CREATE TABLE webhook_endpoints (
    id                    BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    url                   TEXT        NOT NULL,
    events                JSONB       NOT NULL,  -- array of event types
    secret                TEXT        NOT NULL,  -- whsec_…
    previous_secret       TEXT,
    previous_secret_until TIMESTAMPTZ,
    deleted_at            TIMESTAMPTZ,
    created_at            TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE webhook_deliveries (
    id               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    endpoint_id      BIGINT      NOT NULL
                     CONSTRAINT webhook_deliveries_endpoint_id_fkey REFERENCES webhook_endpoints (id),
    event            TEXT        NOT NULL,
    -- webhook-id, the same on every attempt
    message_id       TEXT        NOT NULL CONSTRAINT webhook_deliveries_message_id_key UNIQUE,
    payload          TEXT        NOT NULL,  -- the exact body sent on every attempt
    job_id           BIGINT,
    last_status_code INTEGER,
    last_error       TEXT,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX webhook_deliveries_endpoint ON webhook_deliveries (endpoint_id, id);
CREATE INDEX webhook_deliveries_job ON webhook_deliveries (job_id);

CREATE TABLE inbound_webhooks (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- webhook-id: a repeat is not processed again
    message_id   TEXT        NOT NULL CONSTRAINT inbound_webhooks_message_id_key UNIQUE,
    type         TEXT        NOT NULL,
    order_id     BIGINT      NOT NULL,
    status       TEXT        NOT NULL DEFAULT 'received'
                 CONSTRAINT inbound_webhooks_status_check
                 CHECK (status IN ('received', 'processed', 'failed')),
    error        TEXT,
    received_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    processed_at TIMESTAMPTZ
);
CREATE INDEX inbound_webhooks_processed ON inbound_webhooks (processed_at)
    WHERE processed_at IS NOT NULL;
