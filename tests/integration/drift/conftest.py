"""The drift tests' AWS: moto's server in its own process on a free port."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.moto_server import MotoServer


@pytest.fixture
async def moto() -> AsyncIterator[MotoServer]:
    server = MotoServer()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
