"""The web UI over plain HTTP against a running suite (the browser test drives the same
pages in chromium): sign-in makes an HttpOnly SameSite cookie and keeps the tokens on
the server; every unsafe method checks the CSRF token and the Origin; a deployment
started from a form is followed live, its log arriving as HTML; sign-out ends it."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp.test_utils import TestClient

from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, Stack
from tests.integration.deploy.test_agent_deploys import make_service, repo, workspace
from tests.receivers import Receivers

__all__ = ["repo", "workspace"]  # fixtures, used by name


def _field(html: str, name: str) -> str:
    found = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert found, f"no {name} in the page"
    return found.group(1)


async def _sign_in(client: TestClient[Any, Any]) -> str:
    """Signs in through the form; the session's CSRF token."""
    page = await (await client.get("/ui/login")).text()
    resp = await client.post(
        "/ui/login",
        data={"login_csrf": _field(page, "login_csrf"), "email": ADMIN_EMAIL,
              "password": ADMIN_PASSWORD, "next": "/ui/services"},
        allow_redirects=False,
    )  # fmt: skip
    assert resp.status == 303, await resp.text()
    assert resp.headers["Location"] == "/ui/services"
    cookie = resp.headers.getall("Set-Cookie")
    session = next(c for c in cookie if c.startswith("df_session="))
    assert "HttpOnly" in session and "SameSite=Lax" in session and "Path=/ui" in session
    page = await (await client.get("/ui/")).text()
    return _field(page, "csrf_token")


async def test_sign_in_csrf_and_sign_out(stack: Stack) -> None:
    client = stack.client
    resp = await client.get("/ui/services", allow_redirects=False)
    assert resp.status == 303
    assert resp.headers["Location"] == "/ui/login?next=/ui/services"

    page = await (await client.get("/ui/login")).text()
    resp = await client.post(
        "/ui/login",
        data={"login_csrf": _field(page, "login_csrf"), "email": ADMIN_EMAIL, "password": "nope"},
    )
    assert resp.status == 401 and "Wrong email or password." in await resp.text()
    resp = await client.post(
        "/ui/login", data={"login_csrf": "forged", "email": ADMIN_EMAIL, "password": "x"}
    )
    assert resp.status == 403 and "expired" in await resp.text()

    csrf = await _sign_in(client)
    # The browser holds a random cookie; the API's tokens are sealed in the session row.
    pool = _pool(client)
    row = await pool.fetchrow("SELECT tokens FROM gateway.ui_sessions LIMIT 1")
    assert b"access" not in row["tokens"]  # sealed: no JSON readable at rest

    resp = await client.get("/ui/")
    html = await resp.text()
    assert resp.status == 200 and ADMIN_EMAIL in html
    assert "default-src 'self'" in resp.headers["Content-Security-Policy"]
    assert resp.headers["X-Frame-Options"] == "DENY"

    # Unsafe methods: no CSRF token, a wrong one, another site's Origin: all refused.
    resp = await client.post("/ui/tokens", data={"name": "ci"})
    assert resp.status == 403 and "CSRF" in await resp.text()
    resp = await client.post("/ui/tokens", data={"name": "ci", "csrf_token": "x" * 43})
    assert resp.status == 403
    resp = await client.post(
        "/ui/tokens",
        data={"name": "ci", "csrf_token": csrf},
        headers={"Origin": "https://evil.example"},
    )
    assert resp.status == 403 and "another site" in await resp.text()
    listed = await (await client.get("/v1/tokens", headers=stack.auth())).json()
    assert not [t for t in listed["items"] if t["name"] == "ci"]

    resp = await client.post(
        "/ui/tokens", data={"name": "ci", "csrf_token": csrf, "scopes": ["read", "deploy"]}
    )
    html = await resp.text()
    assert resp.status == 200 and "shown once" in html
    secret = re.search(r'<code class="secret">([^<]+)</code>', html)
    assert secret and secret.group(1).startswith("df")
    # The new token is listed on the next read (read-your-writes across requests).
    assert "<td>ci</td>" in await (await client.get("/ui/tokens")).text()

    # The access token expires: the next pages refresh it once, however many read at
    # once (two refreshes with the same refresh token would end the session).
    await pool.execute("UPDATE gateway.ui_sessions SET access_expires = now()")
    pages = await asyncio.gather(*(client.get("/ui/", allow_redirects=False) for _ in range(4)))
    assert [p.status for p in pages] == [200] * 4
    assert await pool.fetchval("SELECT access_expires > now() FROM gateway.ui_sessions")
    assert (await client.get("/ui/services", allow_redirects=False)).status == 200

    # API refusals become pages naming the problem, not stack traces.
    resp = await client.get("/ui/deployments/dpl_missing")
    assert resp.status == 404 and "Traceback" not in await resp.text()

    resp = await client.post("/ui/logout", data={"csrf_token": csrf}, allow_redirects=False)
    assert resp.status == 303
    assert await pool.fetchval("SELECT count(*) FROM gateway.ui_sessions") == 0
    resp = await client.get("/ui/", allow_redirects=False)
    assert resp.status == 303  # signed out


