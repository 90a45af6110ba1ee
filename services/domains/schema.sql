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
