"""The web UI's pure parts: the vendored scripts are the npm releases recorded beside
them; where sign-in sends the browser next stays inside the UI; a log line from a
build is shown as text, never as markup."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from gateway.ui.handling import safe_next
from gateway.ui.live import fragment, frame

STATIC = Path(__file__).resolve().parents[2] / "gateway" / "ui" / "static"


def test_the_vendored_scripts_match_their_recorded_checksums() -> None:
    recorded = {}
    for line in (STATIC / "vendored.sha512").read_text().splitlines():
        digest, name = line.split()
        recorded[name] = digest
    assert set(recorded) == {"htmx.min.js", "htmx-ext-sse.min.js"}
    for name, digest in recorded.items():
        assert hashlib.sha512((STATIC / name).read_bytes()).hexdigest() == digest, name


@pytest.mark.parametrize(
    ("asked", "went"),
    [
        ("/ui/services/svc_1", "/ui/services/svc_1"),
        ("/ui/deployments/d?x=1", "/ui/deployments/d?x=1"),
        (None, "/ui/"),
        ("https://evil.example/ui/", "/ui/"),
        ("//evil.example/ui/", "/ui/"),
        ("/ui/\\evil.example", "/ui/"),
        ("/v1/tokens", "/ui/"),
        ("javascript:alert(1)", "/ui/"),
    ],
)
def test_after_sign_in_the_browser_stays_inside_the_ui(asked: str | None, went: str) -> None:
    assert safe_next(asked) == went


def test_a_log_line_is_text_not_markup() -> None:
    html = fragment(
        "log", {"ts": "2026-12-07T15:05:31Z", "line": "<script>x()</script>", "step": "build"}
    )
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "15:05:31" in html


def test_a_fragment_spanning_lines_stays_one_event() -> None:
    assert frame("log", "a\nb", "7") == b"event: log\nid: 7\ndata: a\ndata: b\n\n"


def test_a_secret_compares_whatever_text_a_client_sends() -> None:
    from gateway.ui.handling import same_secret

    assert same_secret("tok", "tok")
    assert not same_secret("to\udcff", "tok")  # bytes that were not UTF-8: unequal, no error
    assert not same_secret("é", "tok") and not same_secret("", "tok")
