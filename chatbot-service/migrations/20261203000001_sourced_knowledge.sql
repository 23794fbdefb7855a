-- Items a connected system keeps up to date (a Shopify store's products):
-- which system and connection (`shopify:int_…`) and its own id for the
-- item, unique per bot so a change replaces the item it came from.
ALTER TABLE knowledge_items
    ADD COLUMN source      text NOT NULL DEFAULT '',
    ADD COLUMN external_id text NOT NULL DEFAULT '';
CREATE UNIQUE INDEX knowledge_items_by_source
    ON knowledge_items (workspace_id, bot_id, source, external_id) WHERE source <> '';

-- A job that deploys the version it trains once it succeeds.
ALTER TABLE training_jobs ADD COLUMN deploy_when_trained boolean NOT NULL DEFAULT false;
