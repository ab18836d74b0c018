"""One line of progress for a FlowMesh workflow that is not done yet: what it waits on.

From a status fetched with lineage, each unfinished node says how many of its items are
queued (no worker has them: the fleet is busy, scaled to zero, or has no worker for the
kind) and how many are running, on which workers and for how long (a first batch on a
worker includes loading the model). Pure, and free of Airflow imports, so it is tested
on its own; the trigger and the blocking wait log it after each long-poll.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the client's return types; never imported at run time
    from flowmesh_core.models.api import NodeStatus, WorkflowStatus

__all__ = ["summary"]


def _waiting_on(node: NodeStatus, now: float) -> str:
    states = Counter(str(record.status) for record in node.lineage)
    parts = []
    if states["pending"]:
        parts.append(f"{states['pending']} queued, waiting for a worker")
    running = [r for r in node.lineage if str(r.status) == "running"]
    if running:
        workers = sorted({r.worker for r in running if r.worker})
        started = [r.started_at for r in running if r.started_at]
        since = f" for {now - min(started):.0f} s" if started else ""
        on = f" on {', '.join(workers)}" if workers else ""
        parts.append(f"{len(running)} running{on}{since} (a worker's first batch loads its model)")
    return f" ({'; '.join(parts)})" if parts else ""


def summary(status: WorkflowStatus, now: float | None = None) -> str:
    """The workflow's state and each node's items done, and for a node still working,
    what it waits on (when ``status`` carries lineage)."""
    at = time.time() if now is None else now
    nodes = ", ".join(
        f"{n.node} {n.state} {n.items_done}/{n.items_total}"
        + (_waiting_on(n, at) if n.state not in ("done", "failed", "cancelled") else "")
        for n in status.nodes
    )
    return f"{status.state}: {nodes}"
