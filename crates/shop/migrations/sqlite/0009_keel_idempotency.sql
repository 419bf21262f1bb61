-- keel's idempotency answers (keel::sqlite::idempotency::SCHEMA, frozen here).
CREATE TABLE keel_idempotency (
    key         TEXT    PRIMARY KEY,
    fingerprint TEXT    NOT NULL,
    status      INTEGER NOT NULL,
    location    TEXT,
    body        BLOB    NOT NULL,
    created_at  INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX keel_idempotency_created ON keel_idempotency (created_at);
