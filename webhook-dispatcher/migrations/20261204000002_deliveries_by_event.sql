-- Pruning events checks that no delivery refers to them (and so does the
-- foreign key when one is deleted): by index, not by scanning deliveries.
CREATE INDEX deliveries_by_event ON deliveries (event_id);
