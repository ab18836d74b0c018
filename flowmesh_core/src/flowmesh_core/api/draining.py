"""Ending long polls early when the server shuts down.

A long poll (``GET /v1/workflows/{id}/wait``) may wait minutes. On shutdown the server
gives requests in flight a grace period and then cancels them, which answers a bare
500; so the server ``start``\\s the drain first, and each long poll stops waiting and
answers with what it has (``race``).

The work a long poll waits on is never cancelled: a Redis command cancelled half-way
can hang or break the connection (the embedded store does not survive it). A drained
poll leaves it to finish on its own (a few seconds at most), and shutdown ``settle``\\s
those before it closes the connections they use. This module must never decide what a
drained request answers; the route does.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["Drain"]

log = logging.getLogger("flowmesh.api")

T = TypeVar("T")


class Drain:
    """The server is shutting down: long polls stop waiting."""

    def __init__(self) -> None:
        self._started = asyncio.Event()
        self._work: set[asyncio.Task[Any]] = set()

    @property
    def started(self) -> bool:
        """Whether the server is shutting down."""
        return self._started.is_set()

    def start(self) -> None:
        """Make every long poll answer now (idempotent; call it on the event loop)."""
        self._started.set()

    async def race(self, work: Coroutine[Any, Any, T]) -> T | None:
        """``work``'s result, or None if the drain starts first (or had started).

        ``work`` runs as a task of its own, so that neither the drain nor a cancelled
        request cancels it; its errors reach the caller while the caller still waits.
        """
        if self.started:
            work.close()
            return None
        task = asyncio.ensure_future(work)
        self._work.add(task)
        task.add_done_callback(self._finished)
        drained = asyncio.ensure_future(self._started.wait())
        try:
            await asyncio.wait({task, drained}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            drained.cancel()
        return task.result() if task.done() else None

    async def settle(self, timeout_s: float) -> None:
        """Wait up to ``timeout_s`` for the work that drained polls left running."""
        if self._work:
            await asyncio.wait(set(self._work), timeout=timeout_s)
        if self._work:
            log.warning("%d long-poll waits still running at shutdown", len(self._work))

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._work.discard(task)
        if not task.cancelled():
            # Retrieved here, as nobody may wait for it any more (a poll drained, or its
            # request was cancelled): asyncio would log its error with a traceback.
            task.exception()
