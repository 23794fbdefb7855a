-- Knowledge, trained versions and the bot's replies.

ALTER TABLE bots ADD COLUMN deployed_version integer NOT NULL DEFAULT 0;

-- What a bot knows, as edited. Replies never read this table: they read the
-- passages of the deployed version, so edits change nothing until trained.
CREATE TABLE knowledge_items (
    workspace_id text        NOT NULL,
    id           text        NOT NULL,
    bot_id       text        NOT NULL,
    kind         text        NOT NULL CHECK (kind IN ('document', 'faq')),
    -- Document title, or the FAQ question.
    title        text        NOT NULL,
    -- Document text, or the FAQ answer.
    body         text        NOT NULL,
    source_url   text        NOT NULL DEFAULT '',
    metadata     jsonb       NOT NULL DEFAULT '{}',
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace_id, id),
    FOREIGN KEY (workspace_id, bot_id) REFERENCES bots (workspace_id, id) ON DELETE CASCADE
);
CREATE INDEX knowledge_items_newest_first ON knowledge_items (workspace_id, bot_id, created_at DESC, id DESC);

ALTER TABLE training_jobs
    ADD COLUMN passages_total bigint      NOT NULL DEFAULT 0,
    ADD COLUMN error          text        NOT NULL DEFAULT '',
    ADD COLUMN started_at     timestamptz,
    -- A running job's worker renews this; a job whose lease lapsed (its
    -- worker died) is picked up again by any replica.
    ADD COLUMN lease_until    timestamptz,
    ADD COLUMN attempts       integer     NOT NULL DEFAULT 0;
CREATE INDEX training_jobs_pending ON training_jobs (lease_until) WHERE status IN ('queued', 'running');
CREATE INDEX training_jobs_newest_first ON training_jobs (workspace_id, bot_id, created_at DESC, id DESC);

-- One immutable version of a bot's knowledge, split into passages.
CREATE TABLE passages (
    workspace_id text    NOT NULL,
    bot_id       text    NOT NULL,
    version      integer NOT NULL,
    ordinal      integer NOT NULL,
    item_id      text    NOT NULL,
    kind         text    NOT NULL,
    title        text    NOT NULL,
    body         text    NOT NULL,
    PRIMARY KEY (workspace_id, bot_id, version, ordinal),
    FOREIGN KEY (workspace_id, bot_id) REFERENCES bots (workspace_id, id) ON DELETE CASCADE
);

-- A bot reply names the message it answers; at most one reply each, so a
-- retried send never makes the bot answer twice.
ALTER TABLE messages ADD COLUMN in_reply_to text;
CREATE UNIQUE INDEX messages_one_reply ON messages (workspace_id, conversation_id, in_reply_to)
    WHERE in_reply_to IS NOT NULL;
