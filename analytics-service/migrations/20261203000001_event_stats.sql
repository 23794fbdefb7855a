-- Statistics kept from the events stream.

-- Every event counted, by id, so an event published or read twice is
-- counted once. Duplicates arrive close together, so ids are kept a week.
CREATE TABLE counted_events (
    event_id   text        PRIMARY KEY,
    counted_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX counted_events_by_age ON counted_events (counted_at);

-- How far the events stream has been read, committed with what the events
-- changed: reading resumes after it, and without it (a new or dropped
-- schema) the stream is read from its oldest event.
CREATE TABLE stream_positions (
    stream      text   PRIMARY KEY,
    last_offset bigint NOT NULL
);

-- Each conversation's bot and channel, for the messages that follow it.
CREATE TABLE conversations (
    workspace_id text        NOT NULL,
    id           text        NOT NULL,
    bot_id       text        NOT NULL DEFAULT '',
    channel      text        NOT NULL DEFAULT '',
    started_at   timestamptz NOT NULL,
    PRIMARY KEY (workspace_id, id)
);
CREATE INDEX conversations_by_age ON conversations (started_at);

-- Counts per 15-minute slot: every time zone's hours and days are whole
-- slots, so buckets in any zone add slots up without splitting one.
CREATE TABLE counts (
    workspace_id text        NOT NULL,
    metric       text        NOT NULL,
    slot         timestamptz NOT NULL,
    bot_id       text        NOT NULL,
    channel      text        NOT NULL,
    count        bigint      NOT NULL,
    PRIMARY KEY (workspace_id, metric, slot, bot_id, channel)
);
CREATE INDEX counts_by_age ON counts (slot);

-- Each user message and how the bot answered it: with its reply, or with
-- its fallback (a handoff or a failure), whose questions are listed as
-- the bot's unanswered ones (evened out and cut to 200 characters).
CREATE TABLE questions (
    workspace_id    text        NOT NULL,
    id              text        NOT NULL,
    question        text        NOT NULL DEFAULT '',
    bot_id          text        NOT NULL DEFAULT '',
    conversation_id text        NOT NULL DEFAULT '',
    asked_at        timestamptz,
    answered_at     timestamptz,
    fell_back       boolean     NOT NULL DEFAULT false,
    PRIMARY KEY (workspace_id, id)
);
CREATE INDEX questions_by_bot ON questions (workspace_id, bot_id, asked_at);
