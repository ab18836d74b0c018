"""Applying workers' completion reports: record results, release waiters, account batches.

Reports arrive on the events stream and are read through a consumer group, pending
entries first, so a control plane that restarts re-applies whatever it had read but not
acknowledged. Applying a report twice is harmless: ``complete`` keeps the first result
and ``finish_batch`` counts a batch once. A report is applied in one round trip: every
item's ``complete`` and the batch's ``finish_batch`` go to Redis together (each atomic).
Nodes whose last item a report completes are announced on the outbox by ``complete``
itself; the outbox consumer takes it from there.

A failed item is handed back to the ready pool until it has run ``max_attempts`` times;
then it fails, with its error in every requester's lineage (a poison item is not retried
forever). An error the worker marks deterministic (the executor rejected the item's
inputs or params: ``ItemRejectedError``) fails at once, on its first attempt: running it
again would fail the same way and only delay the requester's answer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from flowmesh_core.control.scheduler import model_id
from flowmesh_core.errors import ServiceUnavailableError
from flowmesh_core.hashing import digest_bytes
from flowmesh_core.models import WorkerProfile
from flowmesh_core.protocol import Completion, ItemResult
from flowmesh_core.settings import DEFAULT_FAIRNESS_HALF_LIFE_S
from flowmesh_core.store import Store
from flowmesh_core.store._base import ScriptCall
from flowmesh_core.store.fleet import EVENTS_GROUP

__all__ = ["BatchObserver", "CompletionApplier"]

log = logging.getLogger("flowmesh.completions")

BatchObserver = Callable[[str, str, str | None, int, float, float], None]
"""Called per applied batch: (accelerator, kind, model, size, exec seconds, load seconds);
the exec seconds are per unit of work when an item stands for many (``throughput``)."""

_PROFILE_TTL_S = 30.0
"""How long a worker's profile ($/h, W, accelerator) is taken from memory."""