async def test_a_deployment_started_from_the_page_is_followed_live(
    stack: Stack, repo: Path, workspace: Path
) -> None:
    await stack.start_agent(workspace / "agent", drain_seconds=0.2, health_timeout_seconds=15)
    deployer = await make_service(stack, repo, greeting="hello")
    client = stack.client
    csrf = await _sign_in(client)

    page = await (await client.get(f"/ui/services/{deployer.service}")).text()
    assert "GREETING" in page and "hello" not in page  # a secret's value is never shown
    resp = await client.post(
        f"/ui/services/{deployer.service}/deploy",
        data={"csrf_token": csrf, "environment_id": deployer.env},
        allow_redirects=False,
    )
    assert resp.status == 303, await resp.text()
    location = resp.headers["Location"]
    assert location.startswith("/ui/deployments/")
    page = await (await client.get(location)).text()
    assert 'sse-connect="' in page

    events = await _read_live(client, location + "/live")
    logs = [data for name, data, _ in events if name == "log"]
    assert any("building v1" in line for line in logs), events
    assert all(line.startswith('<div class="line">') for line in logs)
    assert events[-1][0] == "end" and "succeeded" in events[-1][1]
    # A browser reconnecting sends the last id it saw: the relay goes on from there.
    ids = [event_id for name, _, event_id in events if name == "log"]
    again = await _read_live(client, location + "/live", last_event_id=ids[2])
    assert [i for name, _, i in again if name == "log"] == ids[3:]

    summary = await (await client.get(location + "/summary")).text()
    assert "succeeded" in summary and "100%" in summary


async def _read_live(
    client: TestClient[Any, Any], path: str, last_event_id: str | None = None
) -> list[tuple[str, str, str]]:
    """(event, data, id) of a live relay, until its `end`."""
    events: list[tuple[str, str, str]] = []
    headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
    timeout = aiohttp.ClientTimeout(total=120)
    async with client.get(path, headers=headers, timeout=timeout) as live:
        assert live.headers["Content-Type"].startswith("text/event-stream")
        event, event_id = "", ""
        async for raw in live.content:
            line = raw.decode().rstrip("\n")
            if line.startswith("event: "):
                event, event_id = line[7:], ""
            elif line.startswith("id: "):
                event_id = line[4:]
            elif line.startswith("data: "):
                events.append((event, line[6:], event_id))
            if event == "end" and line == "":
                break
    return events


def _pool(client: TestClient[Any, Any]) -> Any:
    from gateway import keys

    return client.server.app[keys.POOL]


