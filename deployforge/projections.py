"""Every bounded context of the suite, in one list, and what is derived from it.

Adding a context is its folder under services/ (with `CONTEXT` in its
main.py) plus one line here. Everything that used to keep its own copy reads
this list: `deployforge up`'s processes and `replay`'s read models, the CLI's
subcommands, the gateway's readiness checks and consistency map, and the test
`Stack`; tests/unit/test_contexts.py checks compose.yaml against it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from libs.eventstore import StreamSpec
from libs.host import Context
from libs.projections import Projection
from services.audit.main import CONTEXT as AUDIT
from services.auth.main import CONTEXT as AUTH
from services.deploy.main import CONTEXT as DEPLOY
from services.domains.main import CONTEXT as DOMAINS
from services.drift.main import CONTEXT as DRIFT
from services.webhooks.main import CONTEXT as WEBHOOKS

CONTEXTS: tuple[Context[Any], ...] = (AUTH, DEPLOY, DOMAINS, DRIFT, WEBHOOKS, AUDIT)
__all__ = ["AUDIT", "AUTH", "BY_NAME", "CONTEXTS", "PROJECTIONS", "PROJECTION_OF_STREAM", "STREAMS"]
BY_NAME: dict[str, Context[Any]] = {c.name: c for c in CONTEXTS}

# Read models by the name `deployforge replay` takes.
PROJECTIONS: dict[str, Callable[[], Projection]] = {
    factory().name: factory for context in CONTEXTS for factory in context.projections
}
STREAMS: tuple[StreamSpec, ...] = tuple(spec for c in CONTEXTS for spec in c.streams)
# Which read model answers a consistency token `<stream context>:<sequence>`.
PROJECTION_OF_STREAM: dict[str, str] = {
    projection.spec.context: projection.name
    for projection in (factory() for factory in PROJECTIONS.values())
    if projection.answers_reads
}
