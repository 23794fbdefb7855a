-- Replays run in the background a page at a time; each row is a replay's
-- progress: the last event it reached (received_at, id) and its counts.
CREATE TABLE replays (
    id               text        PRIMARY KEY,
    workspace_id     text        NOT NULL,
    endpoint_id      text        NOT NULL,
    since            timestamptz NOT NULL,
    until            timestamptz NOT NULL,
    status           text        NOT NULL CHECK (status IN ('running', 'done', 'capped')),
    after_received   timestamptz,
    after_event      text,
    examined         bigint      NOT NULL DEFAULT 0,
    replayed         bigint      NOT NULL DEFAULT 0,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    finished_at      timestamptz
);
CREATE INDEX replays_running ON replays (updated_at) WHERE status = 'running';
-- Keyset pages of a workspace's events in (received_at, id) order.
CREATE INDEX events_by_workspace_and_id ON events (workspace_id, received_at, id);
