-- Batches, the per-object outcome of each, and what processing writes: one collection per
-- feature extractor of a namespace, and the documents in it.
CREATE TABLE batches (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    id           TEXT NOT NULL UNIQUE,
    org_id       TEXT NOT NULL,
    namespace_id TEXT NOT NULL,
    bucket_id    TEXT NOT NULL,
    status       TEXT NOT NULL,
    doc          TEXT NOT NULL
);
CREATE INDEX batches_by_bucket ON batches (bucket_id, seq);
CREATE INDEX batches_by_org ON batches (org_id, seq);

-- One row per object of a batch. `state` is pending, done, failed or canceled; an outcome is
-- written in the same transaction as the documents it produced, so it is recorded once.
CREATE TABLE batch_items (
    batch_id    TEXT NOT NULL,
    position    INTEGER NOT NULL,
    object_id   TEXT NOT NULL,
    state       TEXT NOT NULL,
    error       TEXT,
    error_type  TEXT,
    documents   INTEGER NOT NULL DEFAULT 0,
    attempts    INTEGER NOT NULL DEFAULT 0,
    finished_at TEXT,
    PRIMARY KEY (batch_id, position),
    UNIQUE (batch_id, object_id)
);
CREATE INDEX batch_items_by_state ON batch_items (batch_id, state);

CREATE TABLE collections (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    id           TEXT NOT NULL UNIQUE,
    org_id       TEXT NOT NULL,
    namespace_id TEXT NOT NULL,
    name         TEXT NOT NULL,
    doc          TEXT NOT NULL,
    UNIQUE (namespace_id, name)
);

-- A document's id is derived from its object, collection and position, so processing an
-- object again replaces its documents instead of adding to them.
CREATE TABLE documents (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    id            TEXT NOT NULL UNIQUE,
    org_id        TEXT NOT NULL,
    namespace_id  TEXT NOT NULL,
    collection_id TEXT NOT NULL,
    bucket_id     TEXT NOT NULL,
    object_id     TEXT NOT NULL,
    batch_id      TEXT NOT NULL,
    doc           TEXT NOT NULL
);
CREATE INDEX documents_by_collection ON documents (collection_id, seq);
CREATE INDEX documents_by_object ON documents (object_id);