async def test_a_running_deployment_is_cancelled_from_its_page(
    stack: Stack, repo: Path, workspace: Path
) -> None:
    await stack.start_agent(workspace / "agent", drain_seconds=0.2, health_timeout_seconds=15)
    deployer = await make_service(
        stack,
        repo,
        build_command="python -c 'import time; print(\"slow\", flush=True); time.sleep(120)'",
    )
    client = stack.client
    csrf = await _sign_in(client)
    resp = await client.post(
        f"/ui/services/{deployer.service}/deploy",
        data={"csrf_token": csrf, "environment_id": deployer.env},
        allow_redirects=False,
    )
    location = resp.headers["Location"]
    deployment_id = location.rsplit("/", 1)[1]
    for _ in range(600):  # until the build runs (a loaded machine takes a while)
        state = await (
            await client.get(f"/v1/deployments/{deployment_id}", headers=stack.auth())
        ).json()
        if state["status"] == "running":
            break
        await asyncio.sleep(0.1)
    page = await (await client.get(location)).text()
    assert "Cancel deployment" in page, page
    resp = await client.post(location + "/cancel", data={"csrf_token": csrf},
                             allow_redirects=False)  # fmt: skip
    assert resp.status == 303, await resp.text()
    assert resp.headers["Location"] == location
    deployment = await deployer.ended(deployment_id)
    assert deployment["status"] == "cancelled", deployment
    page = await (await client.get(location)).text()
    assert "cancelled" in page and "Cancel deployment" not in page, page


async def test_every_page_renders_with_data_in_it(stack: Stack, receivers: Receivers) -> None:
    """Each page with something to show (a webhook and its deliveries, a token, a domain,
    an environment's findings, the audit trail) answers 200 and shows it; the webhook's
    buttons work."""
    await stack.start_webhooks()
    await stack.start(
        "domains", domains_dns_resolver="127.0.0.1:9", domains_dns_timeout_seconds=0.5
    )
    await stack.start("drift", drift_aws_endpoint_url="http://127.0.0.1:9")
    await stack.start("audit")
    client, auth = stack.client, stack.auth()
    env = await (await client.post("/v1/environments", json={"name": "prod"}, headers=auth)).json()
    project = await (await client.post("/v1/projects", json={"name": "Shop"}, headers=auth)).json()
    service = await (
        await client.post(
            "/v1/services",
            json={"project_id": project["id"], "name": "web", "repository_url": "file:///x",
                  "run_command": "python app.py"},
            headers=auth,
        )
    ).json()  # fmt: skip
    resp = await client.post(
        "/v1/domains",
        json={"domain": "shop.example.com", "service_id": service["id"],
              "environment_id": env["id"]},
        headers=auth,
    )  # fmt: skip
    assert resp.status in (200, 201, 202), await resp.text()
    receiver = await receivers()
    hook = await (
        await client.post("/v1/webhooks", json={"url": receiver.url, "events": ["webhook.*"]},
                          headers=auth)
    ).json()  # fmt: skip
    csrf = await _sign_in(client)

    resp = await client.post(f"/ui/webhooks/{hook['id']}/test", data={"csrf_token": csrf})
    assert resp.status == 200
    await receiver.wait_for(lambda got: len(got) >= 1)
    for _ in range(40):
        page = await (await client.get(f"/ui/webhooks/{hook['id']}")).text()
        if "webhook.ping" in page and "succeeded" in page:
            break
        await asyncio.sleep(0.25)
    assert "webhook.ping" in page and "Redeliver" in page
    delivery = re.search(r'/deliveries/([^/"]+)/redeliver', page)
    assert delivery
    resp = await client.post(
        f"/ui/webhooks/{hook['id']}/deliveries/{delivery.group(1)}/redeliver",
        data={"csrf_token": csrf},
    )
    assert resp.status == 200
    await receiver.wait_for(lambda got: len(got) >= 2)
    resp = await client.post(f"/ui/webhooks/{hook['id']}/rotate-secret", data={"csrf_token": csrf})
    assert resp.status == 200 and "shown once" in await resp.text()

    expected = {
        "/ui/": "web",
        "/ui/projects": "Shop",
        "/ui/environments": "prod",
        "/ui/services": "file:///x",
        f"/ui/services/{service['id']}": "Never deployed",
        "/ui/webhooks": receiver.url,
        "/ui/tokens": "New token",
        "/ui/members": "admin@example.com",
        "/ui/audit": "webhook.created",
        "/ui/domains": "shop.example.com",
        "/ui/drift": "prod",
    }
    for path, shown in expected.items():
        for _ in range(40):  # the audit trail and the read models may lag a moment
            resp = await client.get(path)
            html = await resp.text()
            if resp.status == 200 and shown in html:
                break
            await asyncio.sleep(0.25)
        assert resp.status == 200, (path, html[:500])
        assert shown in html, path


