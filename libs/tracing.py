"""OpenTelemetry tracing, propagated through HTTP and NATS headers.

There is no ready NATS instrumentation, so the W3C `traceparent` is injected
into and extracted from NATS message headers here, once, for every process.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, MutableMapping

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.propagate import extract, inject
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor
from opentelemetry.trace import Span, SpanKind


def configure_tracing(service: str, *, console: bool = False) -> None:
    """Install a tracer provider naming `service` (spans printed only if asked)."""
    if isinstance(trace.get_tracer_provider(), TracerProvider):
        return
    provider = TracerProvider(resource=Resource.create({"service.name": f"deployforge-{service}"}))
    if console:
        provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter()))
    trace.set_tracer_provider(provider)


def inject_headers(headers: MutableMapping[str, str]) -> MutableMapping[str, str]:
    """Add the current span's `traceparent` to outgoing headers."""
    inject(headers)
    return headers


def extract_context(headers: Mapping[str, str]) -> otel_context.Context:
    """The trace context carried by incoming headers (a fresh one if none)."""
    return extract(dict(headers))


def current_ids() -> tuple[str, str] | None:
    """(trace_id, span_id) of the current span as hex, if one is recording."""
    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return None
    return format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")


def current_traceparent() -> str | None:
    """The current span as a W3C `traceparent`, for what it causes to carry on."""
    return inject_headers({}).get("traceparent")


@contextlib.contextmanager
def continued(
    tracer: trace.Tracer,
    name: str,
    traceparent: str | None,
    *,
    kind: SpanKind = SpanKind.CONSUMER,
    **attributes: str | int | bool,
) -> Iterator[Span]:
    """A span for work an event started: the trace of the request behind it goes on
    (a fresh trace when the event carries none)."""
    parent = extract_context({"traceparent": traceparent or ""})
    with tracer.start_as_current_span(
        name, context=parent, kind=kind, attributes=attributes
    ) as span:
        yield span
