"""Fetch a service's source with git at a ref, safely.

The repository URL and the ref are user input. They are validated here, passed
to git as argv elements after `--`, and git runs with its dangerous transports
(`ext::`, `fd::`, ssh for now) and hooks turned off, without any GIT_* variable
of ours that could point it elsewhere.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import urlsplit

from libs.errors import ValidationFailed
from services.deploy.runner import StepTimedOut, run_step

_REPOSITORY_FIELD = "$.repository_url"
_REF_FIELD = "$.ref"
_MAX_URL_LENGTH = 2048
_MAX_REF_LENGTH = 255
# git's own test for `<transport>::<address>` (transport.c): scheme characters, then `::`.
_TRANSPORT_FORM = re.compile(r"^[A-Za-z0-9+.-]*::")
_REF_FORBIDDEN = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]")
_HEX_SHA = re.compile(r"^(?:[0-9a-f]{40}|[0-9a-f]{64})$")
_ABBREVIATED_SHA = re.compile(r"^[0-9a-f]{7,63}$")
_GIT_OPTIONS = [
    "-c", "protocol.ext.allow=never",
    "-c", "protocol.fd.allow=never",
    "-c", "core.hooksPath=/dev/null",
    # A repository's own configuration could name filters or an fsmonitor to run.
    "-c", "core.fsmonitor=false",
]  # fmt: skip

OnLine = Callable[[str], Awaitable[None]]


class CheckoutFailed(Exception):
    """git could not fetch or check out the ref; the message says why, for the deployment log."""


def validate_repository(url: str) -> str:
    """Return `url` if it is an http(s) or file URL or an absolute local path, else raise.

    Transport helpers (`ext::`, `fd::`, any `<transport>::`), ssh and scp-like
    `user@host:path` forms, option-like values and whitespace are refused with
    ValidationFailed on `$.repository_url`.
    """
    if not url:
        raise ValidationFailed("repository URL is required", _REPOSITORY_FIELD)
    if len(url) > _MAX_URL_LENGTH:
        raise ValidationFailed("repository URL is too long", _REPOSITORY_FIELD)
    if url.startswith("-"):
        raise ValidationFailed("repository URL must not start with '-'", _REPOSITORY_FIELD)
    if any(char.isspace() or ord(char) < 0x20 or ord(char) == 0x7F for char in url):
        raise ValidationFailed(
            "repository URL must not contain whitespace or control characters",
            _REPOSITORY_FIELD,
        )
    if _TRANSPORT_FORM.match(url):
        raise ValidationFailed("git transport helpers are not allowed", _REPOSITORY_FIELD)
    if url.startswith("/"):
        return url
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme in ("http", "https"):
        if not parts.hostname or parts.hostname.startswith("-"):
            raise ValidationFailed("repository URL needs a host", _REPOSITORY_FIELD)
        return url
    if scheme == "file":
        if parts.netloc or not parts.path.startswith("/"):
            raise ValidationFailed("file URLs must name an absolute local path", _REPOSITORY_FIELD)
        return url
    raise ValidationFailed(
        "repository must be an https://, http:// or file:// URL or an absolute path",
        _REPOSITORY_FIELD,
    )


def validate_ref(ref: str, field: str = _REF_FIELD) -> str:
    """Return `ref` (a branch, tag or commit) if git would accept it as a ref name, else raise.

    Follows `git check-ref-format` and also refuses what a refspec would read
    specially: a leading `-` (an option) or `+` (a forced update). Raises
    ValidationFailed on `field` (`$.ref` unless told otherwise).
    """
    problem = _ref_problem(ref)
    if problem is not None:
        raise ValidationFailed(f"ref {problem}", field)
    return ref


def _ref_problem(ref: str) -> str | None:
    if not 1 <= len(ref) <= _MAX_REF_LENGTH:
        return f"must be 1 to {_MAX_REF_LENGTH} characters long"
    if ref[0] in "-+":
        return "must not start with '-' or '+'"
    if _REF_FORBIDDEN.search(ref):
        return "must not contain spaces, control characters or any of ~^:?*[\\"
    if ".." in ref or "@{" in ref or "//" in ref:
        return "must not contain '..', '@{' or '//'"
    if ref == "@" or ref.startswith("/") or ref.endswith(("/", ".", ".lock")):
        return "must not be '@', start with '/' or end with '/', '.' or '.lock'"
    if any(part.startswith(".") or part.endswith(".lock") for part in ref.split("/")):
        return "components must not start with '.' or end with '.lock'"
    return None


async def checkout(
    repository: str,
    ref: str,
    dest: Path,
    *,
    on_line: OnLine | None = None,
    cancel: asyncio.Event | None = None,
    timeout: float | None = None,
) -> str:
    """Check `ref` of `repository` out into the new directory `dest`; return the commit id.

    `dest` must not exist yet (FileExistsError otherwise) and is created inside
    its existing parent; on any failure it is removed again. git's output goes to
    `on_line`. Raises ValidationFailed for bad input, CheckoutFailed when git
    fails, and runner.StepCancelled / StepTimedOut like any other step.
    """
    validate_repository(repository)
    validate_ref(ref)
    if not dest.parent.is_dir():
        raise FileNotFoundError(f"checkout parent {dest.parent} does not exist")
    dest.mkdir()  # not exist_ok: a checkout never lands in someone else's directory
    git = _Git(dest, on_line, cancel, timeout)
    try:
        await git.run(["init", "--quiet", "--template=", "--", "."])
        fetched = await git.run(
            ["fetch", "--depth", "1", "--no-tags", "--", repository, ref], check=False
        )
        if fetched:
            target = "FETCH_HEAD"
        else:
            # A commit the server will not hand out shallowly (protocol v0 without
            # allowAnySHA1InWant), or an abbreviated one: fetch everything, resolve it here.
            if not _ABBREVIATED_SHA.match(ref):
                raise CheckoutFailed(f"git fetch failed: {git.last_line}")
            await git.say(f"fetching the whole repository to find commit {ref}")
            await git.run(
                [
                    "fetch", "--no-tags", "--", repository,
                    "+refs/heads/*:refs/remotes/origin/*", "+refs/tags/*:refs/tags/*",
                ]
            )  # fmt: skip
            target = await git.output(
                ["rev-parse", "--verify", "--end-of-options", f"{ref}^{{commit}}"]
            )
        await git.run(["checkout", "--quiet", "--detach", target, "--"])
        commit = await git.output(["rev-parse", "--verify", "HEAD^{commit}"])
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)
        raise
    if not _HEX_SHA.match(commit):
        shutil.rmtree(dest, ignore_errors=True)
        raise CheckoutFailed(f"git reported an unexpected commit id {commit!r}")
    return commit


def _git_env() -> dict[str, str]:
    # None of our GIT_* variables (GIT_DIR, GIT_SSH_COMMAND, GIT_CONFIG_*...) may steer git.
    env = {key: value for key, value in os.environ.items() if not key.startswith("GIT_")}
    env.update(
        GIT_TERMINAL_PROMPT="0",
        GIT_ALLOW_PROTOCOL="file:http:https",
        # git's messages are what the deployment log shows; keep them in one language.
        LC_ALL="C",
    )
    return env


class _Git:
    """git commands in one checkout, sharing its output sink, cancel event and deadline."""

    def __init__(
        self, cwd: Path, on_line: OnLine | None, cancel: asyncio.Event | None, timeout: float | None
    ) -> None:
        self.cwd = cwd
        self.on_line = on_line
        self.cancel = cancel
        loop = asyncio.get_running_loop()
        self.deadline = None if timeout is None else loop.time() + timeout
        self.timeout = timeout
        self.env = _git_env()
        self.last_line = ""  # git's last word, usually the reason it failed

    async def say(self, line: str) -> None:
        if self.on_line is not None:
            await self.on_line(line)

    async def run(self, args: list[str], *, check: bool = True) -> bool:
        self.last_line = ""

        async def collect(line: str) -> None:
            self.last_line = line
            await self.say(line)

        code = await self._run(args, collect)
        if code != 0 and check:
            raise CheckoutFailed(f"git {args[0]} failed: {self.last_line or f'exit code {code}'}")
        return code == 0

    async def output(self, args: list[str]) -> str:
        lines: list[str] = []

        async def collect(line: str) -> None:
            lines.append(line)

        code = await self._run(args, collect)
        if code != 0 or not lines:
            for line in lines:
                await self.say(line)
            raise CheckoutFailed(f"git {args[0]} failed: {lines[-1] if lines else code}")
        return lines[-1].strip()

    async def _run(self, args: list[str], sink: OnLine) -> int:
        remaining = None
        if self.deadline is not None:
            remaining = max(self.deadline - asyncio.get_running_loop().time(), 0.0)
        try:
            return await run_step(
                ["git", *_GIT_OPTIONS, *args],
                cwd=self.cwd,
                env=self.env,
                on_line=sink,
                cancel=self.cancel,
                timeout=remaining,
            )
        except StepTimedOut:
            # Name the checkout's budget, not what was left of it for this one command.
            raise StepTimedOut(self.timeout or 0.0) from None
