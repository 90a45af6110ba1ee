"""One HTTP attempt: guarded, bounded, and summed up as an `Outcome`.

- Only URLs whose every address is public (or in the operator's allowlist) are
  called, and the connection goes to the address that was checked.
- Redirects are not followed: a 3xx is a failure.
- 15 s in all, and at most 64 KiB of the answer is read.
- No cookies are kept: nothing one receiver answers reaches another.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from ipaddress import IPv4Network, IPv6Network

import aiohttp

from services.webhooks.decider import Outcome
from services.webhooks.schedule import parse_retry_after
from services.webhooks.ssrf import AddressRefused, GuardedResolver, guard_url

MAX_RESPONSE_BYTES = 64 * 1024
EXCERPT_CHARS = 1024
USER_AGENT = "DeployForge-Webhooks/0.1"

Networks = Sequence[IPv4Network | IPv6Network]


class Sender:
    def __init__(self, allowed: Networks, *, timeout: float = 15.0) -> None:
        self.allowed = tuple(allowed)
        self.timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(
            resolver=GuardedResolver(self.allowed), use_dns_cache=False, limit=0
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            # One session serves every organization's endpoints, and cookies are scoped
            # by host, not port: a cookie one receiver set would be sent to the next.
            cookie_jar=aiohttp.DummyCookieJar(),
            timeout=aiohttp.ClientTimeout(total=self.timeout),
            headers={"User-Agent": USER_AGENT},
            auto_decompress=False,
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def post(self, url: str, headers: Mapping[str, str], body: bytes) -> Outcome:
        assert self._session is not None, "start() the sender first"
        attempted_at = datetime.now(UTC)
        started = time.perf_counter()

        def elapsed() -> float:
            return round((time.perf_counter() - started) * 1000, 3)

        try:
            await guard_url(url, self.allowed)
            async with self._session.post(
                url,
                data=body,
                headers={**headers, "Content-Type": "application/json"},
                allow_redirects=False,
            ) as response:
                answer = await _read_bounded(response.content)
                return Outcome(
                    attempted_at=attempted_at,
                    status_code=response.status,
                    latency_ms=elapsed(),
                    response_excerpt=answer[:EXCERPT_CHARS].decode("utf-8", "replace"),
                    error=_status_error(response.status),
                    retry_after=parse_retry_after(response.headers.get("Retry-After"), attempted_at)
                    if response.status in (429, 503)
                    else None,
                )
        except AddressRefused as exc:
            error = f"refused: {exc}"
        except TimeoutError:
            error = f"timed out after {self.timeout:g} s"
        except aiohttp.ClientError as exc:
            error = f"{type(exc).__name__}: {exc}"
        except (OSError, ValueError) as exc:
            error = f"{type(exc).__name__}: {exc}"
        return Outcome(attempted_at=attempted_at, latency_ms=elapsed(), error=error)


async def _read_bounded(stream: aiohttp.StreamReader) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while size < MAX_RESPONSE_BYTES:
        chunk = await stream.read(MAX_RESPONSE_BYTES - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def _status_error(status: int) -> str | None:
    if 200 <= status < 300:
        return None
    if 300 <= status < 400:
        return f"HTTP {status}: redirects are not followed"
    return f"HTTP {status}"
