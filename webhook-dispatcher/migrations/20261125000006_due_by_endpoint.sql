-- A backlogged endpoint's lanes lease its next due delivery directly.
CREATE INDEX deliveries_due_by_endpoint ON deliveries (endpoint_id, next_attempt_at) WHERE status = 'pending';
