"""The files of a release as the build left them: recorded once, compared when asked.

After the build (and a pipeline's steps) the agent records a SHA-256 of every
file of the release directory (`.git` and `__pycache__` aside) in
`checksums/<release>.json` in its work directory: outside the release, so that
whoever edits a release's file cannot edit its record too. A drift scan asks
the agent to compare the release with its record: files changed, gone, or
added since.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import msgspec

# Not the release: git's own files, and bytecode Python writes beside a module on import.
_SKIPPED_DIRS = {".git", "__pycache__"}
_CHUNK = 1 << 20


class FileDrift(msgspec.Struct, frozen=True, kw_only=True):
    """Paths (relative, `/`-separated) and their recorded and current digests."""

    changed: dict[str, tuple[str, str]] = {}  # path -> (recorded, now)
    missing: dict[str, str] = {}  # path -> recorded
    added: dict[str, str] = {}  # path -> now

    @property
    def clean(self) -> bool:
        return not (self.changed or self.missing or self.added)


def digests(release: Path) -> dict[str, str]:
    """`sha256:<hex>` of every regular file (a symlink: `link:<target>`), by path."""
    found: dict[str, str] = {}
    for top, dirs, files in os.walk(release):
        dirs[:] = sorted(d for d in dirs if d not in _SKIPPED_DIRS)
        for name in sorted(files):
            path = Path(top) / name
            relative = path.relative_to(release).as_posix()
            if path.is_symlink():
                found[relative] = f"link:{os.readlink(path)}"
                continue
            digest = hashlib.sha256()
            with path.open("rb") as handle:
                while chunk := handle.read(_CHUNK):
                    digest.update(chunk)
            found[relative] = f"sha256:{digest.hexdigest()}"
    return found


def record_path(work: Path, release_id: str) -> Path:
    return work / "checksums" / f"{release_id}.json"


def record(work: Path, release_id: str, release: Path) -> int:
    """Record the release's files; how many."""
    path = record_path(work, release_id)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    found = digests(release)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_bytes(msgspec.json.encode(found))
    os.replace(temporary, path)
    return len(found)


def compare(work: Path, release_id: str, release: Path) -> FileDrift | None:
    """The release's files against their record; None when none was recorded."""
    try:
        recorded: dict[str, str] = msgspec.json.decode(
            record_path(work, release_id).read_bytes(), type=dict[str, str]
        )
    except (OSError, msgspec.DecodeError):
        return None
    now = digests(release) if release.is_dir() else {}
    return FileDrift(
        changed={
            p: (recorded[p], now[p])
            for p in sorted(recorded.keys() & now.keys())
            if recorded[p] != now[p]
        },
        missing={p: recorded[p] for p in sorted(recorded.keys() - now.keys())},
        added={p: now[p] for p in sorted(now.keys() - recorded.keys())},
    )


def forget(work: Path, release_id: str) -> None:
    record_path(work, release_id).unlink(missing_ok=True)
