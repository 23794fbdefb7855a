-- Reconciliation: a sync reads the whole store through the GraphQL Admin
-- API and brings what is stored here in line with it, catching up what
-- webhooks missed. A run is resumable: each page is stored with the cursor
-- after it, so a replica that takes over (or a retry) goes on from there.
CREATE TABLE sync_runs (
    id              text        PRIMARY KEY,
    workspace_id    text        NOT NULL,
    integration_id  text        NOT NULL,
    -- schedule | request
    trigger         text        NOT NULL,
    status          text        NOT NULL CHECK (status IN ('queued', 'running', 'completed', 'failed')),
    -- products | orders: the resource being read, and the cursor after the
    -- last page stored (NULL: from the start).
    phase           text        NOT NULL DEFAULT 'products',
    cursor          text,
    -- The moment the run's view of the store is as of: what it writes is
    -- dated then, and products stored before it that the run did not see
    -- are gone from the store.
    snapshot_at     timestamptz,
    pages           integer     NOT NULL DEFAULT 0,
    created         integer     NOT NULL DEFAULT 0,
    updated         integer     NOT NULL DEFAULT 0,
    removed         integer     NOT NULL DEFAULT 0,
    failed          integer     NOT NULL DEFAULT 0,
    attempts        integer     NOT NULL DEFAULT 0,
    -- While running, the claim of one worker (lease) until lease_until.
    lease           text,
    lease_until     timestamptz,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error      text        NOT NULL DEFAULT '',
    queued_at       timestamptz NOT NULL DEFAULT now(),
    started_at      timestamptz,
    finished_at     timestamptz
);
-- One open run per connection: asking again returns the open one.
CREATE UNIQUE INDEX sync_runs_one_open ON sync_runs (integration_id) WHERE status IN ('queued', 'running');
CREATE INDEX sync_runs_due ON sync_runs (next_attempt_at) WHERE status IN ('queued', 'running');
CREATE INDEX sync_runs_newest_first ON sync_runs (integration_id, queued_at DESC, id DESC);

-- What a row holds, hashed, so a sync (or a repeated webhook) that finds
-- nothing new counts it unchanged and sends no knowledge update.
ALTER TABLE shopify_products
    ADD COLUMN content_hash  bigint,
    ADD COLUMN reconciled_at timestamptz;
ALTER TABLE shopify_orders ADD COLUMN content_hash bigint;
