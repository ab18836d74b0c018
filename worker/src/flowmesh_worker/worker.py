"""The worker loop: register, heartbeat, read batches, execute, report, ack, drain.

A worker holds nothing that cannot be lost. What it was handed lives on its assignment
stream until it acks, and it acks only after every result of the batch is in the CAS and
its report is on the events stream (one MULTI). If it dies, its heartbeat lapses and the
control plane re-plans what it held; a late finish is harmless because results are
content-addressed and the first report wins.

A read that finds its consumer group gone (Redis lost its data, or the control plane
took this worker for dead and forgot it) records the worker again and reads on. Results
that cannot be stored are stored again (a few times), never computed again.

Stopping (SIGTERM, or ``stop`` set) drains: no new batches are read or assigned, the
batches in hand finish (for up to ``drain_s``), and the worker then retires, which hands
anything left on its stream back to the scheduler. The loop never cancels a task that is
blocked on Redis: it stops through events and short blocking reads.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import itertools
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

from flowmesh_core.errors import FlowMeshError, ServiceUnavailableError, StreamGroupMissingError
from flowmesh_core.models import ItemBlob, ItemManifest, WorkerProfile
from flowmesh_core.protocol import Assignment, Completion, ItemResult
from flowmesh_core.results import Prefetched, ResultReader
from flowmesh_core.store import Store
from flowmesh_worker.runner import BatchRunner, Executed, ProgressSink, StoredTree
from flowmesh_worker.weights.checkpoints import held

__all__ = ["Worker"]

log = logging.getLogger("flowmesh.worker")

READ_BLOCK_MS = 500
RETRY_BACKOFF_S = (0.5, 1.0, 2.0, 5.0)
STORE_TRIES = 5
STORE_BACKOFF_S = 0.2


class Worker:
    """One worker process's loop over a store, a batch runner and a profile."""

    def __init__(
        self,
        store: Store,
        runner: BatchRunner,
        profile: WorkerProfile,
        *,
        heartbeat_s: float = 5.0,
        drain_s: float = 60.0,
        store_tries: int = STORE_TRIES,
        store_backoff_s: float = STORE_BACKOFF_S,
    ) -> None:
        """``store_tries`` writes of a batch's results are tried, ``store_backoff_s``
        apart at first and twice as far apart each time, before its items fail."""
        self.store = store
        self.runner = runner
        self.profile = profile
        self.heartbeat_s = heartbeat_s
        self.drain_s = drain_s
        self.store_tries = store_tries
        self.store_backoff_s = store_backoff_s
        self.batches_done = 0
        self.items_done = 0
        self._running: set[asyncio.Task[None]] = set()
        self._free_slots = profile.slots
        self._slot_freed = asyncio.Event()
        self._finished = asyncio.Event()

    @property
    def worker_id(self) -> str:
        return self.profile.worker_id

    async def run(self, stop: asyncio.Event) -> None:
        """Work until ``stop`` is set, then drain and retire."""
        await self.store.register_worker(self.profile)
        self.runner.progress_sink = self._progress_sink(asyncio.get_running_loop())
        self.runner.resume_store = _LoopResumeStore(self.store, asyncio.get_running_loop())
        log.info(
            "worker %s registered: %s, %d slot(s), batches up to %d, $%.2f/h, %.0f W",
            self.worker_id, self.profile.accelerator, self.profile.slots,
            self.profile.max_batch, self.profile.price_per_hour, self.profile.watts,
        )  # fmt: skip
        beats = asyncio.create_task(self._heartbeats(), name="heartbeats")
        try:
            await self._resume_pending()
            while not stop.is_set():
                await self._read_and_start(stop)
        finally:
            await self._drain()
            self._finished.set()
            await beats
            await self.store.retire_worker(self.worker_id)
            await self.store.wake_scheduler()
            log.info(
                "worker %s stopped after %d batch(es), %d item(s)",
                self.worker_id, self.batches_done, self.items_done,
            )  # fmt: skip

    def _progress_sink(self, loop: asyncio.AbstractEventLoop) -> ProgressSink:
        """Writes a running item's progress to the store from the executor's thread; it
        expires after a few missed heartbeats, so a dead worker's progress goes away."""
        ttl_s = max(30.0, 6 * self.heartbeat_s)

        def sink(domain: str, op_key: str, progress: Mapping[str, Any]) -> None:
            record = {**progress, "worker": self.worker_id, "at": time.time()}
            write = self.store.set_item_progress(domain, op_key, record, ttl_s)
            asyncio.run_coroutine_threadsafe(write, loop).add_done_callback(_log_failure)

        return sink

    async def _read_and_start(self, stop: asyncio.Event) -> None:
        if self._free_slots <= 0:
            self._slot_freed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._slot_freed.wait(), READ_BLOCK_MS / 1000)
            return
        try:
            entries = await self._read()
        except ServiceUnavailableError as exc:
            log.warning("reading assignments failed (%s); retrying in 1s", exc)
            await asyncio.sleep(1.0)
            return
        for entry_id, fields in entries:
            self._start(entry_id, fields)

    async def _read(self) -> list[tuple[str, dict[str, str]]]:
        """New batches, as many as there are free slots. If the stream's consumer group
        is gone, the worker is recorded again (group included) and nothing is returned:
        what is assigned from now on is read next time. The loss is logged as an error,
        as docs/architecture.md ("Streams and delivery") promises."""
        try:
            return await self.store.read_assignments(
                self.worker_id, self._free_slots, READ_BLOCK_MS
            )
        except StreamGroupMissingError as exc:
            log.error(
                "worker %s: Redis state was lost, or the control plane took this worker "
                "for dead (%s); registering again, new work goes on",
                self.worker_id, exc,
            )  # fmt: skip
            await self.store.rejoin_worker(self.profile)
            return []

    def _start(self, entry_id: str, fields: dict[str, str]) -> None:
        self._free_slots -= 1
        task = asyncio.create_task(self._handle(entry_id, fields), name=f"batch-{entry_id}")
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _resume_pending(self) -> None:
        """Entries this worker id was handed but never acked (a restart under the same id)."""
        for entry_id, fields in await self.store.read_assignments(
            self.worker_id, 1000, None, pending=True
        ):
            self._start(entry_id, fields)

    async def _handle(self, entry_id: str, fields: dict[str, str]) -> None:
        try:
            assignment = Assignment.from_stream(fields)
            await self._execute(entry_id, assignment)
        except Exception:
            log.exception("assignment %s could not be handled", entry_id)
        finally:
            self._free_slots += 1
            self._slot_freed.set()

    async def _execute(self, entry_id: str, assignment: Assignment) -> None:
        report, trees = await self._run(assignment)
        await self._report(entry_id, report, trees)
        failed = sum(1 for r in report.results if r.error is not None)
        self.batches_done += 1
        self.items_done += len(report.results)
        log.info(
            "batch %s: %d %s item(s) in %.3fs (load %.3fs)%s",
            assignment.batch_id, len(report.results), assignment.kind,
            report.finished_at - report.started_at, report.load_seconds,
            f", {failed} failed" if failed else "",
        )  # fmt: skip

    async def _run(self, assignment: Assignment) -> tuple[Completion, tuple[StoredTree, ...]]:
        """Execute the batch once, then store its results (see ``_store``); the report,
        and the checkpoint trees stored (none when storing failed)."""
        try:
            inputs = await self._prefetch(assignment)
            executed = await asyncio.to_thread(self.runner.execute, assignment, inputs)
        except Exception as exc:  # a bug in the runner: fail the items, never strand them
            log.exception("batch %s could not be run", assignment.batch_id)
            failed = _failed(assignment, self.worker_id, f"the batch could not be run: {exc}")
            return failed, ()
        return await self._store(executed)

    async def _prefetch(self, assignment: Assignment) -> Prefetched | None:
        """The batch's referenced inputs kept inline in Redis (small results), fetched
        in at most two round trips; None when it references nothing. A failure here is
        left to the reads in the runner, which then fail the items that need them."""
        blobs = [i.digest for a in assignment.items for i in a.spec.inputs.values()
                 if isinstance(i, ItemBlob)]  # fmt: skip
        manifests = [i.digest for a in assignment.items for i in a.spec.inputs.values()
                     if isinstance(i, ItemManifest)]  # fmt: skip
        if not blobs and not manifests:
            return None
        reader = ResultReader(self.store, self.runner.blobs)
        try:
            return await reader.prefetch(blobs, dict.fromkeys(manifests))
        except FlowMeshError as exc:
            log.warning("batch %s: inputs not fetched ahead (%s)", assignment.batch_id, exc)
            return None

    async def _store(self, executed: Executed) -> tuple[Completion, tuple[StoredTree, ...]]:
        """Store the results (see ``_store_retrying``); the batch never runs again for
        it. If they cannot be stored, a report that fails every item: the control plane
        retries them (up to max_attempts) and this worker's slot is freed."""
        try:
            return await self._store_retrying(executed), executed.checkpoints
        except Exception as exc:  # the CAS stayed away, or failed in a way retries cannot mend
            batch_id = executed.assignment.batch_id
            log.error("batch %s: results could not be stored: %s", batch_id, exc)
            self.runner.discard(executed)
            failed = _failed(
                executed.assignment, self.worker_id, f"results could not be stored: {exc}"
            )
            return failed, ()

    async def _store_retrying(self, executed: Executed) -> Completion:
        """Store, retrying while the CAS does not answer: ``store_tries`` tries in all."""
        delay = self.store_backoff_s
        for _ in range(self.store_tries - 1):
            try:
                return await asyncio.to_thread(self.runner.store, executed)
            except ServiceUnavailableError as exc:
                log.warning(
                    "batch %s: storing results failed (%s); retrying in %.1fs",
                    executed.assignment.batch_id, exc, delay,
                )  # fmt: skip
            await asyncio.sleep(delay)
            delay *= 2
        return await asyncio.to_thread(self.runner.store, executed)

    async def _report(
        self, entry_id: str, report: Completion, trees: Sequence[StoredTree] = ()
    ) -> None:
        """Index the checkpoint ``trees`` stored (their files' readers and sizes), then
        report and ack, retrying until Redis takes it. The results are in the CAS, so
        a report that did not land never runs the batch again. If Redis stays away past
        the heartbeat TTL, the control plane re-plans the batch and this late report is
        harmless (the first result wins). The index lands before the report, so a tenant
        that sees the checkpoint can read its files."""
        for attempt in itertools.count():
            try:
                for tree in trees:
                    await self.store.record_checkpoint(
                        tree.digest, tree.size, tree.files, tree.nbytes
                    )
                await self.store.report_batch(self.worker_id, entry_id, report.to_stream())
                return
            except Exception as exc:
                delay = RETRY_BACKOFF_S[min(attempt, len(RETRY_BACKOFF_S) - 1)]
                log.warning(
                    "batch %s: report failed (%s); retrying in %.1fs",
                    report.batch_id,
                    exc,
                    delay,
                )
                await asyncio.sleep(delay)

    async def _drain(self) -> None:
        with contextlib.suppress(Exception):
            await self.store.set_draining(self.worker_id)
        if not self._running:
            return
        log.info(
            "worker %s draining %d batch(es) in hand",
            self.worker_id,
            len(self._running),
        )
        _done, pending = await asyncio.wait(set(self._running), timeout=self.drain_s)
        if pending:
            # Their threads cannot be interrupted; the batches stay unacked and the
            # control plane re-plans them once this worker is retired.
            log.warning(
                "worker %s: %d batch(es) did not finish within %.0fs; handing them back",
                self.worker_id, len(pending), self.drain_s,
            )  # fmt: skip

    async def _heartbeats(self) -> None:
        """Beat every ``heartbeat_s`` (with the warm models, and the checkpoints and
        input blobs on disk) until the worker is finished."""
        while not self._finished.is_set():
            started = time.monotonic()
            try:
                await self.store.heartbeat(
                    self.worker_id,
                    warm=self.runner.cache.warm_keys(),
                    held=self._held(),
                )
            except Exception as exc:
                log.warning("heartbeat failed: %s", exc)
            wait = max(0.05, self.heartbeat_s - (time.monotonic() - started))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._finished.wait(), wait)

    def _held(self) -> list[str]:
        """The digests reported as held: checkpoints on disk, then cached input blobs."""
        blobs = self.runner.blob_cache
        return held(self.runner.model_dir) + (blobs.held() if blobs is not None else [])


