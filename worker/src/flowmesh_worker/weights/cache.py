"""The warm-model cache: loaded weights kept in memory between batches, within a byte budget.

Entries are keyed by (executor kind, ``ModelRef.key``) because two kinds may load the
same weights differently (an embedding pipeline vs a bare encoder). The least recently
used entries are dropped until a new one fits; ``warm_keys`` is what the worker reports
in its heartbeat so the scheduler can prefer workers that have a model loaded already.

This module never loads anything on its own: the caller passes the loading function.
It must never load the same model twice at once (a per-key lock makes concurrent
requests for one key wait for a single load) nor hold the cache-wide lock while loading,
so a slow load of one model never blocks hits on another.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING

from flowmesh_core.models import ModelRef
from flowmesh_worker.executors.base import Loaded

if TYPE_CHECKING:
    from torch.nn import Module

__all__ = ["WarmCache", "nbytes_of"]

log = logging.getLogger(__name__)

_Key = tuple[str, str]


def nbytes_of(module: Module) -> int:
    """Bytes held by ``module``'s parameters and buffers (what keeping it warm costs)."""
    tensors = [*module.parameters(), *module.buffers()]
    return sum(t.numel() * t.element_size() for t in tensors)


class WarmCache:
    """A thread-safe LRU of ``Loaded`` weights within ``budget_bytes``.

    An entry larger than the whole budget is still kept (alone, with a warning): the
    batch that asked for it must run, and loading it again for the next batch would
    only be slower.
    """

    def __init__(self, budget_bytes: int) -> None:
        if budget_bytes < 0:
            raise ValueError("budget_bytes must be >= 0")
        self.budget_bytes = budget_bytes
        self._entries: OrderedDict[_Key, Loaded] = OrderedDict()
        self._lock = threading.Lock()
        # One lock per key ever loaded; kept for the process's life (a handful of models).
        self._key_locks: dict[_Key, threading.Lock] = {}

    def get(self, kind: str, model: ModelRef, load: Callable[[], Loaded]) -> tuple[Loaded, float]:
        """The loaded weights for (``kind``, ``model``) and the seconds this call spent
        loading them: 0.0 on a hit, including a hit on a load another thread just did.

        An exception from ``load`` propagates and caches nothing.
        """
        key = (kind, model.key)
        with self._lock:
            hit = self._touch(key)
            if hit is not None:
                return hit, 0.0
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        with key_lock:
            with self._lock:
                hit = self._touch(key)
            if hit is not None:
                return hit, 0.0
            started = time.perf_counter()
            loaded = load()
            seconds = time.perf_counter() - started
            with self._lock:
                self._insert(key, loaded)
        return loaded, seconds

    def warm_keys(self) -> list[str]:
        """The distinct ``ModelRef.key`` values held, sorted."""
        with self._lock:
            return sorted({model_key for _, model_key in self._entries})

    @property
    def nbytes(self) -> int:
        """Bytes held by all entries."""
        with self._lock:
            return sum(entry.nbytes for entry in self._entries.values())

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def __contains__(self, key: object) -> bool:
        with self._lock:
            return key in self._entries

    def _touch(self, key: _Key) -> Loaded | None:
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
        return entry

    def _insert(self, key: _Key, loaded: Loaded) -> None:
        held = sum(entry.nbytes for entry in self._entries.values())
        while self._entries and held + loaded.nbytes > self.budget_bytes:
            old_key, old = self._entries.popitem(last=False)
            held -= old.nbytes
            log.info("evicted %s/%s (%d bytes) from the warm cache", *old_key, old.nbytes)
        if loaded.nbytes > self.budget_bytes:
            log.warning(
                "%s/%s needs %d bytes, more than the whole warm-cache budget (%d); "
                "keeping it alone",
                *key,
                loaded.nbytes,
                self.budget_bytes,
            )
        self._entries[key] = loaded
