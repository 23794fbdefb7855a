-- Customers told in their open conversation when their order ships: one
-- row per tracking number an order gains, written in the transaction that
-- stores the order, sent to chatbot-service by any replica and deleted
-- once it answered (whether or not the customer had a conversation open).
CREATE TABLE order_notices (
    integration_id  text        NOT NULL,
    order_id        bigint      NOT NULL,
    tracking_number text        NOT NULL,
    workspace_id    text        NOT NULL,
    customer_email  text        NOT NULL,
    customer_id     bigint,
    content         text        NOT NULL,
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (integration_id, order_id, tracking_number)
);
CREATE INDEX order_notices_due ON order_notices (next_attempt_at);
