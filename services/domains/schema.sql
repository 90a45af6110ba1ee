-- The domains context's read model. Unqualified names: the runner sets search_path.
CREATE TABLE IF NOT EXISTS domains (
    id                   text PRIMARY KEY,
    organization_id      text NOT NULL,
    full_domain          text NOT NULL,
    domain               text NOT NULL,
    subdomain            text,
    service_id           text NOT NULL,
    environment_id       text NOT NULL,
    port                 integer,
    ssl_enabled          boolean NOT NULL,
    auto_renew_ssl       boolean NOT NULL,
    redirect_to          text,
    redirect_https       boolean NOT NULL,
    challenge            text NOT NULL,
    verification_token   text NOT NULL,
    verification_status  text NOT NULL DEFAULT 'pending',
    verification_error   text,
    dns_configured       boolean NOT NULL DEFAULT false,
    addresses            text[] NOT NULL DEFAULT '{}',
    last_checked_at      timestamptz,
    verified_at          timestamptz,
    created_at           timestamptz NOT NULL,
    updated_at           timestamptz NOT NULL,
    removed_at           timestamptz
);
CREATE INDEX IF NOT EXISTS domains_org ON domains (organization_id, created_at, id);
CREATE INDEX IF NOT EXISTS domains_name ON domains (full_domain) WHERE removed_at IS NULL;

-- Each domain's certificate (at most one served at a time). Never its key.
ALTER TABLE domains ADD COLUMN IF NOT EXISTS ssl_status text NOT NULL DEFAULT 'none';
CREATE TABLE IF NOT EXISTS certificates (
    domain_id           text PRIMARY KEY,
    organization_id     text NOT NULL,
    full_domain         text NOT NULL,
    status              text NOT NULL,          -- pending | issued | failed | revoked
    challenge           text NOT NULL,
    names               text[] NOT NULL DEFAULT '{}',
    issuer              text,
    serial              text,
    not_before          timestamptz,
    not_after           timestamptz,
    fingerprint_sha256  text,
    renewal_due_at      timestamptz,
    order_url           text,
    last_error          text,
    attempts            integer NOT NULL DEFAULT 0,
    retry_at            timestamptz,
    expiring_announced  integer,
    requested_at        timestamptz,
    issued_at           timestamptz,
    revoked_at          timestamptz,
    updated_at          timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS certificates_due ON certificates (status, renewal_due_at);
