-- The W3C traceparent of the span that recorded each outbox event (see
-- event_pipeline::outbox), and of the span that processed each received
-- event, parent of every delivery attempt's span, retries included.
ALTER TABLE outbox ADD COLUMN traceparent text;
ALTER TABLE events ADD COLUMN traceparent text;
