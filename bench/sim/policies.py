"""Placement policies by name: the product's own (``POLICIES``) and round-robin.

Round-robin keeps a cursor, so it cannot live in ``flowmesh_core.control.policies``
(whose policies are pure); it follows the same interface and, like the product's
baselines, takes the oldest candidate at the largest size the worker allows.
"""

from __future__ import annotations

from collections.abc import Sequence

from flowmesh_core.control.policies import POLICIES, Policy
from flowmesh_core.control.throughput import ThroughputModel
from flowmesh_core.control.utility import (
    BatchCandidate,
    Decision,
    TenantUsage,
    UtilityWeights,
    WorkerView,
    score,
)

__all__ = ["RoundRobinPolicy", "policy_for"]


class RoundRobinPolicy:
    """The oldest candidate, on the next free worker after the last one used (by id)."""

    name = "round-robin"

    def __init__(self) -> None:
        self._last = ""

    def choose(
        self,
        candidates: Sequence[BatchCandidate],
        workers: Sequence[WorkerView],
        *,
        throughput: ThroughputModel,
        weights: UtilityWeights,
        usage: TenantUsage,
    ) -> Decision | None:
        free = sorted((w for w in workers if w.free_slots > 0), key=lambda w: w.worker_id)
        if not candidates or not free:
            return None
        c = min(candidates, key=lambda c: (-c.oldest_wait_s, c.signature))
        w = next((w for w in free if w.worker_id > self._last), free[0])
        self._last = w.worker_id
        n = min(c.ready, w.max_batch)
        scored = score(c, w, n, throughput=throughput, weights=weights, usage=usage)
        return Decision(c.signature, w.worker_id, n, scored)


def policy_for(name: str) -> Policy:
    """A fresh policy object for ``name``: round-robin or one of ``POLICIES``."""
    return RoundRobinPolicy() if name == "round-robin" else POLICIES[name]
