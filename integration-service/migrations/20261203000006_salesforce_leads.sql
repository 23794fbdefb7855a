-- Ended conversations with a named customer, as leads of each connected
-- Salesforce org of the workspace: queued when the event is consumed,
-- pushed by any replica, upserted by the conversation's id so a retried
-- push never makes a duplicate. A lead Salesforce rejects keeps the reason.
CREATE TABLE salesforce_leads (
    integration_id  text        NOT NULL,
    conversation_id text        NOT NULL,
    workspace_id    text        NOT NULL,
    fields          jsonb       NOT NULL,
    status          text        NOT NULL CHECK (status IN ('pending', 'synced', 'failed')),
    lead_id         text        NOT NULL DEFAULT '',
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error      text        NOT NULL DEFAULT '',
    created_at      timestamptz NOT NULL DEFAULT now(),
    synced_at       timestamptz,
    PRIMARY KEY (integration_id, conversation_id)
);
CREATE INDEX salesforce_leads_due ON salesforce_leads (next_attempt_at) WHERE status = 'pending';
CREATE INDEX salesforce_leads_newest_first ON salesforce_leads (integration_id, created_at DESC, conversation_id DESC);
