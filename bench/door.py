"""What checking input at the door costs: decoding a body alone (the baseline)
beside decoding it and checking it is storable, and reading an event with and
without a character to replace. CPU only: no servers."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import msgspec

from bench.report import Table, fmt, fmt_ratio
from libs import storable

BODY = json.dumps(
    {
        "project_id": "prj_0123456789abcdef",
        "name": "web",
        "repository_url": "https://example.com/shop/web.git",
        "run_command": ["python", "-m", "web", "--port", "8000"],
        "resources": {"cpu": "500m", "memory": "512Mi"},
        "description": "The storefront. " * 40,
    }
).encode()
OLD_EVENT = BODY.replace(b'"web"', b'"w\\u0000eb"', 1)


def _per_call(fn: Callable[[], object], seconds: float) -> float:
    """Microseconds per call, best of three passes of about `seconds` / 3 each."""
    best = float("inf")
    for _ in range(3):
        n, start = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - start) < seconds / 3:
            for _ in range(1000):
                fn()
            n += 1000
        best = min(best, elapsed / n * 1e6)
    return best


def run(seconds: float = 3.0) -> Table:
    decoder = msgspec.json.Decoder()
    decode = _per_call(lambda: decoder.decode(BODY), seconds)
    checked = _per_call(lambda: (decoder.decode(BODY), storable.check_json(BODY)), seconds)
    scrub_clean = _per_call(lambda: decoder.decode(storable.scrub_json(BODY)), seconds)
    scrub_old = _per_call(lambda: decoder.decode(storable.scrub_json(OLD_EVENT)), seconds)
    return Table(
        title="The door: checking input is storable (µs per body, one core)",
        columns=["case", "µs", "vs decode alone"],
        rows=[
            ["decode a 1 KB body (baseline)", fmt(decode, 2), fmt_ratio(1.0)],
            [
                "decode + check_json (every request, command)",
                fmt(checked, 2),
                fmt_ratio(checked / decode),
            ],
            [
                "decode + scrub_json, clean event (every event read)",
                fmt(scrub_clean, 2),
                fmt_ratio(scrub_clean / decode),
            ],
            [
                "decode + scrub_json, event holding a NUL",
                fmt(scrub_old, 2),
                fmt_ratio(scrub_old / decode),
            ],
        ],
        notes=[
            f"Body of {len(BODY)} bytes. A clean body costs one regex search for a \\u escape "
            "and a count of brackets; only a suspect one is parsed again and walked.",
        ],
    )
