-- Request counts per workspace per minute: small, append-mostly, and enough
-- to answer any window at minute resolution.
CREATE TABLE request_metrics (
    workspace_id text        NOT NULL,
    minute       timestamptz NOT NULL,
    requests     bigint      NOT NULL DEFAULT 0,
    errors       bigint      NOT NULL DEFAULT 0,
    PRIMARY KEY (workspace_id, minute)
);
