-- The operator's dashboard (SPEC §8) lists recent orders, newest first: without this index
-- each look reads the whole orders table.
CREATE INDEX orders_recent ON orders (created_at DESC, id DESC);
