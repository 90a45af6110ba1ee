-- The drift context's read model. Unqualified names: the runner sets search_path.
CREATE TABLE IF NOT EXISTS resources (
    id               text PRIMARY KEY,
    organization_id  text NOT NULL,
    environment_id   text NOT NULL,
    type             text NOT NULL,
    provider         text NOT NULL,
    region           text NOT NULL,
    specs            jsonb NOT NULL,
    tags             jsonb NOT NULL,
    status           text NOT NULL,        -- provisioning | active | updating | deleting | deleted | failed
    provider_id      text,
    attributes       jsonb NOT NULL DEFAULT '{}',
    last_operation   text,
    last_error       text,
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL,
    deleted_at       timestamptz
);
CREATE INDEX IF NOT EXISTS resources_org ON resources (organization_id, created_at, id);

CREATE TABLE IF NOT EXISTS scans (
    id               text PRIMARY KEY,
    organization_id  text NOT NULL,
    environment_id   text NOT NULL,
    initiated_by     text,
    status           text NOT NULL,        -- running | completed | failed | skipped
    drifts_detected  integer,
    critical         integer,
    new              integer,
    reopened         integer,
    changed          integer,
    resolved         integer,
    resources        integer,
    could_not_read   text[] NOT NULL DEFAULT '{}',
    reason           text,
    started_at       timestamptz NOT NULL,
    finished_at      timestamptz
);
CREATE INDEX IF NOT EXISTS scans_environment ON scans (environment_id, started_at, id);

CREATE TABLE IF NOT EXISTS findings (
    id               text PRIMARY KEY,
    organization_id  text NOT NULL,
    environment_id   text NOT NULL,
    fingerprint      text NOT NULL,
    resource_type    text NOT NULL,
    resource_id      text,
    address          text NOT NULL,
    kind             text NOT NULL,        -- missing | unexpected | changed
    severity         text NOT NULL,
    differences      jsonb NOT NULL,
    state            text NOT NULL,        -- open | acknowledged | ignored | resolved
    first_seen       timestamptz NOT NULL,
    last_seen        timestamptz NOT NULL,
    last_scan_id     text NOT NULL,
    detections       integer NOT NULL DEFAULT 1,
    resolved_at      timestamptz
);
CREATE INDEX IF NOT EXISTS findings_environment ON findings (environment_id, state, first_seen, id);
-- Who last triaged a finding, why, and until when (an ignore); the last remediation or
-- acceptance asked for.
ALTER TABLE findings ADD COLUMN IF NOT EXISTS state_by text;
ALTER TABLE findings ADD COLUMN IF NOT EXISTS state_reason text;
ALTER TABLE findings ADD COLUMN IF NOT EXISTS state_at timestamptz;
ALTER TABLE findings ADD COLUMN IF NOT EXISTS ignored_until timestamptz;
ALTER TABLE findings ADD COLUMN IF NOT EXISTS last_action text;   -- remediate | accept
ALTER TABLE findings ADD COLUMN IF NOT EXISTS last_action_by text;
ALTER TABLE findings ADD COLUMN IF NOT EXISTS last_action_at timestamptz;

CREATE TABLE IF NOT EXISTS ignore_rules (
    id               text PRIMARY KEY,
    organization_id  text NOT NULL,
    environment_id   text NOT NULL,
    resource_type    text NOT NULL,
    resource         text NOT NULL,
    pointer          text NOT NULL,
    reason           text NOT NULL,
    expires_at       timestamptz,
    created_by       text NOT NULL,
    created_at       timestamptz NOT NULL,
    removed_at       timestamptz
);
CREATE INDEX IF NOT EXISTS ignore_rules_environment ON ignore_rules (environment_id, created_at, id);
ALTER TABLE scans ADD COLUMN IF NOT EXISTS services integer;
ALTER TABLE findings ADD COLUMN IF NOT EXISTS remediation_deployment_id text;
ALTER TABLE scans ADD COLUMN IF NOT EXISTS scheduled boolean NOT NULL DEFAULT false;
ALTER TABLE scans ADD COLUMN IF NOT EXISTS remediate boolean NOT NULL DEFAULT false;

CREATE TABLE IF NOT EXISTS schedules (
    environment_id   text PRIMARY KEY,
    organization_id  text NOT NULL,
    interval_seconds integer,
    cron             text,
    mode             text NOT NULL,        -- detect | remediate
    set_by           text NOT NULL,
    since            timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL,
    last_due         timestamptz,
    last_scan_id     text,
    removed_at       timestamptz
);
