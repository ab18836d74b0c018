"""Executing one assigned batch: inputs in, results into the CAS, a report out.

This is the synchronous part of the worker (it runs in a thread, so heartbeats go on
while a model computes). It never touches Redis: the loop that called it reports and
acks. Per-item failures stay per item: when an executor raises on the whole batch, the
items are run one at a time so only the guilty one fails.

Running and storing are two steps (``execute``, then ``store``) so that a CAS that fails
under the worker costs a retry of the store, never another run of the model. A result up
to ``inline_bytes`` is not stored at all: it travels in the report, and the control plane
keeps it in Redis with its action-cache entry (no blob file, no fsync).

A training item's outcome is a checkpoint directory: ``execute`` hashes its files into a
tree (``flowmesh_core.checkpoint``), ``store`` streams each file into the CAS and then
the tree, which is always a blob (never inline: workers read it from the CAS when the
checkpoint is used as a model). Once stored, a full model's directory becomes this
worker's local copy of the checkpoint (as if materialised: it holds what it trained, and
reports it); anything else is deleted.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flowmesh_core.blobs import BlobStore, PutResult
from flowmesh_core.checkpoint import build_tree
from flowmesh_core.errors import FlowMeshError, InvalidInputError, ItemRejectedError
from flowmesh_core.hashing import canonical_json, digest_bytes
from flowmesh_core.protocol import Assignment, Completion, ItemResult
from flowmesh_worker.blob_cache import BlobCache
from flowmesh_worker.executors import Batch, Checkpoint, Executor, ItemError, Loaded, WorkItem
from flowmesh_worker.inputs import ByteSource, resolve_inputs
from flowmesh_worker.resume import ItemCheckpoints, ResumeStore
from flowmesh_worker.weights import WarmCache, resolve_model
from flowmesh_worker.weights.checkpoints import checkpoint_dir, hash_directory, publish
from flowmesh_worker.weights.disk import CheckpointDisk

__all__ = ["BatchRunner", "Executed", "StoredTree"]

log = logging.getLogger("flowmesh.worker")

ExecutorFactory = Callable[[str], Executor]
ProgressSink = Callable[[str, str, Mapping[str, Any]], None]
"""Takes (domain, op key, progress) of a running item; set by the worker loop."""

PHASE_RENEW_S = 10.0
"""How often a phase (a model load) is reported again while it lasts; the progress key
lives at least 30 s (``Worker._progress_sink``), so it never lapses mid-load."""


@dataclass(frozen=True)
class StoredTree:
    """A checkpoint tree a batch produced: its digest and size, its files' digests and
    their total bytes (what the worker indexes: ``Store.record_checkpoint``), and the
    directory of a full model to keep as that checkpoint once stored (None for an
    adapter, which is kept merged: ``weights.checkpoints.materialise``)."""

    digest: str
    size: int
    files: tuple[str, ...]
    nbytes: int
    directory: Path | None = None


@dataclass(frozen=True)
class Executed:
    """A batch that ran and whose results are not stored yet.

    ``outcomes`` holds, per item in assignment order, its result as canonical JSON bytes
    or the ItemError it failed with. ``finished_at`` is when the run ended: storing is
    not counted, so a CAS that needed retries does not make the batch look slow.
    ``files`` are checkpoint files (local path, digest) to store before the results;
    ``trees`` the positions of results that are checkpoint trees (always stored as
    blobs); ``scratch`` the directories to delete once everything is stored.
    """

    assignment: Assignment
    started_at: float
    finished_at: float
    load_seconds: float
    outcomes: tuple[bytes | ItemError, ...]
    files: tuple[tuple[Path, str], ...] = ()
    trees: frozenset[int] = frozenset()
    scratch: tuple[Path, ...] = ()
    checkpoints: tuple[StoredTree, ...] = ()


class BatchRunner:
    """Runs assignments with executors made by ``factory`` and models kept in ``cache``."""

    def __init__(
        self,
        blobs: BlobStore,
        factory: ExecutorFactory,
        cache: WarmCache,
        model_dir: Path,
        worker_id: str,
        *,
        inline_bytes: int = 0,
        model_roots: Sequence[Path] | None = None,
        blob_cache: BlobCache | None = None,
        checkpoint_disk: CheckpointDisk | None = None,
    ) -> None:
        """Results up to ``inline_bytes`` travel in the report instead of the CAS (see
        ``Settings.inline_result_bytes``); local models may lie under ``model_roots``
        (``None``: ``model_dir``; see ``Settings.model_roots``). Items' referenced
        inputs are read through ``blob_cache`` (None: none is kept). Checkpoints kept
        under ``model_dir`` stay within ``checkpoint_disk``'s budget (None: unbounded)."""
        self.blob_cache = blob_cache
        self.checkpoint_disk = checkpoint_disk
        self.blobs = blobs
        self.inline_bytes = inline_bytes
        self.factory = factory
        self.cache = cache
        self.model_dir = model_dir
        self.model_roots = model_roots
        self.worker_id = worker_id
        self._executors: dict[str, Executor] = {}
        self._lock = threading.Lock()
        self.progress_sink: ProgressSink | None = None
        self.resume_store: ResumeStore | None = None

    def execute(self, assignment: Assignment, inputs: ByteSource | None = None) -> Executed:
        """Run ``assignment``; what each item produced or why it failed. Failures of the
        executor, its model or an item's inputs become ItemErrors: this does not raise.
        Referenced inputs are read from ``inputs`` (bytes fetched ahead), else the CAS."""
        started = time.time()
        load_seconds = 0.0
        outcomes: list[Any]
        model = assignment.model
        disk = self.checkpoint_disk
        try:
            with disk.using(model.digest if model else None) if disk else nullcontext():
                executor = self._executor(assignment.kind)
                loaded, load_seconds = self._load(executor, assignment)
                source = inputs or self.blobs
                if self.blob_cache is not None:
                    source = self.blob_cache.over(source)
                outcomes = self._execute(executor, assignment, loaded, source)
        except FlowMeshError as exc:
            outcomes = [ItemError(str(exc))] * len(assignment.items)
        except Exception as exc:
            log.exception("batch %s (%s) failed", assignment.batch_id, assignment.kind)
            outcomes = [ItemError(_describe(exc))] * len(assignment.items)
        finished = time.time()
        packed = _Packed()
        encoded = tuple(packed.encode(index, outcome) for index, outcome in enumerate(outcomes))
        return Executed(
            assignment=assignment,
            started_at=started,
            finished_at=finished,
            load_seconds=load_seconds,
            outcomes=encoded,
            files=tuple(packed.files),
            trees=frozenset(packed.trees),
            scratch=tuple(packed.scratch),
            checkpoints=tuple(packed.checkpoints),
        )

    def store(self, executed: Executed) -> Completion:
        """Write ``executed``'s results into the CAS; the report to send.

        Raises what the blob store raises (BlobStoreUnavailableError when it does not
        answer). Calling it again after a failure is safe: a result already stored is
        not written twice (put-if-absent).
        """
        assignment = executed.assignment
        for path, digest in executed.files:  # a tree never lands before its files
            self.blobs.put_file(path, expected_digest=digest)
        as_blob = [
            isinstance(o, bytes) and (i in executed.trees or not self._inlined(o))
            for i, o in enumerate(executed.outcomes)
        ]
        large = [
            o
            for o, blob in zip(executed.outcomes, as_blob, strict=True)
            if blob and isinstance(o, bytes)
        ]
        stored = iter(self.blobs.put_many(large) if large else [])  # one durable write
        results = [
            self._result(assigned.domain, assigned.op_key, outcome, stored, blob)
            for assigned, outcome, blob in zip(
                assignment.items, executed.outcomes, as_blob, strict=True
            )
        ]
        self._keep(executed)
        self.discard(executed)
        if self.checkpoint_disk is not None:
            self.checkpoint_disk.settle()
        return Completion(
            batch_id=assignment.batch_id,
            worker_id=self.worker_id,
            signature=assignment.signature,
            started_at=executed.started_at,
            finished_at=executed.finished_at,
            load_seconds=executed.load_seconds,
            results=results,
        )

    def _keep(self, executed: Executed) -> None:
        """Publish each full checkpoint ``executed`` trained as this worker's local copy
        (``checkpoint_dir``), so the worker holds it (and reports it) without fetching
        it back, within the disk budget (``weights.disk``). Only a courtesy: when it
        cannot be moved it is deleted with the rest."""
        for tree in executed.checkpoints:
            if tree.directory is None:
                continue
            target = checkpoint_dir(tree.digest, self.model_dir)
            try:
                self.model_dir.mkdir(parents=True, exist_ok=True)
                if not target.exists():
                    publish(tree.directory, target)
                os.utime(target)  # the most recently used: the last the budget removes
            except OSError as exc:
                log.info("checkpoint %s not kept locally: %s", tree.digest, exc)

    def discard(self, executed: Executed) -> None:
        """Delete the local files ``executed``'s checkpoints left (once stored, or when
        they never will be)."""
        for scratch in executed.scratch:
            shutil.rmtree(scratch, ignore_errors=True)

    def _executor(self, kind: str) -> Executor:
        with self._lock:
            executor = self._executors.get(kind)
            if executor is None:
                executor = self._executors[kind] = self.factory(kind)
            return executor

    def _load(self, executor: Executor, assignment: Assignment) -> tuple[Loaded | None, float]:
        model = assignment.model
        if not executor.needs_model:
            return None, 0.0
        if model is None:
            raise FlowMeshError(f"kind {assignment.kind!r} needs a model; the batch named none")
        disk = self.checkpoint_disk
        path = resolve_model(
            model,
            model_dir=self.model_dir,
            roots=self.model_roots,
            blobs=self.blobs,
            pin=disk.using if disk else None,
        )

        def load() -> Loaded:  # only on a miss: a warm model reports nothing
            loading = {"phase": "loading", "model": model.name or model.digest}
            with self._reporting(assignment, loading):
                return executor.load(path, model)

        loaded, seconds = self.cache.get(assignment.kind, model, load)
        if seconds:
            self._phase(assignment, {"phase": "running"})
        return loaded, seconds

    @contextmanager
    def _reporting(self, assignment: Assignment, progress: Mapping[str, Any]) -> Iterator[None]:
        """Report ``progress`` now and again every PHASE_RENEW_S until the block ends, so
        a load longer than the progress key's life (a big model) still shows."""
        done = threading.Event()

        def renew() -> None:
            while not done.wait(PHASE_RENEW_S):
                self._phase(assignment, progress)

        self._phase(assignment, progress)
        renewer = threading.Thread(target=renew, name="phase-renewer", daemon=True)
        renewer.start()
        try:
            yield
        finally:
            done.set()
            renewer.join()

    def _phase(self, assignment: Assignment, progress: Mapping[str, Any]) -> None:
        """Say what the batch's items wait on (a model load; then running), so a status
        can tell a requester (docs/architecture.md, "What a status says")."""
        for assigned in assignment.items:
            report = self._reporter(assigned.domain, assigned.op_key)
            if report is not None:
                report(progress)

    def _execute(
        self, executor: Executor, assignment: Assignment, loaded: Loaded | None, source: ByteSource
    ) -> list[Any]:
        outcomes: list[Any] = [None] * len(assignment.items)
        ready: list[tuple[int, WorkItem]] = []
        for index, assigned in enumerate(assignment.items):
            try:
                inputs = resolve_inputs(assigned.spec.inputs, source)
            except FlowMeshError as exc:
                outcomes[index] = ItemError(str(exc), deterministic=_deterministic(exc))
                continue
            spec = assigned.spec
            report = self._reporter(assigned.domain, spec.op_key)
            resume = self.resume_store
            saved = (
                ItemCheckpoints(self.blobs, resume, assigned.domain, spec.op_key)
                if resume is not None
                else None
            )
            work = WorkItem(spec.op_key, inputs, spec.params, spec.sample_index, report, saved)
            ready.append((index, work))
        if not ready:
            return outcomes
        batch = Batch(assignment.kind, assignment.version, assignment.model, [w for _, w in ready])
        for (index, _), outcome in zip(ready, self._run(executor, batch, loaded), strict=True):
            outcomes[index] = outcome
        return outcomes

    def _reporter(self, domain: str, op_key: str) -> Callable[[Mapping[str, Any]], None] | None:
        sink = self.progress_sink
        if sink is None:
            return None

        def report(progress: Mapping[str, Any]) -> None:
            try:
                sink(domain, op_key, progress)
            except Exception:  # progress is a courtesy: it never fails the item
                log.warning("could not report progress of %s", op_key, exc_info=True)

        return report

    def _run(self, executor: Executor, batch: Batch, loaded: Loaded | None) -> list[Any]:
        try:
            outcomes = executor.run(batch, loaded)
            if len(outcomes) != len(batch.items):
                raise RuntimeError(
                    f"executor returned {len(outcomes)} results for {len(batch.items)} items"
                )
            return outcomes
        except ItemRejectedError as exc:
            if len(batch.items) == 1:
                return [ItemError(str(exc), deterministic=True)]
            log.info(
                "batch of %d %s items rejected one; running them one by one",
                len(batch.items),
                batch.kind,
            )
        except Exception as exc:
            if len(batch.items) == 1:
                return [ItemError(_describe(exc))]
            log.info(
                "batch of %d %s items raised (%s); running them one by one",
                len(batch.items),
                batch.kind,
                _describe(exc),
            )
        return [self._run(executor, _alone(batch, item), loaded)[0] for item in batch.items]

    def _inlined(self, outcome: bytes) -> bool:
        return len(outcome) <= self.inline_bytes

    def _result(
        self,
        domain: str,
        op_key: str,
        outcome: bytes | ItemError,
        stored: Iterator[PutResult],
        as_blob: bool,
    ) -> ItemResult:
        """The report's entry for one item: an error, its bytes inline, or the digest of
        its blob (the next of ``stored``, the batch's puts in item order)."""
        if isinstance(outcome, ItemError):
            return ItemResult(
                domain=domain,
                op_key=op_key,
                error=outcome.message or "failed",
                deterministic=outcome.deterministic,
            )
        if not as_blob:
            digest = digest_bytes(outcome)
            return ItemResult(domain=domain, op_key=op_key, digest=digest, inline=outcome.decode())
        put = next(stored)
        if self.blob_cache is not None:  # the next node's items may read it here
            self.blob_cache.keep(put.digest, outcome)
        return ItemResult(domain=domain, op_key=op_key, digest=put.digest, size=put.size)


