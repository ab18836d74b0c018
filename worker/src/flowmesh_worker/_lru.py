"""The eviction rule every on-disk cache of a worker shares: least recently used first,
until what is left fits a byte budget. Pure: the caller owns the entries, its lock and
the removal of what this returns (``blob_cache.BlobCache``, ``weights.disk``)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Collection

__all__ = ["evict_lru"]


def evict_lru(
    entries: OrderedDict[str, int], budget_bytes: int, keep: Collection[str] = ()
) -> list[str]:
    """Pop entries (key -> bytes, least recently used first) until the rest hold at most
    ``budget_bytes``, never one in ``keep``; the keys popped, in eviction order. What is
    in ``keep`` may leave the rest over the budget."""
    held = sum(entries.values())
    evicted: list[str] = []
    for key in list(entries):
        if held <= budget_bytes:
            break
        if key not in keep:
            held -= entries.pop(key)
            evicted.append(key)
    return evicted
