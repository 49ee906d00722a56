-- Sync configurations: a connection's files kept in step with a bucket. The record lives in
-- `doc`; `locked_by` and `locked_until` let one run at a time hold the sync.
CREATE TABLE syncs (
    seq          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id           TEXT NOT NULL UNIQUE,
    org_id       TEXT NOT NULL,
    namespace_id TEXT NOT NULL,
    bucket_id    TEXT NOT NULL,
    doc          JSONB NOT NULL,
    locked_by    TEXT,
    locked_until TEXT
);
CREATE INDEX syncs_by_bucket ON syncs (bucket_id, seq);

-- One row per run of a sync.
CREATE TABLE sync_jobs (
    seq          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id           TEXT NOT NULL UNIQUE,
    org_id       TEXT NOT NULL,
    namespace_id TEXT NOT NULL,
    bucket_id    TEXT NOT NULL,
    sync_id      TEXT NOT NULL,
    doc          JSONB NOT NULL
);
CREATE INDEX sync_jobs_by_sync ON sync_jobs (sync_id, seq);

-- What each sync has copied: one row per source file, as it was when copied. `seen_run` is the
-- last run whose listing showed the file, which tells deleted files apart.
CREATE TABLE sync_ledger (
    sync_id       TEXT NOT NULL,
    key           TEXT NOT NULL,
    etag          TEXT,
    size          BIGINT NOT NULL,
    last_modified TEXT NOT NULL,
    object_id     TEXT NOT NULL,
    seen_run      BIGINT NOT NULL,
    PRIMARY KEY (sync_id, key)
);

-- Files whose copy keeps failing. After a bounded number of failed runs a file is quarantined
-- (the dead-letter list) and skipped until requeued; `failed` entries are never retried.
CREATE TABLE sync_failures (
    sync_id    TEXT NOT NULL,
    key        TEXT NOT NULL,
    state      TEXT NOT NULL,
    error_type TEXT NOT NULL,
    doc        JSONB NOT NULL,
    PRIMARY KEY (sync_id, key)
);
