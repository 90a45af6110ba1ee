"""The web UI in a real browser: Playwright (from PyPI) driving Debian's chromium against
a running suite. Sign in, deploy a real git app from the service page, watch its log
arrive live, deploy again, roll back to the first release, find the rollback in the
audit trail; on a phone-sized window the pages still fit. Screenshots are kept in
artifacts/ui/ (CI keeps them with the run).

Without chromium (`apt-get install -y chromium`) the test skips, saying so; CI installs
it and sets DEPLOYFORGE_REQUIRE_SERVERS, which makes that skip a failure."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.challtestsrv import require_binary
from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, Stack
from tests.integration.deploy.test_agent_deploys import (
    commit_version,
    make_service,
    repo,
    workspace,
)

__all__ = ["repo", "workspace"]  # fixtures, used by name
ARTIFACTS = Path(__file__).resolve().parents[3] / "artifacts" / "ui"
TIMEOUT_MS = 90_000


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    chromium = require_binary("chromium", "chromium")
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=chromium, args=["--no-sandbox", "--disable-dev-shm-usage"]
        )
        try:
            yield launched
        finally:
            await launched.close()


async def _api(stack: Stack, path: str) -> Any:
    resp = await stack.client.get(path, headers=stack.auth())
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def test_sign_in_deploy_watch_roll_back_and_audit(
    stack: Stack, repo: Path, workspace: Path, browser: Any
) -> None:
    from playwright.async_api import expect

    await stack.start("audit")
    await stack.start_agent(workspace / "agent", drain_seconds=0.2, health_timeout_seconds=15)
    deployer = await make_service(stack, repo, greeting="hello")
    base = str(stack.client.make_url("")).rstrip("/")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    page = await context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on(
        "response",
        lambda r: (
            errors.append(f"{r.status} {r.request.method} {r.url}") if r.status >= 400 else None
        ),
    )
    page.on(
        "console",
        lambda msg: errors.append(f"{msg.text} {msg.location}") if msg.type == "error" else None,
    )

    # Sign in: a page behind the session sends the browser to the form and back.
    await page.goto(f"{base}/ui/services/{deployer.service}")
    await expect(page).to_have_url(f"{base}/ui/login?next=/ui/services/{deployer.service}")
    await page.get_by_label("Email").fill(ADMIN_EMAIL)
    await page.get_by_label("Password").fill(ADMIN_PASSWORD)
    await page.get_by_label("Password").press("Enter")  # the keyboard is enough
    await expect(page).to_have_url(f"{base}/ui/services/{deployer.service}")
    cookies = await context.cookies()
    [session] = [c for c in cookies if c["name"] == "df_session"]
    assert session["httpOnly"] and session["sameSite"] == "Lax"
    assert "hello" not in await page.content()  # the secret variable is masked

    # Deploy from the page; the log arrives over the live stream, then the outcome.
    await page.get_by_role("button", name="Deploy").click()
    await page.wait_for_url(f"{base}/ui/deployments/**")
    first = page.url.rsplit("/", 1)[1]
    await expect(page.locator("#log .line", has_text="building v1")).to_be_visible()
    await expect(page.locator("#summary .badge").first).to_have_text("succeeded")
    await page.screenshot(path=str(ARTIFACTS / "deployment.png"), full_page=True)

    # A second release, deployed the same way.
    commit_version(repo, "v2")
    await page.goto(f"{base}/ui/services/{deployer.service}")
    # What the running instance printed, on the service's live log.
    await expect(page.locator("#service-log .line", has_text="serving v1")).to_be_visible()
    await page.get_by_role("button", name="Deploy").click()
    await page.wait_for_url(lambda url: url.rsplit("/", 1)[1] not in (first, deployer.service))
    second = page.url.rsplit("/", 1)[1]
    await expect(page.locator("#log .line", has_text="building v2")).to_be_visible()
    await expect(page.locator("#summary .badge").first).to_have_text("succeeded")

    # Roll back: the target (the first deployment) is shown before the button is pressed.
    target = page.locator(".target")
    await expect(target).to_contain_text(first[:16])
    first_commit = (await _api(stack, f"/v1/deployments/{first}"))["commit_hash"]
    await expect(target).to_contain_text(first_commit[:12])
    await page.get_by_role("button", name="Roll back").click()
    await page.wait_for_url(lambda url: url.rsplit("/", 1)[1] not in (first, second))
    rollback = page.url.rsplit("/", 1)[1]
    await expect(page.locator("#summary .badge").first).to_have_text("succeeded")
    rolled = await _api(stack, f"/v1/deployments/{rollback}")
    assert rolled["commit_hash"] == first_commit and rolled["rollback_of"] == first

    # The audit trail shows who asked for the rollback (its read model may lag a moment).
    await page.get_by_role("link", name="Audit").click()
    entry = page.locator("tr", has_text=rollback).filter(has_text="deployment.created")
    for _ in range(40):
        if await entry.count():
            break
        await asyncio.sleep(0.5)
        await page.reload()
    await expect(entry).to_contain_text("Administrator")
    await page.screenshot(path=str(ARTIFACTS / "audit.png"), full_page=True)

    # On a phone: the overview fits the width (tables scroll inside their box).
    phone = await browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    await phone.add_cookies(cookies)
    small = await phone.new_page()
    await small.goto(f"{base}/ui/")
    await expect(small.get_by_role("heading", name="Overview")).to_be_visible()
    width = await small.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the overview is {width}px wide on a 390px screen"
    await small.screenshot(path=str(ARTIFACTS / "overview-phone.png"), full_page=True)
    await phone.close()

    # Sign out: the session is gone, and the pages ask to sign in again.
    await page.get_by_role("button", name="Sign out").click()
    await expect(page).to_have_url(f"{base}/ui/login")
    await page.goto(f"{base}/ui/")
    await expect(page.get_by_role("heading", name="Sign in to DeployForge")).to_be_visible()
    await context.close()
    assert not errors, errors  # no script error, no CSP refusal
