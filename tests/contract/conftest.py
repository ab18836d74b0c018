"""Fixtures the store contract suites share."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from flowmesh_core.store import Store


@pytest.fixture
async def clients(store_url: str, key_prefix: str) -> AsyncIterator[list[Store]]:
    """Five separate clients (connection pools) on the same prefix, to race each other."""
    stores = [Store.open(store_url, key_prefix) for _ in range(5)]
    yield stores
    await stores[0].purge()
    for s in stores:
        await s.aclose()
