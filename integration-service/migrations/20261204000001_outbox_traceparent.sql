-- The W3C traceparent of the span that recorded each event, so the relay
-- publishes it in the same trace (see event_pipeline::outbox).
ALTER TABLE outbox ADD COLUMN traceparent text;
