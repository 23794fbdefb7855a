-- Other services reach a customer's open conversation by the customer the
-- workspace's backend put in its metadata (`metadata.customer.email`,
-- `.shopify_customer_id`): a shipped order's tracking number, say.
CREATE INDEX conversations_open_by_customer_email
    ON conversations (workspace_id, lower(metadata -> 'customer' ->> 'email'))
    WHERE status <> 'ended';
CREATE INDEX conversations_open_by_shopify_customer
    ON conversations (workspace_id, (metadata -> 'customer' ->> 'shopify_customer_id'))
    WHERE status <> 'ended';
