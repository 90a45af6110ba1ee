"""The e2e tier's own fixtures."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture
def data_root() -> Iterator[Path]:
    """A directory outside pytest's tmp root (mode 0700, which the unprivileged
    PostgreSQL user `up` runs as under root could not traverse)."""
    path = Path(tempfile.mkdtemp(prefix="deployforge-e2e-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
