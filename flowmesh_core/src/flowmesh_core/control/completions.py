"""Applying workers' completion reports: record results, release waiters, advance nodes.

Reports arrive on the events stream and are read through a consumer group, pending
entries first, so a control plane that restarts re-applies whatever it had read but not
acknowledged. Applying a report twice is harmless: ``complete`` keeps the first result,
``finish_batch`` counts a batch once, and nodes finish once.

A failed item is handed back to the ready pool until it has run ``max_attempts`` times;
then it fails, with its error in every requester's lineage (a poison item is not retried
forever).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from flowmesh_core.control.engine import WorkflowEngine
from flowmesh_core.control.scheduler import model_id
from flowmesh_core.errors import ServiceUnavailableError
from flowmesh_core.protocol import Completion, ItemResult
from flowmesh_core.store import Store
from flowmesh_core.store.fleet import EMBEDDED_POLL_S, EVENTS_GROUP
from flowmesh_core.store.ops import node_failure

__all__ = ["BatchObserver", "CompletionApplier", "fail_item"]

log = logging.getLogger("flowmesh.completions")

BatchObserver = Callable[[str, str, str | None, int, float, float], None]
"""Called per applied batch: (accelerator, kind, model, size, exec seconds, load seconds)."""


class CompletionApplier:
    """Reads the events stream and applies each report exactly once in effect."""

    def __init__(
        self,
        store: Store,
        engine: WorkflowEngine,
        *,
        consumer: str,
        max_attempts: int,
        observe: BatchObserver | None = None,
        adopt_after_s: float = 30.0,
    ) -> None:
        self.store = store
        self.engine = engine
        self.consumer = consumer
        self.max_attempts = max_attempts
        self.observe = observe
        self.adopt_after_s = adopt_after_s

    async def run(self, stop: asyncio.Event) -> None:
        """Apply reports until ``stop`` is set.

        First this consumer's own pending reports, then, now and then, reports another
        consumer read but never acknowledged (a control plane that died: its consumer name
        is gone with its process), then new ones.
        """
        stream = self.store.keys.events()
        grouped = False
        position = "0"
        adopted_at = 0.0
        while not stop.is_set():
            started = time.monotonic()
            try:
                if not grouped:
                    await self.store.ensure_group(stream, EVENTS_GROUP)
                    grouped = True
                if started - adopted_at > self.adopt_after_s:
                    await self.adopt_orphans()
                    await self.engine.settle_all()
                    adopted_at = started
                applied = await self.read_once(position, block_ms=500)
            except ServiceUnavailableError as exc:
                log.warning("events stream unavailable: %s", exc)
                await asyncio.sleep(1.0)
                continue
            if position == "0" and applied == 0:
                position = ">"

    async def adopt_orphans(self) -> int:
        """Take over and apply reports other consumers left unacknowledged for a while."""
        stream = self.store.keys.events()
        async with self.store.guard():
            reply: Any = await self.store.redis.xautoclaim(
                stream,
                EVENTS_GROUP,
                self.consumer,
                min_idle_time=int(self.adopt_after_s * 1000),
                count=256,
            )
        return await self._apply_entries(reply[1] if reply else [])

    async def read_once(self, position: str = ">", block_ms: int = 500) -> int:
        """Read and apply one chunk of reports; how many were applied."""
        stream = self.store.keys.events()
        blocks = position != "0" and not self.store.embedded  # see EMBEDDED_POLL_S
        async with self.store.guard():
            reply: Any = await self.store.redis.xreadgroup(
                EVENTS_GROUP,
                self.consumer,
                {stream: position},
                count=64,
                block=block_ms if blocks else None,
            )
        entries = reply[0][1] if reply else []
        if not entries and position != "0" and not blocks:
            await asyncio.sleep(min(block_ms / 1000, EMBEDDED_POLL_S))
        return await self._apply_entries(entries)

    async def _apply_entries(self, entries: list[Any]) -> int:
        """Apply each report, then acknowledge it (acked only once applied)."""
        stream = self.store.keys.events()
        for entry_id, fields in entries:
            if fields:
                await self.apply(Completion.from_stream(fields))
            async with self.store.guard():
                await self.store.redis.xack(stream, EVENTS_GROUP, entry_id)
        return len(entries)

    async def apply(self, report: Completion) -> None:
        """Record every item's outcome, then account for the batch."""
        batch = await self.store.batch_record(report.batch_id)
        profile = await self.store.worker_profile(report.worker_id)
        seconds = max(report.finished_at - report.started_at, 0.0)
        price, watts = (profile.price_per_hour, profile.watts) if profile else (0.0, 0.0)
        cost, energy = price * seconds / 3600, watts * seconds / 3600
        share = 1 / max(len(report.results), 1)
        for result in report.results:
            if result.digest is not None:
                await self._complete(report, result, cost * share, energy * share, seconds * share)
            else:
                await self._failed(report, result)
        size = int(batch.get("size", len(report.results)))
        if await self.store.finish_batch(
            report.batch_id, report.worker_id, size, seconds, cost, energy
        ):
            await self.store.wake_scheduler()
            if self.observe is not None and profile is not None:
                info = await self.store.signature_info(report.signature)
                model = model_id(info.get("model"))
                exec_s = max(seconds - report.load_seconds, 1e-6)
                self.observe(
                    profile.accelerator,
                    info.get("kind", "?"),
                    model,
                    size,
                    exec_s,
                    report.load_seconds,
                )

    async def _complete(
        self, report: Completion, result: ItemResult, cost: float, energy: float, seconds: float
    ) -> None:
        assert result.digest is not None
        done = await self.store.complete(
            result.domain,
            result.op_key,
            result.digest,
            batch_id=report.batch_id,
            worker=report.worker_id,
            started_at=report.started_at,
            cost_usd=cost,
            energy_wh=energy,
            worker_seconds=seconds,
        )
        for node_key in done.finished_nodes:
            await self.engine.settle(node_key, "done")

    async def _failed(self, report: Completion, result: ItemResult) -> None:
        error = result.error or "the worker reported no result and no error"
        state = await self.store.op_state(result.domain, result.op_key)
        if state.get("status") != "running" or state.get("worker") != report.worker_id:
            # A repeated report, or a late one from a worker the op was taken from:
            # whoever holds the op now decides its fate.
            log.info(
                "ignoring a stale failure report for %s from %s", result.op_key, report.worker_id
            )
            return
        attempts = int(state.get("attempts", "0"))
        if attempts < self.max_attempts:
            if await self.store.requeue(result.domain, result.op_key, report.worker_id):
                log.info(
                    "item %s failed (attempt %d), retrying: %s", result.op_key, attempts, error
                )
            return
        log.warning("item %s failed after %d attempts: %s", result.op_key, attempts, error)
        await fail_item(self.store, self.engine, result.domain, result.op_key, error)


async def fail_item(
    store: Store, engine: WorkflowEngine, domain: str, op_key: str, error: str
) -> None:
    """Fail an item for good, and every node (and workflow) waiting on it."""
    for node_key in await store.fail(domain, op_key, error):
        await engine.settle(node_key, "failed\n" + node_failure(op_key, error))
