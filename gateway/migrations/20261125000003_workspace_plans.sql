-- The plan names a rate limit quota from GATEWAY_RATE_LIMIT_PLANS.
ALTER TABLE workspaces ADD COLUMN plan text NOT NULL DEFAULT 'default';
