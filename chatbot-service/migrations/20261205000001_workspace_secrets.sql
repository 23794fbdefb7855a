-- Secrets a workspace gives its bots (model server API keys), sealed with
-- AES-256-GCM for the workspace, the name and the origin together: a row
-- copied to another workspace, renamed or pointed at another origin no
-- longer opens.
CREATE TABLE workspace_secrets (
    workspace_id text NOT NULL,
    name text NOT NULL,
    origin text NOT NULL,
    sealed bytea NOT NULL,
    fingerprint text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace_id, name)
);
