"""The checkpoints a worker keeps on disk, within a byte budget.

A worker keeps each checkpoint it materialised (``checkpoints.materialise``) and each
full checkpoint it trained (``BatchRunner.store``) as ``ckpt-<hex>`` under its model
directory, so later batches on it use them without another download. Those directories
share the pod's disk (the chart's ``modelCacheSize`` emptyDir) with the input-blob cache,
so they are bounded too: once they hold more than ``budget_bytes``, the least recently
used go first (``_lru.evict_lru``, the rule the input-blob cache follows; a use touches a
directory's mtime, so a restarted worker keeps the order). See docs/training.md.

It must never remove a checkpoint a running batch uses (``using`` pins it), and never
leave half a directory under its ``ckpt-`` name: one is renamed away first, so the
heartbeat's ``held`` list (read from the disk) stops naming it at once. What a killed
worker left behind (a half-removed checkpoint, a half-fetched one an hour old) is swept
when the next one starts, so preemption does not fill the disk.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from flowmesh_worker._lru import evict_lru
from flowmesh_worker.weights.checkpoints import on_disk

__all__ = ["CheckpointDisk"]

log = logging.getLogger(__name__)

_STALE_FETCH_S = 3600.0  # a fetch's staging directory untouched this long is a dead one's


class CheckpointDisk:
    """The ``ckpt-*`` directories under ``model_dir``, kept within ``budget_bytes``."""

    def __init__(self, model_dir: Path, budget_bytes: int) -> None:
        if budget_bytes < 0:
            raise ValueError("budget_bytes must be >= 0")
        self.model_dir = model_dir
        self.budget_bytes = budget_bytes
        self._lock = threading.Lock()
        self._pins: Counter[str] = Counter()
        self._sizes: dict[Path, int] = {}  # a published checkpoint never changes
        self._sweep()

    def _sweep(self) -> None:
        """Remove what killed workers left: every ``.evicted-*`` directory (its checkpoint
        was renamed away to be removed) and ``.fetch-*`` staging untouched for an hour."""
        now = time.time()
        for path in self.model_dir.glob(".evicted-*"):
            shutil.rmtree(path, ignore_errors=True)
        for path in self.model_dir.glob(".fetch-*"):
            try:
                stale = now - path.stat().st_mtime > _STALE_FETCH_S
            except OSError:
                continue
            if stale:
                log.info("removing %s, a fetch a stopped worker left", path.name)
                shutil.rmtree(path, ignore_errors=True)

    @contextmanager
    def using(self, digest: str | None) -> Iterator[None]:
        """Pin the checkpoint ``digest`` (None: nothing) while the block runs."""
        if digest is None:
            yield
            return
        with self._lock:
            self._pins[digest] += 1
        try:
            yield
        finally:
            with self._lock:
                self._pins[digest] -= 1
                if not self._pins[digest]:
                    del self._pins[digest]

    def settle(self) -> list[str]:
        """Remove the least recently used checkpoints no batch uses until the rest fit
        the budget; the digests removed."""
        with self._lock:
            found = on_disk(self.model_dir)
            entries = OrderedDict((digest, self._size(path)) for digest, path in found)
            evicted = evict_lru(entries, self.budget_bytes, set(self._pins))
            paths = dict(found)
            # renamed under the lock: a batch pinning one meanwhile finds it gone, never half
            doomed = [self._retire(digest, paths[digest]) for digest in evicted]
        for path in doomed:
            if path is not None:
                shutil.rmtree(path, ignore_errors=True)
        return evicted

    @property
    def nbytes(self) -> int:
        """Bytes the checkpoints on disk hold."""
        with self._lock:
            return sum(self._size(path) for _, path in on_disk(self.model_dir))

    def _size(self, path: Path) -> int:
        size = self._sizes.get(path)
        if size is None:
            size = self._sizes[path] = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
        return size

    def _retire(self, digest: str, path: Path) -> Path | None:
        self._sizes.pop(path, None)
        away = Path(tempfile.mkdtemp(prefix=".evicted-", dir=self.model_dir)) / "ckpt"
        try:
            path.rename(away)
        except OSError as exc:
            log.warning("could not evict checkpoint %s: %s", digest, exc)
            shutil.rmtree(away.parent, ignore_errors=True)
            return None
        log.info("evicted checkpoint %s from the worker's disk (budget)", digest)
        return away.parent
