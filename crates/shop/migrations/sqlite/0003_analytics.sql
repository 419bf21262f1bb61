-- Analytics events, recorded after the response of the request that caused them.
CREATE TABLE analytics_events (
    id         INTEGER PRIMARY KEY,
    name       TEXT NOT NULL,
    properties TEXT NOT NULL,            -- JSON object
    request_id TEXT,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE INDEX analytics_events_name ON analytics_events (name, created_at);
