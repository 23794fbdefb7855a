-- Products become knowledge items of the bots a store is linked to. Every
-- change of a product bumps its knowledge_version; the pusher sends what
-- changed and records the version it sent, so nothing is lost while
-- chatbot-service is away and a burst of changes is sent once.
ALTER TABLE shopify_products
    ADD COLUMN knowledge_version bigint NOT NULL DEFAULT 1,
    ADD COLUMN knowledge_synced  bigint NOT NULL DEFAULT 0;
CREATE INDEX shopify_products_knowledge_pending
    ON shopify_products (integration_id) WHERE knowledge_version > knowledge_synced;

-- Bots whose items of a connection must all go: unlinked, or the
-- connection disconnected or redacted. Kept here with the workspace,
-- because the connection may be gone.
CREATE TABLE knowledge_clears (
    workspace_id   text        NOT NULL,
    integration_id text        NOT NULL,
    bot_id         text        NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (integration_id, bot_id)
);

-- Bots to retrain and deploy once their products have been quiet until
-- due_at; each change pushes due_at back.
CREATE TABLE bot_retrains (
    workspace_id text        NOT NULL,
    bot_id       text        NOT NULL,
    due_at       timestamptz NOT NULL,
    PRIMARY KEY (workspace_id, bot_id)
);
