-- Lanes no longer lease their endpoint's next delivery one at a time (the
-- consumer hands deliveries over directly and the claim loop fills
-- per-endpoint queues), so this index only cost a write per delivery.
DROP INDEX IF EXISTS deliveries_due_by_endpoint;
