-- Integrations become real connections: a kind, what to connect to, the
-- sealed credentials, and how the connection has been doing. Rows of the
-- old shape (nothing ever wrote them through the API) keep their provider
-- as the kind, a database becoming a postgres one.
ALTER TABLE integrations DROP CONSTRAINT IF EXISTS integrations_provider_check;
ALTER TABLE integrations RENAME COLUMN provider TO kind;
UPDATE integrations SET kind = 'postgres' WHERE kind = 'database';
ALTER TABLE integrations
    ADD CONSTRAINT integrations_kind_check CHECK (kind IN ('shopify', 'salesforce', 'postgres', 'mysql')),
    ADD COLUMN name               text        NOT NULL DEFAULT '',
    -- What to connect to, as checked; never a secret.
    ADD COLUMN settings           jsonb       NOT NULL DEFAULT '{}',
    -- The credentials, sealed (see the sealing crate) for this workspace
    -- and this integration only.
    ADD COLUMN credentials_sealed bytea,
    ADD COLUMN scopes             text[]      NOT NULL DEFAULT '{}',
    ADD COLUMN last_sync_at       timestamptz,
    ADD COLUMN last_error         text        NOT NULL DEFAULT '',
    ADD COLUMN updated_at         timestamptz NOT NULL DEFAULT now();
