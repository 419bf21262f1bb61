-- Users, products and orders. Timestamps are RFC 3339 text in UTC, made by SQLite itself so
-- that a row's time is the time of its commit, not of the request that built it.

CREATE TABLE users (
    id         INTEGER PRIMARY KEY,
    -- stored lowercased: unique regardless of case
    email      TEXT    NOT NULL UNIQUE,
    -- kept as typed, unique regardless of ASCII case (usernames are ASCII only)
    username   TEXT    NOT NULL UNIQUE COLLATE NOCASE,
    created_at TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

CREATE TABLE products (
    id          INTEGER PRIMARY KEY,
    name        TEXT    NOT NULL,
    price_cents INTEGER NOT NULL CHECK (price_cents >= 0),
    stock       INTEGER NOT NULL CHECK (stock >= 0),
    created_at  TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

CREATE TABLE orders (
    id          INTEGER PRIMARY KEY,
    user_id     INTEGER NOT NULL REFERENCES users (id),
    product_id  INTEGER NOT NULL REFERENCES products (id),
    quantity    INTEGER NOT NULL CHECK (quantity BETWEEN 1 AND 1000),
    total_cents INTEGER NOT NULL CHECK (total_cents >= 0),
    status      TEXT    NOT NULL DEFAULT 'pending'
                CHECK (status IN ('pending', 'paid', 'cancelled')),
    created_at  TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

CREATE INDEX orders_user_id ON orders (user_id);
CREATE INDEX orders_product_id ON orders (product_id);