class _Packed:
    """Encodes a batch's outcomes, collecting what its checkpoints need stored."""

    def __init__(self) -> None:
        self.files: list[tuple[Path, str]] = []
        self.trees: list[int] = []
        self.scratch: list[Path] = []
        self.checkpoints: list[StoredTree] = []

    def encode(self, index: int, outcome: Any) -> bytes | ItemError:
        if not isinstance(outcome, Checkpoint):
            return _encode(outcome)
        self.scratch.append(outcome.scratch)
        try:
            files = hash_directory(outcome.directory)
            tree = build_tree(
                files, format=outcome.format, base=outcome.base, metrics=outcome.metrics
            )
            nbytes = sum((outcome.directory / rel).stat().st_size for rel in files)
        except (OSError, FlowMeshError) as exc:
            return ItemError(f"cannot store the checkpoint: {_describe(exc)}")
        self.files += [(outcome.directory / rel, digest) for rel, digest in files.items()]
        self.trees.append(index)
        keep = outcome.directory if outcome.format == "full" else None
        stored = StoredTree(digest_bytes(tree), len(tree), tuple(files.values()), nbytes, keep)
        self.checkpoints.append(stored)
        return tree


def _encode(outcome: Any) -> bytes | ItemError:
    """An executor's result for one item as canonical JSON, or why it cannot be stored."""
    if isinstance(outcome, ItemError):
        return outcome
    try:
        return canonical_json(outcome)
    except InvalidInputError as exc:
        return ItemError(f"the executor's result is not JSON: {exc}")


def _deterministic(exc: FlowMeshError) -> bool:
    """Whether an input that could not be resolved would fail the same way everywhere: a
    blob that is not JSON or text would; a blob not found, a corrupt copy or a store that
    does not answer may not (another worker, or a later try, may read it)."""
    return isinstance(exc, InvalidInputError)


def _alone(batch: Batch, item: WorkItem) -> Batch:
    return Batch(batch.kind, batch.version, batch.model, [item])


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
