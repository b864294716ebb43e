"""Fixtures of the integration tests that more than one module uses."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio

from tests.integration.providerutil import Env, provider_env


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def env() -> AsyncIterator[Env]:
    """The provider sandboxes and a callback receiver, one set per test module
    (``test_provider_clients_*``)."""
    async with provider_env() as running:
        yield running
