-- Optional FIFO per conversation: an endpoint that asks for it gets one
-- conversation's deliveries one at a time, in the order events arrived.
ALTER TABLE endpoints ADD COLUMN ordered_by_conversation boolean NOT NULL DEFAULT false;
ALTER TABLE deliveries
    ADD COLUMN sequence bigserial,
    -- The conversation, set only for endpoints that want ordering.
    ADD COLUMN ordering_key text;
CREATE INDEX deliveries_ordering ON deliveries (endpoint_id, ordering_key, sequence)
    WHERE ordering_key IS NOT NULL AND status = 'pending';