async def test_long_lists_page_through_every_item_once(stack: Stack) -> None:
    client, auth = stack.client, stack.auth()
    for n in range(105):
        resp = await client.post("/v1/projects", json={"name": f"p-{n:03}"}, headers=auth)
        assert resp.status == 201
    await _sign_in(client)
    seen: list[str] = []
    path = "/ui/projects"
    while path:
        html = await (await client.get(path)).text()
        seen += re.findall(r"<td>(p-\d{3})</td>", html)
        found = re.search(r'href="(/ui/projects\?cursor=[^"]+)" rel="next"', html)
        path = found.group(1).replace("&amp;", "&") if found else ""
    assert sorted(seen) == [f"p-{n:03}" for n in range(105)]


async def test_sign_ins_are_rate_limited_per_browser_not_for_the_gateway(stack: Stack) -> None:
    """The UI's API calls come from the gateway itself; they carry the browser's address
    with this process's secret, so one browser's failures do not lock out the others
    (and nobody else can claim an address with that header)."""
    client = await stack.add_gateway(anonymous_rate_limit_per_minute=3, trust_forwarded_for=True)
    while time.time() % 60 > 50:  # the limit's window is the minute: start well inside one
        await asyncio.sleep(1)

    async def attempt(address: str, password: str) -> int:
        headers = {"X-Forwarded-For": address}
        page = await (await client.get("/ui/login", headers=headers)).text()
        resp = await client.post(
            "/ui/login",
            data={"login_csrf": _field(page, "login_csrf"), "email": ADMIN_EMAIL,
                  "password": password},
            headers=headers,
            allow_redirects=False,
        )  # fmt: skip
        return resp.status

    assert [await attempt("10.0.0.1", "wrong") for _ in range(3)] == [401] * 3
    assert await attempt("10.0.0.1", ADMIN_PASSWORD) == 429  # that browser must wait
    assert await attempt("10.0.0.2", ADMIN_PASSWORD) == 303  # another is not held up

    # The relay header from outside the process is nobody's word.
    forged = {"X-DeployForge-Relay": "guess", "X-DeployForge-Client": "10.0.0.9",
              "X-Forwarded-For": "10.0.0.1"}  # fmt: skip
    resp = await client.post("/v1/auth/login", json={"email": ADMIN_EMAIL, "password": "x"},
                             headers=forged)  # fmt: skip
    assert resp.status == 429


async def test_a_malformed_form_is_a_4xx_page(stack: Stack) -> None:
    client = stack.client
    csrf = await _sign_in(client)
    for body, kind in [
        (b"--x\r\nnot a part", "multipart/form-data; boundary=x"),
        (b"csrf_token=" + csrf.encode() + b"&name=\xff\xfe", "application/x-www-form-urlencoded"),
    ]:
        resp = await client.post("/ui/tokens", data=body, headers={"Content-Type": kind})
        assert 400 <= resp.status < 500, (resp.status, await resp.text())
        assert "Traceback" not in await resp.text()