class CompletionApplier:
    """Reads the events stream and applies each report exactly once in effect."""

    def __init__(
        self,
        store: Store,
        *,
        consumer: str,
        max_attempts: int,
        observe: BatchObserver | None = None,
        adopt_after_s: float = 30.0,
        fairness_half_life_s: float = DEFAULT_FAIRNESS_HALF_LIFE_S,
    ) -> None:
        self.store = store
        self.consumer = consumer
        self.max_attempts = max_attempts
        self.observe = observe
        self.adopt_after_s = adopt_after_s
        self.fairness_half_life_s = fairness_half_life_s
        self._profiles: dict[str, tuple[float, WorkerProfile | None]] = {}
        self._signatures: dict[str, dict[str, Any]] = {}

    async def run(self, stop: asyncio.Event) -> None:
        """Apply reports until ``stop`` is set.

        First this consumer's own pending reports, then, now and then, reports another
        consumer read but never acknowledged (a control plane that died: its consumer name
        is gone with its process), then new ones. When Redis has lost the group (its data
        was lost), the group is made again and the loss logged.
        """
        stream = self.store.keys.events()
        grouped = False
        position = "0"
        adopted_at = 0.0
        while not stop.is_set():
            started = time.monotonic()
            try:
                if not grouped:
                    if await self.store.create_group(stream, EVENTS_GROUP) and position != "0":
                        log.error(
                            "the events stream's consumer group was gone: Redis lost its "
                            "data (restarted without persistence, or failed over to an empty "
                            "replica); work in flight then was lost, new work goes on"
                        )
                    grouped = True
                if started - adopted_at > self.adopt_after_s:
                    await self.adopt_orphans()
                    adopted_at = started
                applied = await self.read_once(position, block_ms=500)
            except ServiceUnavailableError as exc:
                log.warning("events stream unavailable: %s", exc)
                grouped = False
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
        async with self.store.guard():
            reply: Any = await self.store.redis.xreadgroup(
                EVENTS_GROUP,
                self.consumer,
                {stream: position},
                count=64,
                block=None if position == "0" else block_ms,
            )
        entries = reply[0][1] if reply else []
        return await self._apply_entries(entries)

    async def _apply_entries(self, entries: list[Any]) -> int:
        """Apply each report, then acknowledge them all (acked only once applied)."""
        if not entries:
            return 0
        for _entry_id, fields in entries:
            if fields:
                await self.apply(Completion.from_stream(fields))
        async with self.store.guard():
            await self.store.redis.xack(
                self.store.keys.events(), EVENTS_GROUP, *(e[0] for e in entries)
            )
        return len(entries)

    async def apply(self, report: Completion) -> None:
        """Record every item's outcome and account for the batch, in one round trip."""
        profile = await self._profile(report.worker_id)
        seconds = max(report.finished_at - report.started_at, 0.0)
        price, watts = (profile.price_per_hour, profile.watts) if profile else (0.0, 0.0)
        cost, energy = price * seconds / 3600, watts * seconds / 3600
        share = 1 / max(len(report.results), 1)
        # Each record spans its item's share of the batch, ending when the batch ended,
        # so (finished_at - started_at) / worker_seconds is 1 and never the batch size,
        # which counts other tenants' items (docs/isolation.md, "Lineage timings").
        finished_at = time.time()
        item_started_at = finished_at - seconds * share
        calls: list[ScriptCall] = []
        for result in report.results:
            inline = None if result.inline is None else result.inline.encode()
            if result.digest is None or (inline and digest_bytes(inline) != result.digest):
                await self._failed(report, result)  # no result, or bytes that do not match
                continue
            calls.append(
                self.store.complete_call(
                    result.domain,
                    result.op_key,
                    result.digest,
                    batch_id=report.batch_id,
                    worker=report.worker_id,
                    started_at=item_started_at,
                    finished_at=finished_at,
                    cost_usd=cost * share,
                    energy_wh=energy * share,
                    worker_seconds=seconds * share,
                    inline=inline,
                    half_life_s=self.fairness_half_life_s,
                    size=result.size,
                )
            )
        size = len(report.results)
        calls.append(
            self.store.finish_batch_call(
                report.batch_id, report.worker_id, size, seconds, cost, energy
            )
        )
        replies = await self.store.run_scripts(calls)
        if replies[-1] and self.observe is not None and profile is not None:
            info = await self._signature(report.signature)
            # per unit of work: a training run's seconds over its examples x epochs
            weight = float(info.get("weight", 1.0))
            exec_s = max(seconds - report.load_seconds, 1e-6) / weight
            self.observe(
                profile.accelerator,
                info.get("kind", "?"),
                model_id(info.get("model")),
                size,
                exec_s,
                report.load_seconds,
            )

    async def _profile(self, worker_id: str) -> WorkerProfile | None:
        now = time.monotonic()
        cached = self._profiles.get(worker_id)
        if cached is None or now - cached[0] > _PROFILE_TTL_S:
            cached = (now, await self.store.worker_profile(worker_id))
            self._profiles[worker_id] = cached
        return cached[1]

    async def _signature(self, signature: str) -> dict[str, Any]:
        info = self._signatures.get(signature)
        if info is None:
            info = await self.store.signature_info(signature)
            if info:
                self._signatures[signature] = info
        return info

    async def _failed(self, report: Completion, result: ItemResult) -> None:
        error = result.error or "the worker reported no result and no error"
        if result.error is None and result.digest is not None:
            error = f"the worker's inline result does not match its digest {result.digest}"
        state = await self.store.op_state(result.domain, result.op_key)
        if state.get("status") != "running" or state.get("worker") != report.worker_id:
            # A repeated report, or a late one from a worker the op was taken from:
            # whoever holds the op now decides its fate.
            log.info(
                "ignoring a stale failure report for %s from %s", result.op_key, report.worker_id
            )
            return
        attempts = int(state.get("attempts", "0"))
        if result.deterministic:
            log.warning(
                "item %s failed on attempt %d, not retried (deterministic): %s",
                result.op_key,
                attempts,
                error,
            )
            await self.store.fail(result.domain, result.op_key, error)
            return
        if attempts < self.max_attempts:
            if await self.store.requeue(result.domain, result.op_key, report.worker_id):
                log.info(
                    "item %s failed (attempt %d), retrying: %s", result.op_key, attempts, error
                )
            return
        log.warning("item %s failed after %d attempts: %s", result.op_key, attempts, error)
        await self.store.fail(result.domain, result.op_key, error)
