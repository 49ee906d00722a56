-- The production store. Every resource keeps its full record as JSONB in `doc`; the other
-- columns exist to scope, index and constrain it.

CREATE TABLE organizations (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    internal_id TEXT NOT NULL UNIQUE,
    created_at  TEXT NOT NULL
);

CREATE TABLE api_keys (
    id         TEXT PRIMARY KEY,
    org_id     TEXT NOT NULL REFERENCES organizations (id),
    name       TEXT NOT NULL,
    key_hash   TEXT NOT NULL UNIQUE,
    key_prefix TEXT NOT NULL,
    created_at TEXT NOT NULL,
    revoked_at TEXT
);

CREATE TABLE namespaces (
    seq    BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id     TEXT NOT NULL UNIQUE,
    org_id TEXT NOT NULL REFERENCES organizations (id),
    name   TEXT NOT NULL,
    doc    JSONB NOT NULL,
    UNIQUE (org_id, name)
);

CREATE TABLE buckets (
    seq          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id           TEXT NOT NULL UNIQUE,
    org_id       TEXT NOT NULL,
    namespace_id TEXT NOT NULL REFERENCES namespaces (id),
    name         TEXT NOT NULL,
    doc          JSONB NOT NULL,
    UNIQUE (namespace_id, name)
);

CREATE TABLE objects (
    seq             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id              TEXT NOT NULL UNIQUE,
    org_id          TEXT NOT NULL,
    namespace_id    TEXT NOT NULL,
    bucket_id       TEXT NOT NULL REFERENCES buckets (id),
    doc             JSONB NOT NULL,
    size_bytes      BIGINT NOT NULL DEFAULT 0,
    idempotency_key TEXT,
    unique_key      TEXT,
    deleted_at      TEXT
);
CREATE INDEX objects_by_bucket ON objects (bucket_id, seq);
CREATE UNIQUE INDEX objects_idempotency ON objects (bucket_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE UNIQUE INDEX objects_unique_key ON objects (bucket_id, unique_key)
    WHERE unique_key IS NOT NULL;

CREATE TABLE object_blob_hashes (
    bucket_id TEXT NOT NULL,
    hash      TEXT NOT NULL,
    object_id TEXT NOT NULL,
    PRIMARY KEY (bucket_id, hash, object_id)
);
CREATE INDEX object_blob_hashes_by_object ON object_blob_hashes (object_id);

CREATE TABLE tasks (
    seq        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id         TEXT NOT NULL UNIQUE,
    org_id     TEXT NOT NULL,
    task_type  TEXT NOT NULL,
    status     TEXT NOT NULL,
    doc        JSONB NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX tasks_by_org ON tasks (org_id, seq);
CREATE INDEX tasks_by_status ON tasks (status);
