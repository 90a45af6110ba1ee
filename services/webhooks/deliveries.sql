-- The webhooks context's delivery read model: one row per event per endpoint, one per attempt.
CREATE TABLE IF NOT EXISTS deliveries (
    id               text PRIMARY KEY,
    webhook_id       text NOT NULL,
    organization_id  text NOT NULL,
    event_id         text NOT NULL,
    event_type       text NOT NULL,
    status           text NOT NULL,
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz,
    last_status_code integer,
    last_error       text,
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL
);
-- The request behind the event delivered (its X-Request-Id), to follow it end to end.
ALTER TABLE deliveries ADD COLUMN IF NOT EXISTS correlation_id text;
CREATE INDEX IF NOT EXISTS deliveries_webhook ON deliveries (webhook_id, created_at, id);

CREATE TABLE IF NOT EXISTS attempts (
    delivery_id      text NOT NULL,
    attempt          integer NOT NULL,
    attempted_at     timestamptz NOT NULL,
    succeeded        boolean NOT NULL,
    status_code      integer,
    latency_ms       double precision NOT NULL,
    response_excerpt text NOT NULL DEFAULT '',
    error            text,
    next_attempt_at  timestamptz,
    PRIMARY KEY (delivery_id, attempt)
);
