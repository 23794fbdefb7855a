-- The relay now deletes events once the broker confirms them, so the
-- outbox only holds what is yet to be sent. Rows published before this
-- upgrade are removed, lest they be sent again; the partial index on
-- unpublished rows would now duplicate the primary key.
DELETE FROM outbox WHERE published_at IS NOT NULL;
DROP INDEX IF EXISTS outbox_unpublished;
