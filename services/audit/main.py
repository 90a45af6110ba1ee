"""The audit context: the audit trail of every stream, as read models.

It owns no stream and takes no commands: it follows the other contexts'
streams and keeps one `AuditProjection` per stream (libs/host.py runs them).
"""

from __future__ import annotations

from functools import partial

from libs.host import Context, Resources, Wiring
from libs.settings import CoreSettings
from services.audit.projection import AuditProjection
from services.auth.events import CODECS as AUTH_CODECS
from services.auth.events import STREAM as AUTH_STREAM
from services.deploy.events import CODECS as DEPLOY_CODECS
from services.deploy.events import STREAM as DEPLOY_STREAM
from services.domains.events import CODECS as DOMAIN_CODECS
from services.domains.events import STREAM as DOMAIN_STREAM
from services.drift.events import CODECS as DRIFT_CODECS
from services.drift.events import STREAM as DRIFT_STREAM
from services.webhooks.events import CODECS as WEBHOOK_CODECS
from services.webhooks.events import DELIVERIES, ENDPOINTS

AUDITED = (
    (AUTH_STREAM, AUTH_CODECS),
    (DEPLOY_STREAM, DEPLOY_CODECS),
    (DOMAIN_STREAM, DOMAIN_CODECS),
    (DRIFT_STREAM, DRIFT_CODECS),
    (ENDPOINTS, WEBHOOK_CODECS),
    (DELIVERIES, WEBHOOK_CODECS),
)


class AuditSettings(CoreSettings, frozen=True, kw_only=True):
    run_projection: bool = True


async def wire(_: Resources[AuditSettings]) -> Wiring:
    return Wiring(endpoints={})


CONTEXT = Context(
    name="audit",
    module="services.audit.main",
    settings=AuditSettings,
    streams=(),
    follows=tuple(spec for spec, _ in AUDITED),
    projections=tuple(partial(AuditProjection, spec, codecs) for spec, codecs in AUDITED),
    wire=wire,
)
run = CONTEXT.run


def main() -> None:
    CONTEXT.main()


if __name__ == "__main__":
    main()
