-- When an endpoint started failing without a success since; cleared by the
-- next success. An endpoint failing for too long is disabled.
ALTER TABLE endpoints ADD COLUMN failing_since timestamptz;

-- Events this service emits itself (see service_runtime::outbox).
CREATE TABLE outbox (
    id           bigserial   PRIMARY KEY,
    event_id     text        NOT NULL UNIQUE,
    workspace_id text        NOT NULL,
    event_type   text        NOT NULL,
    body         bytea       NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz
);
CREATE INDEX outbox_unpublished ON outbox (id) WHERE published_at IS NULL;
