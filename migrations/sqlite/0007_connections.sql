-- Organization storage connections. The record lives in `doc`, with the credentials sealed in
-- it. `name` is NULL once a connection is archived, so that its name can be used again.
CREATE TABLE connections (
    seq    INTEGER PRIMARY KEY AUTOINCREMENT,
    id     TEXT NOT NULL UNIQUE,
    org_id TEXT NOT NULL,
    name   TEXT,
    doc    TEXT NOT NULL,
    UNIQUE (org_id, name)
);
