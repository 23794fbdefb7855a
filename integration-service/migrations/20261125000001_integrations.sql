CREATE TABLE integrations (
    workspace_id text        NOT NULL,
    id           text        NOT NULL,
    provider     text        NOT NULL CHECK (provider IN ('shopify', 'salesforce', 'database')),
    status       text        NOT NULL CHECK (status IN ('connected', 'disconnected', 'error')),
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace_id, id)
);
CREATE INDEX integrations_newest_first ON integrations (workspace_id, created_at DESC, id DESC);