class _LoopResumeStore:
    """Resume points in Redis, for the executor's thread (``resume.ResumeStore``): each
    call waits for its write or read on the worker's event loop."""

    TTL_S = 7 * 24 * 3600.0
    WAIT_S = 30.0

    def __init__(self, store: Store, loop: asyncio.AbstractEventLoop) -> None:
        self.store = store
        self.loop = loop

    def get(self, domain: str, op_key: str) -> Mapping[str, Any] | None:
        read = self.store.resume_point(domain, op_key)
        return asyncio.run_coroutine_threadsafe(read, self.loop).result(self.WAIT_S)

    def put(self, domain: str, op_key: str, point: Mapping[str, Any]) -> None:
        record = {**point, "at": time.time()}
        write = self.store.set_resume_point(domain, op_key, record, self.TTL_S)
        asyncio.run_coroutine_threadsafe(write, self.loop).result(self.WAIT_S)


def _log_failure(future: concurrent.futures.Future[None]) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.warning("could not record progress: %s", future.exception())


def _failed(assignment: Assignment, worker_id: str, error: str) -> Completion:
    """A report that fails every item of ``assignment`` with ``error``."""
    now = time.time()
    return Completion(
        batch_id=assignment.batch_id,
        worker_id=worker_id,
        signature=assignment.signature,
        started_at=now,
        finished_at=now,
        load_seconds=0.0,
        results=[
            ItemResult(domain=a.domain, op_key=a.op_key, error=error) for a in assignment.items
        ],
    )
