-- Presigned uploads. The record lives in `doc`; the columns scope it and find duplicates.
CREATE TABLE uploads (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    id           TEXT NOT NULL UNIQUE,
    org_id       TEXT NOT NULL,
    namespace_id TEXT NOT NULL,
    bucket_id    TEXT NOT NULL REFERENCES buckets (id),
    file_hash    TEXT,
    status       TEXT NOT NULL,
    size_bytes   BIGINT NOT NULL DEFAULT 0,
    doc          TEXT NOT NULL
);
CREATE INDEX uploads_by_bucket ON uploads (bucket_id, seq);
CREATE INDEX uploads_by_hash ON uploads (bucket_id, file_hash) WHERE file_hash IS NOT NULL;

-- One-time signed URLs that have been used, so that a replay is refused.
CREATE TABLE used_nonces (
    nonce      TEXT PRIMARY KEY,
    expires_at TEXT NOT NULL
);
