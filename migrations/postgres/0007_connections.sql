-- Organization storage connections. The record lives in `doc`, with the credentials sealed in
-- it. `name` is NULL once a connection is archived, so that its name can be used again.
CREATE TABLE connections (
    seq    BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id     TEXT NOT NULL UNIQUE,
    org_id TEXT NOT NULL,
    name   TEXT,
    doc    JSONB NOT NULL,
    UNIQUE (org_id, name)
);
