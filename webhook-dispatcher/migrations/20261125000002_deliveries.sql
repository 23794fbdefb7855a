-- Secrets are stored encrypted (AES-256-GCM, key from configuration). The
-- previous secret keeps signing until previous_secret_expires_at.
ALTER TABLE endpoints
    ADD COLUMN secret_sealed bytea NOT NULL DEFAULT '\x',
    ADD COLUMN previous_secret_sealed bytea,
    ADD COLUMN previous_secret_expires_at timestamptz,
    ADD COLUMN updated_at timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN disabled_reason text NOT NULL DEFAULT '';

-- Every event the dispatcher received, kept as the exact bytes to send.
CREATE TABLE events (
    id           text        PRIMARY KEY,
    workspace_id text        NOT NULL,
    event_type   text        NOT NULL,
    body         bytea       NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX events_by_workspace ON events (workspace_id, received_at);

CREATE TABLE deliveries (
    id              text        PRIMARY KEY,
    workspace_id    text        NOT NULL,
    endpoint_id     text        NOT NULL,
    event_id        text        NOT NULL REFERENCES events (id),
    event_type      text        NOT NULL,
    status          text        NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed')),
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (endpoint_id, event_id),
    FOREIGN KEY (workspace_id, endpoint_id) REFERENCES endpoints (workspace_id, id) ON DELETE CASCADE
);
CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX deliveries_by_endpoint ON deliveries (workspace_id, endpoint_id, created_at DESC, id DESC);

CREATE TABLE attempts (
    id               bigserial   PRIMARY KEY,
    delivery_id      text        NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
    attempted_at     timestamptz NOT NULL DEFAULT now(),
    http_status      integer,
    error            text        NOT NULL DEFAULT '',
    latency_ms       integer     NOT NULL,
    response_excerpt text        NOT NULL DEFAULT ''
);
CREATE INDEX attempts_by_delivery ON attempts (delivery_id, id);
