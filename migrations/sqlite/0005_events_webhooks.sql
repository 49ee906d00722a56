-- The change feed. `seq` orders the feed; SQLite has one writer at a time, so rows commit in
-- `seq` order. The retention sweep walks `seq` from the oldest row.
CREATE TABLE events (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    id            TEXT NOT NULL,
    org_id        TEXT NOT NULL,
    namespace_id  TEXT,
    event_type    TEXT NOT NULL,
    resource_type TEXT NOT NULL,
    operation     TEXT NOT NULL,
    payload       TEXT NOT NULL,
    trace_id      TEXT,
    created_at    TEXT NOT NULL
);
CREATE INDEX events_by_org ON events (org_id, seq);
CREATE INDEX events_by_namespace ON events (namespace_id, seq) WHERE namespace_id IS NOT NULL;

-- Organization webhooks. The record lives in `doc`; signing secrets in it are sealed.
CREATE TABLE webhooks (
    seq    INTEGER PRIMARY KEY AUTOINCREMENT,
    id     TEXT NOT NULL UNIQUE,
    org_id TEXT NOT NULL,
    name   TEXT NOT NULL,
    doc    TEXT NOT NULL,
    UNIQUE (org_id, name)
);

-- One row per delivery of one event to one HTTP channel of a webhook, or to a per-batch
-- callback URL (no webhook). `attempt_log` lists every attempt.
CREATE TABLE webhook_deliveries (
    seq              INTEGER PRIMARY KEY AUTOINCREMENT,
    id               TEXT NOT NULL UNIQUE,
    org_id           TEXT NOT NULL,
    webhook_id       TEXT,
    channel          INTEGER NOT NULL DEFAULT 0,
    event_id         TEXT NOT NULL,
    event_type       TEXT NOT NULL,
    url              TEXT NOT NULL,
    body             TEXT NOT NULL,
    manual           INTEGER NOT NULL DEFAULT 0,
    status           TEXT NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    last_status_code INTEGER,
    last_error       TEXT,
    attempt_log      TEXT NOT NULL,
    created_at       TEXT NOT NULL,
    updated_at       TEXT NOT NULL,
    next_attempt_at  TEXT,
    delivered_at     TEXT
);
CREATE INDEX webhook_deliveries_by_webhook ON webhook_deliveries (webhook_id, seq);
CREATE INDEX webhook_deliveries_by_age ON webhook_deliveries (created_at);
