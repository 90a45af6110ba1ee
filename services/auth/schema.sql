-- Identity's read model. Unqualified names: the projection runner sets
-- search_path to the live schema (auth) or to a rebuild beside it.
CREATE TABLE IF NOT EXISTS users (
    id                      text PRIMARY KEY,
    email                   text NOT NULL UNIQUE,
    name                    text NOT NULL,
    is_superuser            boolean NOT NULL DEFAULT false,
    active                  boolean NOT NULL DEFAULT true,
    default_organization_id text,
    created_at              timestamptz NOT NULL,
    updated_at              timestamptz NOT NULL
);

CREATE TABLE IF NOT EXISTS organizations (
    id         text PRIMARY KEY,
    name       text NOT NULL,
    slug       text NOT NULL UNIQUE,
    created_by text NOT NULL,
    created_at timestamptz NOT NULL
);

CREATE TABLE IF NOT EXISTS memberships (
    organization_id text NOT NULL,
    user_id         text NOT NULL,
    role            text NOT NULL,
    joined_at       timestamptz NOT NULL,
    PRIMARY KEY (organization_id, user_id)
);
CREATE INDEX IF NOT EXISTS memberships_user ON memberships (user_id, joined_at);

CREATE TABLE IF NOT EXISTS tokens (
    id              text PRIMARY KEY,
    kind            text NOT NULL,
    name            text NOT NULL,
    user_id         text NOT NULL,
    organization_id text,
    scopes          text[] NOT NULL,
    prefix          text NOT NULL,
    secret_hash     text NOT NULL,
    service_id      text,
    deployment_id   text,
    created_at      timestamptz NOT NULL,
    expires_at      timestamptz,
    revoked_at      timestamptz
);
CREATE INDEX IF NOT EXISTS tokens_owner ON tokens (user_id, created_at);

CREATE TABLE IF NOT EXISTS sessions (
    id              text PRIMARY KEY,
    user_id         text NOT NULL,
    organization_id text,
    generation      integer NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL,
    refreshed_at    timestamptz,
    expires_at      timestamptz NOT NULL,
    revoked_at      timestamptz,
    revoked_reason  text
);

CREATE TABLE IF NOT EXISTS signing_keys (
    kid        text PRIMARY KEY,
    public_jwk jsonb NOT NULL,
    added_at   timestamptz NOT NULL,
    retired_at timestamptz
);
