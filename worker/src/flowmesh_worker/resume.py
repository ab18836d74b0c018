"""Intermediate checkpoints of a training item: stored in the CAS, recorded against its op.

A training executor saves its trainer's checkpoint every ``checkpoint_every`` steps;
``ItemCheckpoints.save`` streams that directory into the CAS as a ``resume`` tree and
records its digest and step against the item's (domain, op key) in Redis (through a
``ResumeStore`` the worker loop provides). When the item runs again, on any worker,
because the one that ran it died, ``latest`` fetches that tree (every file verified) so
the trainer resumes from that step instead of from 0 (docs/training.md).

A missing or damaged intermediate checkpoint is never an error: the run then starts from
step 0, which is slower, never wrong.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from flowmesh_core.blobs import BlobStore
from flowmesh_core.checkpoint import build_tree, read_tree
from flowmesh_core.errors import FlowMeshError
from flowmesh_worker.weights.checkpoints import fetch_tree, hash_directory

__all__ = ["ItemCheckpoints", "ResumeStore"]

log = logging.getLogger("flowmesh.worker")


class ResumeStore(Protocol):
    """Where resume points are recorded (sync; the worker loop bridges it to Redis)."""

    def get(self, domain: str, op_key: str) -> Mapping[str, Any] | None: ...

    def put(self, domain: str, op_key: str, point: Mapping[str, Any]) -> None: ...


class ItemCheckpoints:
    """The intermediate checkpoints of one item (``executors.base.Resumable``)."""

    def __init__(self, blobs: BlobStore, store: ResumeStore, domain: str, op_key: str) -> None:
        self.blobs = blobs
        self.store = store
        self.domain = domain
        self.op_key = op_key

    def save(self, directory: Path, step: int) -> None:
        """Store ``directory`` (files first, the tree last) and record it as the latest."""
        files = hash_directory(directory)
        for rel, digest in files.items():
            self.blobs.put_file(directory / rel, expected_digest=digest)
        tree = build_tree(files, format="resume", base=None, metrics={"step": step})
        digest = self.blobs.put_bytes(tree).digest
        self.store.put(self.domain, self.op_key, {"digest": digest, "step": step})
        log.info("item %s: intermediate checkpoint at step %d is %s", self.op_key, step, digest)

    def latest(self, into: Path) -> tuple[Path, int] | None:
        """The latest intermediate checkpoint fetched into ``into``, and its step; None
        when there is none or it cannot be used (then the run starts from step 0)."""
        point = self.store.get(self.domain, self.op_key)
        if not point:
            return None
        try:
            digest, step = str(point["digest"]), int(point["step"])
            tree = read_tree(self.blobs.get_bytes(digest))
            if tree.format != "resume":
                return None
            target = into / f"checkpoint-{step}"
            fetch_tree(digest, tree, self.blobs, target)
        except (FlowMeshError, KeyError, TypeError, ValueError, OSError) as exc:
            log.warning("item %s: cannot resume (%s); starting from step 0", self.op_key, exc)
            return None
        log.info("item %s: resuming from step %d (%s)", self.op_key, step, digest)
        return target, step
