"""One line saying what a FlowMesh workflow that is not done yet waits on.

From a status fetched with lineage, each unfinished node says how many of its items are
queued (no worker has them: the fleet is busy, scaled to zero, or has no worker for the
kind), how many are running, on which workers and for how long, and what its worker
reported (``NodeStatus.progress``): loading the model, or a training run's step. Every
adapter logs this line while it waits (Airflow's trigger, Prefect's task log, Dagster's
run log), so the three say the same thing. Pure: no I/O, no clock but ``now``.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping
from typing import Any

from flowmesh_core.models.api import NodeStatus, WorkflowStatus

__all__ = ["progress_summary"]


def _reported(progress: Mapping[str, Any] | None, now: float) -> str | None:
    """What the node's worker last reported: a model load, or a training step."""
    if not progress:
        return None
    at = progress.get("at")
    since = f" for {now - at:.0f} s" if isinstance(at, int | float) else ""
    where = f" on {progress['worker']}" if progress.get("worker") else ""
    if progress.get("phase") == "loading":
        return f"loading model {progress.get('model')}{where}{since}"
    if "step" in progress and "steps" in progress:
        return f"step {progress['step']}/{progress['steps']}{where}"
    return None


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
        parts.append(f"{len(running)} running{on}{since}")
    reported = _reported(node.progress, now)
    if reported:
        parts.append(reported)
    return f" ({'; '.join(parts)})" if parts else ""


def progress_summary(status: WorkflowStatus, now: float | None = None) -> str:
    """The workflow's state and each node's items done, and for a node still working,
    what it waits on (queued; running on which worker; loading a model), e.g.
    ``running: generate running 0/8 (8 running on gpu-1 for 12 s; loading model
    flowmesh/tiny-gpt on gpu-1 for 12 s)``. Item counts need ``status`` with lineage."""
    at = time.time() if now is None else now
    nodes = ", ".join(
        f"{n.node} {n.state} {n.items_done}/{n.items_total}"
        + ("" if n.state.final else _waiting_on(n, at))
        for n in status.nodes
    )
    return f"{status.state}: {nodes}"
