"""Re-planning the work of workers that stopped heartbeating (died or were preempted).

Every batch on a dead worker's assignment stream, delivered or not, is taken over by the
reclaimer: its items go back to the ready pool (``requeue``, only if that worker still
holds them, and only while they have attempts left), the batch is forgotten and the
worker removed. A late report from the
"dead" worker is harmless: ``complete`` keeps the first result, and an item already
finished is skipped when its ready-pool entry is claimed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from flowmesh_core.store import Store

__all__ = ["Exhausted", "reclaim_dead_workers"]

Exhausted = Callable[[str, str, str], Awaitable[None]]
"""Called as (domain, op_key, error) for an item that has used up its attempts."""

log = logging.getLogger("flowmesh.reclaim")


async def reclaim_dead_workers(
    store: Store, ttl_s: float, max_attempts: int, exhausted: Exhausted
) -> int:
    """Requeue the items held by workers silent for ``ttl_s``; how many were requeued.

    An item that has already run ``max_attempts`` times is not requeued but failed
    (``exhausted``): an item that kills every worker it lands on must not take the whole
    fleet down one worker at a time.
    """
    requeued = 0
    for worker_id in await store.dead_workers(time.time() - ttl_s):
        retired = await store.is_retired(worker_id)
        before = requeued
        for entry_id, batch_id in await store.take_assignments(worker_id):
            for member in await store.drop_assignment(worker_id, entry_id, batch_id):
                _tenant, domain, op_key = store.keys.parse_ready_member(member)
                state = await store.op_state(domain, op_key)
                if state.get("worker") != worker_id:
                    continue
                if int(state.get("attempts", "0")) >= max_attempts:
                    error = f"its worker died on each of {max_attempts} attempts"
                    await exhausted(domain, op_key, error)
                    continue
                requeued += await store.requeue(domain, op_key, worker_id)
        await store.forget_worker(worker_id)
        if retired:
            log.info("worker %s left; %d item(s) it held re-planned", worker_id, requeued - before)
        else:
            log.warning("worker %s stopped heartbeating; its work was re-planned", worker_id)
    if requeued:
        await store.wake_scheduler()
    return requeued
