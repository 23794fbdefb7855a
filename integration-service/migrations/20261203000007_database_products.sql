-- Products a workspace's own database offers, as last read, and where
-- reading it stands. A row is read again whenever its change time moves;
-- `stock_state` remembers whether it was low or out, so crossing the
-- threshold is announced once.
CREATE TABLE db_products (
    integration_id text        NOT NULL,
    external_id    text        NOT NULL,
    workspace_id   text        NOT NULL,
    title          text        NOT NULL,
    description    text        NOT NULL DEFAULT '',
    price          text,
    stock          bigint,
    stock_state    text        NOT NULL DEFAULT 'in_stock' CHECK (stock_state IN ('in_stock', 'low', 'out')),
    changed        text        NOT NULL,
    read_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (integration_id, external_id)
);

CREATE TABLE db_sources (
    integration_id text        PRIMARY KEY,
    -- The change time and id of the last row read: the next read starts after.
    cursor_changed text        NOT NULL DEFAULT '',
    cursor_id      text        NOT NULL DEFAULT '',
    next_poll_at   timestamptz NOT NULL DEFAULT now(),
    last_error     text        NOT NULL DEFAULT ''
);
