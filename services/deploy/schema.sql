-- The deploy context's read model. Unqualified names: the runner sets search_path.
CREATE TABLE IF NOT EXISTS environments (
    id              text PRIMARY KEY,
    organization_id text NOT NULL,
    name            text NOT NULL,
    provider        text NOT NULL,
    type            text NOT NULL,
    region          text,
    cluster         text,
    namespace       text,
    configuration   jsonb NOT NULL DEFAULT '{}',
    resource_limits jsonb NOT NULL DEFAULT '{}',
    auto_deploy     boolean NOT NULL DEFAULT false,
    status          text NOT NULL DEFAULT 'active',
    has_credentials boolean NOT NULL DEFAULT false,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    deleted_at      timestamptz
);
CREATE INDEX IF NOT EXISTS environments_org ON environments (organization_id, created_at);

CREATE TABLE IF NOT EXISTS projects (
    id              text PRIMARY KEY,
    organization_id text NOT NULL,
    name            text NOT NULL,
    slug            text NOT NULL,
    description     text NOT NULL DEFAULT '',
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    deleted_at      timestamptz
);
CREATE INDEX IF NOT EXISTS projects_org ON projects (organization_id, created_at);

CREATE TABLE IF NOT EXISTS services (
    id                text PRIMARY KEY,
    organization_id   text NOT NULL,
    project_id        text NOT NULL,
    name              text NOT NULL,
    repository_url    text NOT NULL,
    branch            text NOT NULL,
    runtime           text,
    build_command     jsonb NOT NULL DEFAULT '[]',
    run_command       jsonb NOT NULL DEFAULT '[]',
    port              integer,
    health_check_path text NOT NULL DEFAULT '/',
    replicas          integer NOT NULL DEFAULT 1,
    resources         jsonb NOT NULL DEFAULT '{}',
    dependencies      jsonb NOT NULL DEFAULT '[]',
    owner             text,
    created_at        timestamptz NOT NULL,
    updated_at        timestamptz NOT NULL,
    deleted_at        timestamptz
);
CREATE INDEX IF NOT EXISTS services_org ON services (organization_id, created_at);
CREATE INDEX IF NOT EXISTS services_project ON services (project_id);

CREATE TABLE IF NOT EXISTS env_vars (
    service_id text NOT NULL,
    key        text NOT NULL,
    secret     boolean NOT NULL,
    value      text,              -- NULL for secrets: their value is never shown again
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (service_id, key)
);

CREATE TABLE IF NOT EXISTS deployments (
    id               text PRIMARY KEY,
    organization_id  text NOT NULL,
    project_id       text NOT NULL,
    service_id       text NOT NULL,
    environment_id   text NOT NULL,
    ref              text NOT NULL,
    strategy         text NOT NULL,
    notify_channels  jsonb NOT NULL DEFAULT '[]',
    config           jsonb NOT NULL DEFAULT '{}',
    rollback_of      text,
    status           text NOT NULL,
    queued_seq       bigint,
    queue_position   integer,
    current_step     text,
    steps_done       integer NOT NULL DEFAULT 0,
    agent_id         text,
    commit_hash      text,
    release_id       text,
    failure_reason   text,
    rolled_back_by   text,
    created_at       timestamptz NOT NULL,
    started_at       timestamptz,
    finished_at      timestamptz,
    duration_seconds double precision,
    updated_at       timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS deployments_org ON deployments (organization_id, created_at);
CREATE INDEX IF NOT EXISTS deployments_service ON deployments (service_id, environment_id, created_at);
CREATE INDEX IF NOT EXISTS deployments_queue ON deployments (organization_id, status, queued_seq);

CREATE TABLE IF NOT EXISTS deployment_steps (
    deployment_id    text NOT NULL,
    seq              bigint NOT NULL,
    name             text NOT NULL,
    state            text NOT NULL,
    message          text NOT NULL DEFAULT '',
    error_message    text NOT NULL DEFAULT '',
    started_at       timestamptz NOT NULL,
    finished_at      timestamptz,
    duration_seconds double precision,
    PRIMARY KEY (deployment_id, name)
);

-- Added after the first release: existing read models gain the columns in place.
ALTER TABLE deployments ADD COLUMN IF NOT EXISTS address text;

CREATE TABLE IF NOT EXISTS pipelines (
    id              text PRIMARY KEY,
    organization_id text NOT NULL,
    service_id      text NOT NULL,
    name            text NOT NULL,
    steps           jsonb NOT NULL,
    created_at      timestamptz NOT NULL,
    deleted_at      timestamptz
);
CREATE INDEX IF NOT EXISTS pipelines_org ON pipelines (organization_id, created_at);

-- Added with PATCH /v1/pipelines/{id} and a pipeline's runs. Rows projected before
-- get them on the next `deployforge replay deploy`.
ALTER TABLE pipelines ADD COLUMN IF NOT EXISTS updated_at timestamptz;
ALTER TABLE deployments ADD COLUMN IF NOT EXISTS pipeline_id text;
CREATE INDEX IF NOT EXISTS deployments_pipeline ON deployments (pipeline_id, created_at)
    WHERE pipeline_id IS NOT NULL;
