"""One list of contexts (deployforge/projections.py) feeds everything that used to
keep its own copy; this fails when something disagrees with it."""

from __future__ import annotations

import importlib
from pathlib import Path

import yaml

from deployforge.cli import _parser
from deployforge.projections import CONTEXTS, PROJECTIONS, STREAMS
from gateway.consistency import PROJECTION_OF_CONTEXT
from gateway.routes.health import SERVICES

ROOT = Path(__file__).resolve().parents[2]


def test_each_context_is_declared_where_its_module_says() -> None:
    for context in CONTEXTS:
        module = importlib.import_module(context.module)
        assert module.CONTEXT is context, context.name
        assert context.module == f"services.{context.name}.main"
        assert (ROOT / "services" / context.name / "main.py").exists()


# Processes under services/ that are not contexts: no stream, no commands, no read model.
DATA_PLANE = {"edge"}


def test_every_services_folder_is_a_listed_context() -> None:
    folders = {p.parent.name for p in (ROOT / "services").glob("*/main.py")}
    assert folders - DATA_PLANE == {c.name for c in CONTEXTS}, "add the context to CONTEXTS"


def test_compose_and_the_cli_run_the_edge() -> None:
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    assert compose["services"]["edge"]["command"] == ["deployforge", "edge"]
    assert "edge" in (ROOT / "deployforge" / "cli.py").read_text()


def test_compose_runs_every_context() -> None:
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    for context in CONTEXTS:
        service = compose["services"].get(context.name)
        assert service is not None, f"compose.yaml has no service {context.name!r}"
        assert service["command"] == ["deployforge", context.name]


def test_the_cli_runs_every_context() -> None:
    args = _parser().parse_args([CONTEXTS[0].name])
    assert args.command == CONTEXTS[0].name
    for context in CONTEXTS:
        assert _parser().parse_args([context.name]).command == context.name


def test_the_gateway_waits_for_and_checks_every_context() -> None:
    assert set(SERVICES) == {c.name for c in CONTEXTS}
    for context in CONTEXTS:
        for factory in context.projections:
            projection = factory()
            if projection.answers_reads:
                assert PROJECTION_OF_CONTEXT[projection.spec.context] == projection.name
            assert PROJECTIONS[projection.name] is factory


def test_every_projection_follows_a_stream_some_context_owns() -> None:
    owned = {spec.context for spec in STREAMS}
    for context in CONTEXTS:
        for factory in context.projections:
            assert factory().spec.context in owned


def test_every_stream_has_one_read_model_answering_its_consistency_tokens() -> None:
    assert set(PROJECTION_OF_CONTEXT) == {spec.context for spec in STREAMS}


def test_the_audit_trail_follows_every_stream() -> None:
    from services.audit.main import AUDITED

    audited = {spec.context for spec, _ in AUDITED}
    owned = {spec.context for context in CONTEXTS for spec in context.streams}
    assert owned <= audited, "add the stream to AUDITED in services/audit/main.py"
