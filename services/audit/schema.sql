-- The audit trail of one stream: who changed what, when, and why (never a value).
CREATE TABLE IF NOT EXISTS entries (
    event_id        text PRIMARY KEY,
    seq             bigint NOT NULL,
    organization_id text,
    occurred_at     timestamptz NOT NULL,
    actor           text NOT NULL,
    credential      text,
    event_type      text NOT NULL,
    resource_type   text NOT NULL,
    resource_id     text NOT NULL,
    fields          text[] NOT NULL,
    correlation_id  text,
    causation_id    text
);
CREATE INDEX IF NOT EXISTS entries_by_organization
    ON entries (organization_id, occurred_at DESC, event_id DESC);
CREATE INDEX IF NOT EXISTS entries_by_resource ON entries (resource_type, resource_id);
