-- Optional ceiling on deliveries per second to one endpoint; NULL = none.
ALTER TABLE endpoints ADD COLUMN rate_limit_per_second integer CHECK (rate_limit_per_second > 0);
