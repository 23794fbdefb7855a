-- What a connection registered on the other side, to show and to remove
-- when it disconnects: webhook topics and their subscription ids, in the
-- same order.
ALTER TABLE integrations
    ADD COLUMN webhook_topics           text[] NOT NULL DEFAULT '{}',
    ADD COLUMN webhook_subscription_ids text[] NOT NULL DEFAULT '{}';

-- Shopify's webhook deliveries, stored as received (the exact bytes) before
-- they are answered, once per webhook id, and processed afterwards. A
-- claimed delivery's next_attempt_at is its lease; a failed one's, its
-- retry. Processed rows stay a week so a late retry is still a duplicate.
CREATE TABLE shopify_deliveries (
    integration_id  text        NOT NULL,
    webhook_id      text        NOT NULL,
    workspace_id    text        NOT NULL,
    topic           text        NOT NULL,
    triggered_at    timestamptz NOT NULL,
    body            bytea       NOT NULL,
    received_at     timestamptz NOT NULL DEFAULT now(),
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    processed_at    timestamptz,
    last_error      text        NOT NULL DEFAULT '',
    PRIMARY KEY (integration_id, webhook_id)
);
CREATE INDEX shopify_deliveries_due ON shopify_deliveries (next_attempt_at) WHERE processed_at IS NULL;
CREATE INDEX shopify_deliveries_processed ON shopify_deliveries (processed_at) WHERE processed_at IS NOT NULL;

-- A store's products as last heard of. `triggered_at` is when Shopify
-- produced what the row holds: older news never overwrites it. A deleted
-- product keeps its row (deleted_at) so a stale update cannot revive it.
-- Shopify ids are 64-bit integers, kept exactly.
CREATE TABLE shopify_products (
    integration_id text        NOT NULL,
    product_id     bigint      NOT NULL,
    workspace_id   text        NOT NULL,
    title          text        NOT NULL,
    description    text        NOT NULL,
    handle         text        NOT NULL,
    status         text        NOT NULL,
    updated_at     timestamptz,
    triggered_at   timestamptz NOT NULL,
    deleted_at     timestamptz,
    PRIMARY KEY (integration_id, product_id)
);

CREATE TABLE shopify_variants (
    integration_id     text    NOT NULL,
    variant_id         bigint  NOT NULL,
    product_id         bigint  NOT NULL,
    title              text    NOT NULL,
    sku                text    NOT NULL,
    -- As Shopify writes it ("19.99"), in the store's currency.
    price              text    NOT NULL,
    inventory_item_id  bigint,
    inventory_quantity bigint,
    PRIMARY KEY (integration_id, variant_id),
    FOREIGN KEY (integration_id, product_id) REFERENCES shopify_products ON DELETE CASCADE
);
CREATE INDEX shopify_variants_of_product ON shopify_variants (integration_id, product_id);
CREATE INDEX shopify_variants_by_item ON shopify_variants (integration_id, inventory_item_id);

-- Stock per inventory item and location, from inventory_levels/update.
CREATE TABLE shopify_inventory_levels (
    integration_id    text        NOT NULL,
    inventory_item_id bigint      NOT NULL,
    location_id       bigint      NOT NULL,
    available         bigint,
    updated_at        timestamptz NOT NULL,
    PRIMARY KEY (integration_id, inventory_item_id, location_id)
);

-- Orders, as summaries a bot can answer "where is my order" from.
CREATE TABLE shopify_orders (
    integration_id     text        NOT NULL,
    order_id           bigint      NOT NULL,
    workspace_id       text        NOT NULL,
    name               text        NOT NULL,
    email              text        NOT NULL,
    customer_id        bigint,
    financial_status   text        NOT NULL,
    fulfillment_status text        NOT NULL,
    total_price        text        NOT NULL,
    currency           text        NOT NULL,
    -- [{"title", "quantity"}]
    line_items         jsonb       NOT NULL,
    -- [{"number", "company", "url"}]
    tracking           jsonb       NOT NULL,
    cancelled_at       timestamptz,
    created_at         timestamptz,
    updated_at         timestamptz,
    triggered_at       timestamptz NOT NULL,
    PRIMARY KEY (integration_id, order_id)
);
CREATE INDEX shopify_orders_by_customer ON shopify_orders (integration_id, customer_id);
CREATE INDEX shopify_orders_by_email ON shopify_orders (integration_id, lower(email));

-- What a customer asked to see of their data (customers/data_request):
-- the export, for the workspace to send them.
CREATE TABLE shopify_data_requests (
    integration_id text        NOT NULL,
    request_id     bigint      NOT NULL,
    workspace_id   text        NOT NULL,
    customer       jsonb       NOT NULL,
    export         jsonb       NOT NULL,
    received_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (integration_id, request_id)
);
CREATE INDEX shopify_data_requests_newest_first ON shopify_data_requests (workspace_id, received_at DESC);
