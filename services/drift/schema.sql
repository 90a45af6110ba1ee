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
