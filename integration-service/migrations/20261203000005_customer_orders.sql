-- A bot looks up the orders of the customer a conversation names, over
-- every store of the workspace.
CREATE INDEX shopify_orders_by_workspace_email ON shopify_orders (workspace_id, lower(email));
CREATE INDEX shopify_orders_by_workspace_customer ON shopify_orders (workspace_id, customer_id);
