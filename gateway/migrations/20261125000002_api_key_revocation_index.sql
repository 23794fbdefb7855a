-- Listing a workspace's keys pages newest first by (created_at, id).
DROP INDEX IF EXISTS api_keys_by_workspace;
CREATE INDEX api_keys_by_workspace ON api_keys (workspace_id, created_at DESC, id DESC);
