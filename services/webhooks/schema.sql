-- The webhooks context's endpoint read model. Unqualified names: the runner sets search_path.
CREATE TABLE IF NOT EXISTS webhooks (
    id                          text PRIMARY KEY,
    organization_id             text NOT NULL,
    url                         text NOT NULL,
    events                      text[] NOT NULL,
    description                 text NOT NULL DEFAULT '',
    active                      boolean NOT NULL DEFAULT true,
    rate_limit                  integer,
    disabled_reason             text,
    failing_since               timestamptz,
    secret_rotated_at           timestamptz,
    previous_secret_expires_at  timestamptz,
    last_replay_at              timestamptz,
    created_at                  timestamptz NOT NULL,
    updated_at                  timestamptz NOT NULL,
    deleted_at                  timestamptz
);
CREATE INDEX IF NOT EXISTS webhooks_org ON webhooks (organization_id, created_at, id);
