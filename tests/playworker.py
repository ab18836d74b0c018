"""A consumer that plays a worker for control-plane tests.

It speaks the real protocol over the real store: registers a profile, reads its
assignment stream through the consumer group, writes each item's result into the CAS,
puts a completion report on the events stream, and acks only then. Its "executor" is a
plain function of the item (no model), so tests can predict every result; the real
executors arrive with the workers.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

from flowmesh_core.blobs import BlobStore
from flowmesh_core.hashing import canonical_json
from flowmesh_core.models import Item, ItemLiteral, WorkerProfile
from flowmesh_core.protocol import Assignment, Completion, ItemResult
from flowmesh_core.store import Store
from flowmesh_core.store.fleet import ASSIGNMENT_GROUP

__all__ = ["PlayWorker", "asked", "echo"]


def echo(item: Item) -> Any:
    """A deterministic stand-in result: what the item was asked, tagged.

    Literals appear as written and references by digest (``{"blob": digest}``): the
    stand-in reads no blob, so tests can predict every result from the inputs alone.
    """
    return {"kind": item.kind, "inputs": asked(item), "sample": item.sample_index}


def asked(item: Item) -> dict[str, Any]:
    """An item's inputs as ``echo`` reports them."""
    return {
        name: inp.value if isinstance(inp, ItemLiteral) else {inp.kind: inp.digest}
        for name, inp in item.inputs.items()
    }


class PlayWorker:
    """Executes assignments with ``execute`` (raise to fail an item)."""

    def __init__(
        self,
        store: Store,
        blobs: BlobStore,
        worker_id: str = "play-1",
        *,
        execute: Callable[[Item], Any] = echo,
        slots: int = 1,
        max_batch: int = 64,
        price_per_hour: float = 1.0,
        watts: float = 100.0,
        delay_s: float = 0.0,
    ) -> None:
        self.store = store
        self.blobs = blobs
        self.profile = WorkerProfile(
            worker_id=worker_id,
            accelerator="cpu",
            memory_bytes=1 << 30,
            price_per_hour=price_per_hour,
            watts=watts,
            slots=slots,
            max_batch=max_batch,
        )
        self.execute = execute
        self.delay_s = delay_s
        self.batches: list[Assignment] = []
        self.warm: set[str] = set()  # models it has "loaded", reported like a real worker
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    async def start(self) -> None:
        await self.store.register_worker(self.profile)
        self._task = asyncio.create_task(self._loop())

    async def kill(self) -> None:
        """Die at once, mid-batch if one is in hand: no report, no ack, no more heartbeats."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(self._task, timeout=5)

    async def stop(self) -> None:
        """Stop after the batch in hand (a cancelled blocking read can hang redis-py)."""
        self._stopping.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), timeout=5)
            except TimeoutError:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task

    async def _loop(self) -> None:
        stream = self.store.keys.assignments(self.profile.worker_id)
        while not self._stopping.is_set():
            await self.store.heartbeat(self.profile.worker_id, warm=sorted(self.warm))
            reply: Any = await self.store.redis.xreadgroup(
                ASSIGNMENT_GROUP, self.profile.worker_id, {stream: ">"}, count=1, block=100
            )
            for entry_id, fields in reply[0][1] if reply else []:
                await self._run(Assignment.from_stream(fields))
                await self.store.redis.xack(stream, ASSIGNMENT_GROUP, entry_id)

    async def _run(self, assignment: Assignment) -> None:
        self.batches.append(assignment)
        if assignment.model is not None:
            self.warm.add(assignment.model.key)
        started = time.time()
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        results = []
        for assigned in assignment.items:
            try:
                value = self.execute(assigned.spec)
            except Exception as exc:
                results.append(
                    ItemResult(domain=assigned.domain, op_key=assigned.op_key, error=str(exc))
                )
                continue
            put = self.blobs.put_bytes(canonical_json(value))
            results.append(
                ItemResult(domain=assigned.domain, op_key=assigned.op_key, digest=put.digest)
            )
        report = Completion(
            batch_id=assignment.batch_id,
            worker_id=self.profile.worker_id,
            signature=assignment.signature,
            started_at=started,
            finished_at=time.time(),
            results=results,
        )
        await self.store.redis.xadd(self.store.keys.events(), report.to_stream())
