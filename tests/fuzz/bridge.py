"""Hypothesis drives its cases from a thread; the harness's app and Redis connection
live on the test's event loop. ``Loop`` runs one coroutine there and waits for it."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class Loop:
    """Runs the harness's coroutines from the thread Hypothesis drives the cases in."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=90)
