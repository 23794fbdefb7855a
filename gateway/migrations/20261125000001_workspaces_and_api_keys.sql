CREATE TABLE workspaces (
    id         text        PRIMARY KEY,
    name       text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Only a SHA-256 of each key is kept: the key itself is shown once, at
-- creation. `lookup_id` is the non-secret part of the key, used to find the
-- row before comparing hashes in constant time.
CREATE TABLE api_keys (
    id           text        PRIMARY KEY,
    workspace_id text        NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    lookup_id    text        NOT NULL UNIQUE,
    secret_hash  bytea       NOT NULL,
    name         text        NOT NULL DEFAULT '',
    scopes       text[]      NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    revoked_at   timestamptz
);
CREATE INDEX api_keys_by_workspace ON api_keys (workspace_id, created_at DESC);
