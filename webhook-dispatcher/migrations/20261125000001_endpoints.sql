CREATE TABLE endpoints (
    workspace_id text        NOT NULL,
    id           text        NOT NULL,
    url          text        NOT NULL,
    description  text        NOT NULL DEFAULT '',
    -- Event type filters such as `message.*`; empty means every event.
    event_types  text[]      NOT NULL DEFAULT '{}',
    enabled      boolean     NOT NULL DEFAULT true,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace_id, id)
);
CREATE INDEX endpoints_newest_first ON endpoints (workspace_id, created_at DESC, id DESC);
