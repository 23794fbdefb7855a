-- OAuth 2.0 authorization server state. Codes and refresh tokens are kept
-- only as SHA-256 hashes: a database leak yields nothing usable.

CREATE TABLE oauth_clients (
    id             text        PRIMARY KEY,
    workspace_id   text        NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    name           text        NOT NULL,
    kind           text        NOT NULL CHECK (kind IN ('confidential', 'public')),
    secret_hash    bytea,
    redirect_uris  text[]      NOT NULL,
    allowed_scopes text[]      NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    CHECK ((kind = 'confidential') = (secret_hash IS NOT NULL))
);
CREATE INDEX oauth_clients_by_workspace ON oauth_clients (workspace_id, created_at DESC, id DESC);

CREATE TABLE oauth_codes (
    code_hash      bytea       PRIMARY KEY,
    client_id      text        NOT NULL REFERENCES oauth_clients (id) ON DELETE CASCADE,
    workspace_id   text        NOT NULL,
    principal_id   text        NOT NULL,
    redirect_uri   text        NOT NULL,
    scopes         text[]      NOT NULL,
    code_challenge text,
    expires_at     timestamptz NOT NULL,
    used_at        timestamptz,
    -- The refresh token family the code was exchanged for, so a replayed
    -- code can revoke what it produced (RFC 6749 section 4.1.2).
    family_id      text
);

CREATE TABLE oauth_refresh_tokens (
    token_hash   bytea       PRIMARY KEY,
    family_id    text        NOT NULL,
    client_id    text        NOT NULL REFERENCES oauth_clients (id) ON DELETE CASCADE,
    workspace_id text        NOT NULL,
    principal_id text        NOT NULL,
    scopes       text[]      NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    rotated_at   timestamptz,
    revoked_at   timestamptz
);
CREATE INDEX oauth_refresh_tokens_by_family ON oauth_refresh_tokens (family_id);

-- The gateway's own token signing keys. A retired key stays published (and
-- verifying) until every token it signed has expired.
CREATE TABLE oauth_signing_keys (
    kid             text        PRIMARY KEY,
    private_key_der bytea       NOT NULL,
    public_jwk      jsonb       NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    retired_at      timestamptz
);
