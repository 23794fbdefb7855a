-- Retention clears idempotency keys older than CHATBOT_RETENTION_DAYS; this
-- finds them without reading every message.
CREATE INDEX messages_idempotency_by_age ON messages (created_at) WHERE idempotency_key IS NOT NULL;
