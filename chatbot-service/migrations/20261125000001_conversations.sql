-- Every table is keyed by workspace first: every query filters on it, and
-- the primary key doubles as the tenant-scoped lookup index.
CREATE TABLE bots (
    workspace_id   text        NOT NULL,
    id             text        NOT NULL,
    name           text        NOT NULL,
    description    text        NOT NULL DEFAULT '',
    -- chatbot.v1.BotConfig, protobuf-encoded: typed, and evolves with the proto.
    config         bytea       NOT NULL,
    latest_version integer     NOT NULL DEFAULT 0,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace_id, id)
);
CREATE INDEX bots_newest_first ON bots (workspace_id, created_at DESC, id DESC);

CREATE TABLE training_jobs (
    workspace_id     text        NOT NULL,
    id               text        NOT NULL,
    bot_id           text        NOT NULL,
    status           text        NOT NULL,
    version          integer     NOT NULL,
    passages_indexed bigint      NOT NULL DEFAULT 0,
    created_at       timestamptz NOT NULL DEFAULT now(),
    finished_at      timestamptz,
    PRIMARY KEY (workspace_id, id),
    FOREIGN KEY (workspace_id, bot_id) REFERENCES bots (workspace_id, id) ON DELETE CASCADE,
    UNIQUE (workspace_id, bot_id, version)
);

CREATE TABLE conversations (
    workspace_id  text        NOT NULL,
    id            text        NOT NULL,
    user_id       text        NOT NULL,
    channel       text        NOT NULL,
    status        text        NOT NULL CHECK (status IN ('waiting', 'active', 'ended')),
    metadata      jsonb       NOT NULL DEFAULT '{}',
    bot_id        text,
    message_count bigint      NOT NULL DEFAULT 0,
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_activity timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace_id, id),
    FOREIGN KEY (workspace_id, bot_id) REFERENCES bots (workspace_id, id) ON DELETE SET NULL (bot_id)
);
CREATE INDEX conversations_newest_first ON conversations (workspace_id, created_at DESC, id DESC);

CREATE TABLE messages (
    workspace_id    text        NOT NULL,
    id              text        NOT NULL,
    conversation_id text        NOT NULL,
    sequence        bigint      NOT NULL,
    role            text        NOT NULL CHECK (role IN ('user', 'bot', 'agent', 'system')),
    content         text        NOT NULL,
    metadata        jsonb       NOT NULL DEFAULT '{}',
    idempotency_key text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace_id, id),
    UNIQUE (workspace_id, conversation_id, sequence),
    FOREIGN KEY (workspace_id, conversation_id) REFERENCES conversations (workspace_id, id) ON DELETE CASCADE
);
CREATE UNIQUE INDEX messages_idempotency
    ON messages (workspace_id, conversation_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
