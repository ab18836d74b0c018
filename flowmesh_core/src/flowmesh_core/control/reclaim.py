"""Re-planning the work of workers that stopped heartbeating (died or were preempted).

Every batch on a dead worker's assignment stream, delivered or not, is taken over by the
reclaimer: its items go back to the ready pool (``requeue``, only if that worker still
holds them), the batch is forgotten and the worker removed. A late report from the
"dead" worker is harmless: ``complete`` keeps the first result, and an item already
finished is skipped when its ready-pool entry is claimed.
"""

from __future__ import annotations

import logging
import time

from flowmesh_core.store import Store

__all__ = ["reclaim_dead_workers"]

log = logging.getLogger("flowmesh.reclaim")


async def reclaim_dead_workers(store: Store, ttl_s: float) -> int:
    """Requeue the items held by workers silent for ``ttl_s``; how many were requeued."""
    requeued = 0
    for worker_id in await store.dead_workers(time.time() - ttl_s):
        for entry_id, batch_id in await store.take_assignments(worker_id):
            for member in await store.drop_assignment(worker_id, entry_id, batch_id):
                _tenant, domain, op_key = member.split("|", 2)
                requeued += await store.requeue(domain, op_key, worker_id)
        await store.forget_worker(worker_id)
        log.warning("worker %s stopped heartbeating; its work was re-planned", worker_id)
    if requeued:
        await store.wake_scheduler()
    return requeued
