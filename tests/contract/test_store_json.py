"""The store's whole-document JSON keys (the learned throughput model), on both backends.

``update_json`` is a read-modify-write that never loses a write to a writer that read an
older document; the race below is what a leader and a standby syncing at once do.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

from flowmesh_core.store import Store


def appending(name: str, calls: list[str]) -> Callable[[str | None], str]:
    def change(stored: str | None) -> str:
        calls.append(name)
        names: list[str] = json.loads(stored) if stored else []
        return json.dumps([*names, name])

    return change


async def test_update_json_creates_changes_and_leaves_a_document(store: Store) -> None:
    key = store.keys.throughput()
    assert await store.update_json(key, lambda stored: None) is None
    assert await store.load_json(key) is None
    assert await store.update_json(key, lambda stored: json.dumps([stored])) == "[null]"
    assert await store.update_json(key, lambda stored: None) == "[null]"
    assert await store.update_json(key, lambda stored: f"[{stored}]") == "[[null]]"
    assert await store.load_json(key) == "[[null]]"


async def test_concurrent_updates_from_two_connections_lose_nothing(store: Store) -> None:
    other = Store.open(store.url, store.keys.prefix)
    key = store.keys.throughput()
    calls: list[str] = []
    try:
        await asyncio.gather(
            *(
                (store if i % 2 else other).update_json(key, appending(f"w{i}", calls))
                for i in range(8)
            )
        )
    finally:
        await other.aclose()
    stored = await store.load_json(key)
    assert stored is not None
    assert sorted(json.loads(stored)) == [f"w{i}" for i in range(8)]
    assert len(calls) > 8, "the writers never raced: the test proves nothing"
