"""The resources dfctl lists, views, creates, updates and deletes, declared once each:
`dfctl projects|envs|services|tokens|webhooks|domains|pipelines|instances|audit ...`.

Every create and update also takes `-d JSON` (or `@file`, `-` for stdin) for the fields
without a flag; a flag wins over the same field in `-d`. Deleting asks first on a
terminal and needs `--yes` off one."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import click

from deployforge_client.cli_credentials import (
    api_path,
    client,
    confirm,
    fail,
    read_json_option,
)
from deployforge_client.cli_output import LIST_OUTPUTS, ONE_OUTPUTS, emit_list, emit_one, notice


@dataclass(frozen=True)
class Field:
    flag: str  # "--repo"
    key: str  # the body's (or the query's) field: "repository_url"
    help: str
    type: Any = str
    required: bool = False  # on create
    multiple: bool = False
    updatable: bool = True


@dataclass(frozen=True)
class Resource:
    group: str  # the command group: "envs"
    noun: str  # "environment"
    collection: str  # "/v1/environments"
    columns: list[str]
    fields: tuple[Field, ...] = ()
    filters: tuple[Field, ...] = ()
    id_key: str = "id"
    verbs: frozenset[str] = frozenset({"list", "view", "create", "update", "delete"})
    help: str = ""
    extra: list[Callable[[click.Group], None]] = field(default_factory=list)


def _item(collection: str, item_id: str) -> str:
    return api_path(collection + "/{}", item_id)


def _data(data: str | None) -> dict[str, Any]:
    if data is None:
        return {}
    body = read_json_option(data)
    if not isinstance(body, dict):
        fail(2, "--data is a JSON object")
    return body


def _body(spec: Resource, values: dict[str, Any], data: str | None) -> dict[str, Any]:
    body = _data(data)
    for f in spec.fields:
        value = values.get(f.key)
        if value is None or (f.multiple and not value):
            continue
        body[f.key] = list(value) if f.multiple else value
    return body


def _options(fields: tuple[Field, ...], *, creating: bool) -> Callable[[Any], Any]:
    def decorate(command: Any) -> Any:
        for f in reversed(fields):
            if not creating and not f.updatable:
                continue
            command = click.option(
                f.flag, f.key, type=f.type, multiple=f.multiple, help=f.help,
                required=creating and f.required,
            )(command)  # fmt: skip
        return command

    return decorate


def _data_option(command: Any) -> Any:
    return click.option("-d", "--data", help="More fields as JSON (@file reads a file, - stdin).")(
        command
    )


def register(parent: click.Group, spec: Resource) -> click.Group:
    @parent.group(spec.group, help=spec.help or f"List, view and change {spec.noun}s.")
    def group() -> None:
        pass

    if "list" in spec.verbs:

        @group.command("list")
        @_options(spec.filters, creating=False)
        @click.option("--limit", type=click.IntRange(1, 10_000), default=100, show_default=True)
        @click.option("-o", "--output", type=LIST_OUTPUTS, default="table")
        def list_(limit: int, output: str, **filters: Any) -> None:
            query = {k: v for k, v in filters.items() if v is not None}
            found: list[dict[str, Any]] = []
            with client() as df:
                answer = df.get(spec.collection, **query, limit=min(limit, 200))
                if isinstance(answer, list):  # a few routes answer a plain list
                    found = answer[:limit]
                else:
                    found = list(answer["items"])
                    while answer.get("next_cursor") and len(found) < limit:
                        answer = df.get(spec.collection, **query, limit=200,
                                        cursor=answer["next_cursor"])  # fmt: skip
                        found += answer["items"]
            if spec.id_key != "id":
                found = [{"id": item[spec.id_key], **item} for item in found]
            emit_list(found[:limit], output, spec.columns)

        list_.help = f"List {spec.noun}s."

    if "view" in spec.verbs:

        @group.command("view")
        @click.argument("item_id", metavar="ID")
        @click.option("-o", "--output", type=ONE_OUTPUTS, default="text")
        def view(item_id: str, output: str) -> None:
            with client() as df:
                found = df.get(_item(spec.collection, item_id))
            emit_one({"id": found[spec.id_key], **found}, output)

        view.help = f"One {spec.noun}."

    if "create" in spec.verbs:

        @group.command("create")
        @_options(spec.fields, creating=True)
        @_data_option
        @click.option("-o", "--output", type=ONE_OUTPUTS, default="text")
        def create(data: str | None, output: str, **values: Any) -> None:
            with client() as df:
                created = df.post(spec.collection, _body(spec, values, data))
            notice(f"Created {spec.noun} {created.get(spec.id_key, '')}.")
            emit_one(created, output)

        create.help = f"Create a {spec.noun}."

    if "update" in spec.verbs:

        @group.command("update")
        @click.argument("item_id", metavar="ID")
        @_options(spec.fields, creating=False)
        @_data_option
        @click.option("-o", "--output", type=ONE_OUTPUTS, default="text")
        def update(item_id: str, data: str | None, output: str, **values: Any) -> None:
            body = _body(spec, values, data)
            if not body:
                fail(2, "nothing to change: give a flag or --data")
            with client() as df:
                emit_one(df.patch(_item(spec.collection, item_id), body), output)

        update.help = f"Change a {spec.noun}."

    if "delete" in spec.verbs:

        @group.command("delete")
        @click.argument("item_id", metavar="ID")
        @click.option("--yes", is_flag=True, help="Do not ask (required off a terminal).")
        def delete(item_id: str, yes: bool) -> None:
            confirm(yes, f"Delete {spec.noun} {item_id}?")
            with client() as df:
                df.delete(_item(spec.collection, item_id))
            notice(f"Deleted {spec.noun} {item_id}.")

        delete.help = f"Delete a {spec.noun}."

    for add in spec.extra:
        add(group)
    return group


SCOPES = click.Choice(["read", "write", "deploy", "admin"])
EVENTS_HELP = "An event type (or a pattern such as deployment.*); repeat for more."

RESOURCES = (
    Resource(
        "projects", "project", "/v1/projects", ["id", "name", "description", "created_at"],
        fields=(Field("--name", "name", "Its name.", required=True),
                Field("--description", "description", "What it holds.")),
    ),
    Resource(
        "envs", "environment", "/v1/environments", ["id", "name", "type", "provider"],
        fields=(Field("--name", "name", "Its name.", required=True),
                Field("--type", "type", "What it is for.",
                      type=click.Choice(["development", "preview", "staging", "production"]))),
    ),
    Resource(
        "services", "service", "/v1/services",
        ["id", "name", "project_id", "repository_url", "branch", "replicas"],
        fields=(
            Field("--project", "project_id", "The project it belongs to.", required=True,
                  updatable=False),
            Field("--name", "name", "Its name.", required=True),
            Field("--repo", "repository_url", "The git repository.", required=True),
            Field("--branch", "branch", "The branch deployed by default."),
            Field("--build-command", "build_command", "Run after checkout."),
            Field("--run-command", "run_command", "What runs (gets $PORT).", required=True),
            Field("--health-check-path", "health_check_path", "Probed before switching."),
            Field("--replicas", "replicas", "Instances per environment.", type=int),
        ),
    ),
    Resource(
        "tokens", "API token", "/v1/tokens",
        ["id", "name", "prefix", "scopes", "expires_at", "revoked_at"],
        fields=(Field("--name", "name", "Its name.", required=True),
                Field("--scope", "scopes", "A scope; repeat for more.", type=SCOPES,
                      multiple=True),
                Field("--expires-in-days", "expires_in_days", "Its lifetime.", type=int)),
        verbs=frozenset({"list", "create", "delete"}),
        help="Named API tokens (shown once when created; delete revokes).",
    ),
    Resource(
        "webhooks", "webhook", "/v1/webhooks", ["id", "url", "events", "active", "failing_since"],
        fields=(Field("--url", "url", "Where events are POSTed.", required=True),
                Field("--event", "events", EVENTS_HELP, multiple=True),
                Field("--description", "description", "What it is for.")),
        help="Webhook endpoints, their deliveries, replays, tests and secrets.",
    ),
    Resource(
        "domains", "domain", "/v1/domains",
        ["id", "full_domain", "verification_status", "ssl_status", "ssl_expires_at"],
        fields=(Field("--domain", "domain", "The name.", required=True, updatable=False),
                Field("--service", "service_id", "The service it routes to.", required=True),
                Field("--env", "environment_id", "The environment it routes to.",
                      required=True)),
        help="Domains routed to services (verified first), and their certificates.",
    ),
    Resource(
        "pipelines", "pipeline", "/v1/pipelines", ["id", "name", "service_id", "created_at"],
        filters=(Field("--service", "service_id", "Only this service's."),),
        verbs=frozenset({"list", "view", "delete"}),
    ),
    Resource(
        "instances", "instance", "/v1/instances",
        ["id", "service_id", "environment_id", "status", "pid", "port", "restarts"],
        filters=(Field("--service", "service_id", "Only this service's."),
                 Field("--env", "environment_id", "Only this environment's.")),
        id_key="instance_id", verbs=frozenset({"list", "view"}),
        help="The running instances of services.",
    ),
    Resource(
        "audit", "audit entry", "/v1/audit",
        ["occurred_at", "actor.name", "event_type", "resource.type", "resource.id"],
        filters=(Field("--actor", "actor", "A user id."),
                 Field("--resource-type", "resource_type", "project, service, ..."),
                 Field("--resource", "resource_id", "One resource's id."),
                 Field("--event-type", "event_type", "Exact, or a prefix such as project.*"),
                 Field("--since", "since", "From this time (RFC 3339)."),
                 Field("--until", "until", "Up to this time (RFC 3339).")),
        verbs=frozenset({"list"}),
        help="The audit trail (owners and admins), newest first.",
    ),
)  # fmt: skip
