"""How long polls end on shutdown (flowmesh_core.api.draining): pure asyncio, no server.

The end-to-end check, a real ``flowmesh serve`` answering open waits on SIGTERM, is in
tests/integration/test_serve_cli.py.
"""

from __future__ import annotations

import asyncio
import gc
import logging

import pytest

from flowmesh_core.api.draining import Drain
from flowmesh_core.errors import StoreUnavailableError


async def slow(result: str, seconds: float, finished: list[str]) -> str:
    await asyncio.sleep(seconds)
    finished.append(result)
    return result


async def failing(seconds: float) -> str:
    await asyncio.sleep(seconds)
    raise StoreUnavailableError("Redis went away")


async def test_the_work_answers_when_it_ends_before_the_drain() -> None:
    drain = Drain()
    assert await drain.race(slow("status", 0.01, [])) == "status"
    with pytest.raises(StoreUnavailableError):
        await drain.race(failing(0.01))


async def test_the_drain_answers_at_once_and_leaves_the_work_to_finish() -> None:
    drain, finished = Drain(), list[str]()
    racing = asyncio.create_task(drain.race(slow("status", 0.3, finished)))
    await asyncio.sleep(0.05)
    drain.start()
    assert await asyncio.wait_for(racing, timeout=0.1) is None
    assert finished == [], "the work was not given time to finish: was it cancelled?"
    await drain.settle(timeout_s=5)
    assert finished == ["status"]


async def test_nothing_starts_once_the_drain_started() -> None:
    drain, finished = Drain(), list[str]()
    drain.start()
    assert drain.started
    assert await drain.race(slow("status", 0.0, finished)) is None
    await drain.settle(timeout_s=1)
    assert finished == []


async def test_abandoned_work_that_fails_logs_no_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="asyncio")
    drain = Drain()
    racing = asyncio.create_task(drain.race(failing(0.1)))
    await asyncio.sleep(0.02)
    drain.start()
    assert await racing is None
    await drain.settle(timeout_s=5)
    gc.collect()
    assert not [r for r in caplog.records if r.name == "asyncio"], caplog.text
