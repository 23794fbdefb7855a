-- A database's products become knowledge of the bots linked to it, as a
-- store's do: each change of what a bot would read bumps
-- knowledge_version, and the pusher records the version it sent.
ALTER TABLE db_products
    ADD COLUMN knowledge_version bigint NOT NULL DEFAULT 1,
    ADD COLUMN knowledge_synced  bigint NOT NULL DEFAULT 0;
CREATE INDEX db_products_knowledge_pending
    ON db_products (integration_id) WHERE knowledge_version > knowledge_synced;

-- Whose items a clear removes (`shopify:int_…`, `postgres:int_…`): the
-- connection may be gone by the time it is worked.
ALTER TABLE knowledge_clears ADD COLUMN source text;
UPDATE knowledge_clears SET source = 'shopify:' || integration_id;
ALTER TABLE knowledge_clears ALTER COLUMN source SET NOT NULL;

-- Stock the workspace sent through its inventory webhook, as of the
-- webhook's timestamp: an older delivery retried late never overwrites a
-- newer one. Reading the database itself overwrites both: it is the truth.
ALTER TABLE db_products ADD COLUMN stock_at timestamptz;

-- Inventory webhooks taken, by the sender's webhook id, so a retried one
-- changes nothing. Deliveries are refused when more than five minutes
-- old, so a day of ids is plenty.
CREATE TABLE db_inventory_deliveries (
    integration_id text        NOT NULL,
    webhook_id     text        NOT NULL,
    received_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (integration_id, webhook_id)
);
CREATE INDEX db_inventory_deliveries_age ON db_inventory_deliveries (received_at);

-- Rows deleted in the workspace's database leave no change time to poll
-- for: every few polls the ids are read whole, and a product no longer
-- there is marked deleted (and removed from the bots' knowledge).
ALTER TABLE db_products ADD COLUMN deleted_at timestamptz;
ALTER TABLE db_sources ADD COLUMN next_sweep_at timestamptz NOT NULL DEFAULT now();
