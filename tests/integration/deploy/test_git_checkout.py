"""Fetching a service's source with the real git CLI from repositories made in tmp dirs."""

import asyncio
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from libs.errors import ValidationFailed
from services.deploy.runner import StepCancelled
from services.deploy.source import CheckoutFailed, checkout

GIT = shutil.which("git") or "git"


def git(repo: Path, *args: str) -> str:
    env = {key: value for key, value in os.environ.items() if not key.startswith("GIT_")}
    done = subprocess.run(
        [GIT, "-c", "user.name=Test", "-c", "user.email=test@example.com", *args],
        cwd=repo,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return done.stdout.strip()


def commit(repo: Path, name: str, text: str) -> str:
    (repo / name).write_text(text)
    git(repo, "add", "--", name)
    git(repo, "commit", "--quiet", "-m", f"write {name}")
    return git(repo, "rev-parse", "HEAD")


@pytest.fixture
def origin(tmp_path: Path) -> Path:
    repo = tmp_path / "origin"
    repo.mkdir()
    git(repo, "init", "--quiet", "--initial-branch=main")
    commit(repo, "app.py", "print('v1')\n")
    git(repo, "tag", "v1")
    commit(repo, "app.py", "print('v2')\n")
    return repo


class Lines:
    def __init__(self) -> None:
        self.lines: list[str] = []

    async def __call__(self, line: str) -> None:
        self.lines.append(line)


async def test_a_branch_is_checked_out_from_a_local_path(origin: Path, tmp_path: Path) -> None:
    dest = tmp_path / "checkouts" / "rel_1"
    dest.parent.mkdir()
    commit_id = await checkout(str(origin), "main", dest)
    assert commit_id == git(origin, "rev-parse", "main")
    assert (dest / "app.py").read_text() == "print('v2')\n"


async def test_a_tag_is_checked_out_from_a_file_url(origin: Path, tmp_path: Path) -> None:
    commit_id = await checkout(f"file://{origin}", "v1", tmp_path / "rel")
    assert commit_id == git(origin, "rev-parse", "v1^{commit}")
    assert (tmp_path / "rel" / "app.py").read_text() == "print('v1')\n"


async def test_a_full_commit_id_is_checked_out(origin: Path, tmp_path: Path) -> None:
    first = git(origin, "rev-parse", "v1^{commit}")
    assert await checkout(str(origin), first, tmp_path / "rel") == first
    assert (tmp_path / "rel" / "app.py").read_text() == "print('v1')\n"


async def test_an_abbreviated_commit_id_is_found_with_a_full_fetch(
    origin: Path, tmp_path: Path
) -> None:
    first = git(origin, "rev-parse", "v1^{commit}")
    out = Lines()
    assert await checkout(str(origin), first[:10], tmp_path / "rel", on_line=out) == first
    assert any("whole repository" in line for line in out.lines)


async def test_an_unknown_ref_fails_with_gits_reason_and_leaves_no_directory(
    origin: Path, tmp_path: Path
) -> None:
    out = Lines()
    with pytest.raises(CheckoutFailed, match="find remote ref no-such-branch"):
        await checkout(str(origin), "no-such-branch", tmp_path / "rel", on_line=out)
    assert not (tmp_path / "rel").exists()
    assert any("no-such-branch" in line for line in out.lines)


async def test_an_existing_directory_is_never_checked_out_into(
    origin: Path, tmp_path: Path
) -> None:
    dest = tmp_path / "rel"
    dest.mkdir()
    (dest / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError):
        await checkout(str(origin), "main", dest)
    assert [path.name for path in dest.iterdir()] == ["keep.txt"]


@pytest.mark.parametrize(
    ("repository", "ref"),
    [
        ("ext::sh -c touch% {canary}", "main"),
        ("--upload-pack=touch {canary}", "main"),
        ("{origin}", "--upload-pack=touch {canary}"),
        ("{origin}", "main;touch {canary}"),
        ("{origin}", "$(touch {canary})"),
    ],
)
async def test_hostile_urls_and_refs_are_rejected_before_git_runs(
    origin: Path, tmp_path: Path, repository: str, ref: str
) -> None:
    canary = tmp_path / "canary"
    values = {"canary": canary, "origin": origin}
    with pytest.raises(ValidationFailed):
        await checkout(repository.format(**values), ref.format(**values), tmp_path / "rel")
    assert not canary.exists()
    assert not (tmp_path / "rel").exists()


async def test_our_git_environment_does_not_steer_the_checkout(
    origin: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    canary = tmp_path / "canary"
    monkeypatch.setenv("GIT_DIR", str(tmp_path / "elsewhere"))
    monkeypatch.setenv("GIT_ALLOW_PROTOCOL", "ext:file")
    monkeypatch.setenv("GIT_SSH_COMMAND", f"touch {canary}")
    monkeypatch.setenv("GIT_CONFIG_PARAMETERS", "'core.hookspath'='/nonexistent'")
    commit_id = await checkout(str(origin), "main", tmp_path / "rel")
    assert commit_id == git(origin, "rev-parse", "main")
    assert not (tmp_path / "elsewhere").exists()
    assert not canary.exists()


async def test_cancel_stops_a_fetch_that_hangs_and_removes_the_directory(tmp_path: Path) -> None:
    # A server that accepts connections and never answers: git waits on it forever.
    connections: list[asyncio.StreamWriter] = []

    async def hang(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(writer)

    server = await asyncio.start_server(hang, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    cancel = asyncio.Event()
    try:
        fetch = asyncio.create_task(
            checkout(f"http://127.0.0.1:{port}/repo.git", "main", tmp_path / "rel", cancel=cancel)
        )
        deadline = time.monotonic() + 10
        while not connections:
            assert time.monotonic() < deadline, "git never connected"
            await asyncio.sleep(0.02)
        started = time.monotonic()
        cancel.set()
        with pytest.raises(StepCancelled):
            await fetch
        assert time.monotonic() - started < 5
        assert not (tmp_path / "rel").exists()
    finally:
        for writer in connections:
            writer.close()
        server.close()
        await server.wait_closed()
