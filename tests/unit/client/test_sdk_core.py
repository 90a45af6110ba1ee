"""The SDK's shared core: what a request carries, when it is sent again and after how
long, and server-sent events parsed as they arrive."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
from datetime import UTC, datetime

import pytest
from deployforge_client import NotFound, RateLimited
from deployforge_client._core import Core, SSEParser
from deployforge_client.webhooks import WebhookVerificationError, verify
from standardwebhooks.webhooks import Webhook


def _core() -> Core:
    return Core(base_url="http://df.test", token="tok", max_retries=3, backoff=0.5)


def test_every_post_carries_an_idempotency_key_and_reads_follow_the_last_write() -> None:
    core = _core()
    post = core.prepare("POST", "/v1/projects", json_body={"name": "p"})
    assert post.headers["Idempotency-Key"].startswith("sdk-")
    assert post.headers["Authorization"] == "Bearer tok"
    core.outcome(201, {"x-consistency-token": "deploy:42"}, b'{"id": "prj_1"}')
    assert core.prepare("GET", "/v1/projects/prj_1").headers["X-Consistency-Token"] == "deploy:42"
    assert core.prepare("GET", "/v1/x", params={"follow": True}).params == {"follow": "true"}


def test_what_is_retried_and_after_how_long() -> None:
    core = _core()
    get = core.prepare("GET", "/v1/projects")
    post = core.prepare("POST", "/v1/projects")
    patch = core.prepare("PATCH", "/v1/projects/p", json_body={})
    assert core.retry_after(0, get, status=503) is not None
    assert core.retry_after(0, post, status=502) is not None  # it carries a key
    assert core.retry_after(0, patch, status=502) is None  # might have been applied
    assert core.retry_after(0, patch, status=429, headers={"retry-after": "7"}) == 7.0
    assert core.retry_after(0, get, status=404) is None
    assert core.retry_after(3, get, status=503) is None  # out of retries
    assert core.retry_after(0, patch) is None and core.retry_after(0, get) is not None
    in_progress = json.dumps(
        {"error": {"code": "CONFLICT", "message": "m", "details": {"field": "Idempotency-Key"}}}
    ).encode()
    assert core.retry_after(0, post, status=409, body=in_progress) is not None
    assert core.retry_after(0, post, status=409, body=b"{}") is None
    delays = [core.retry_after(n, get, status=503) for n in range(3)]
    assert all(d is not None and 0 < d <= 8 for d in delays)


def test_errors_are_raised_as_the_class_of_their_code() -> None:
    body = {
        "error": {
            "code": "RESOURCE_NOT_FOUND",
            "message": "project not found",
            "details": {},
            "request_id": "req_1",
        }
    }
    with pytest.raises(NotFound) as caught:
        _core().outcome(404, {}, json.dumps(body).encode())
    assert caught.value.request_id == "req_1"
    limited = {"error": {"code": "RATE_LIMIT_EXCEEDED", "message": "slow down", "details": {}}}
    with pytest.raises(RateLimited) as slowed:
        _core().outcome(429, {"retry-after": "3"}, json.dumps(limited).encode())
    assert slowed.value.retry_after == 3.0


def test_server_sent_events_arrive_whole_whatever_the_chunks() -> None:
    parser = SSEParser()
    first = list(parser.feed(["event: log", "id: 7", 'data: {"message": "hi"}']))
    assert first == []
    [event] = list(parser.feed(["", ": keep-alive", ""]))
    assert (event.event, event.id, event.data) == ("log", "7", {"message": "hi"})


def test_a_webhook_verifies_with_either_secret_during_a_rotation() -> None:
    old = "whsec_" + base64.b64encode(b"o" * 32).decode()
    new = "whsec_" + base64.b64encode(b"n" * 32).decode()
    body = json.dumps({"type": "deployment.succeeded", "data": {}})
    stamp = time.time()
    when = datetime.fromtimestamp(stamp, tz=UTC)
    signatures = " ".join(Webhook(s).sign("msg_1", when, body) for s in (old, new))
    headers = {
        "Webhook-Id": "msg_1",
        "Webhook-Timestamp": str(int(stamp)),
        "Webhook-Signature": signatures,
    }
    assert verify(old, body, headers)["type"] == "deployment.succeeded"
    assert verify([new], body, headers)["type"] == "deployment.succeeded"
    other = "whsec_" + base64.b64encode(b"x" * 32).decode()
    with pytest.raises(WebhookVerificationError):
        verify(other, body, headers)
    with pytest.raises(WebhookVerificationError):
        verify(old, body.replace("succeeded", "failed"), headers)


def test_the_client_imports_nothing_of_the_server() -> None:
    probe = (
        "import sys, deployforge_client, deployforge_client.webhooks;"
        "server = {'libs', 'services', 'gateway', 'deployforge'};"
        "print(sorted({m.split('.')[0] for m in sys.modules} & server))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd="/"
    )
    assert out.stdout.strip() == "[]"
