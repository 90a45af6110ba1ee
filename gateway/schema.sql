-- The gateway's own state, shared by every replica (not a read model).
CREATE SCHEMA IF NOT EXISTS gateway;

-- Fixed-window counters; UNLOGGED: losing them in a crash only forgives a minute.
CREATE UNLOGGED TABLE IF NOT EXISTS gateway.rate_limits (
    bucket  text NOT NULL,
    window_start bigint NOT NULL,
    hits    integer NOT NULL,
    PRIMARY KEY (bucket, window_start)
);

CREATE TABLE IF NOT EXISTS gateway.idempotency_keys (
    scope        text NOT NULL,
    key          text NOT NULL,
    request_hash text NOT NULL,
    status       integer,
    headers      jsonb,
    body         bytea,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (scope, key)
);
CREATE INDEX IF NOT EXISTS idempotency_keys_age ON gateway.idempotency_keys (created_at);

-- The web UI's sessions: the cookie's SHA-256 names a row; the API tokens it holds
-- are sealed with DEPLOYFORGE_SECRET_KEY and never leave the server.
CREATE TABLE IF NOT EXISTS gateway.ui_sessions (
    id_hash        text PRIMARY KEY,
    csrf_token     text NOT NULL,
    email          text NOT NULL,
    tokens         bytea NOT NULL,
    access_expires timestamptz NOT NULL,
    consistency    text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    expires_at     timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS ui_sessions_expiry ON gateway.ui_sessions (expires_at);
