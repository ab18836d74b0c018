"""Scheduling policies behind one interface: FlowMesh's utility argmax and the baselines.

``UtilityPolicy`` is ``utility.choose``. The baselines (FIFO to any free worker, cheapest
worker, fastest worker) exist so benchmarks and the simulator can compare against them by
name through ``POLICIES``. Like ``utility``, nothing here performs I/O or keeps state.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Protocol

from flowmesh_core.control.throughput import ThroughputModel
from flowmesh_core.control.utility import (
    BatchCandidate,
    Decision,
    Score,
    TenantUsage,
    UtilityWeights,
    WorkerView,
    choose,
    free_worker_key,
    score,
)

__all__ = [
    "POLICIES",
    "CheapestPolicy",
    "FastestPolicy",
    "FifoPolicy",
    "Policy",
    "UtilityPolicy",
]


class Policy(Protocol):
    """A scheduling policy, swappable by name: the utility argmax or a baseline."""

    name: str

    def choose(
        self,
        candidates: Sequence[BatchCandidate],
        workers: Sequence[WorkerView],
        *,
        throughput: ThroughputModel,
        weights: UtilityWeights,
        usage: TenantUsage,
    ) -> Decision | None:
        """The next batch and worker, or None to leave the free workers idle."""
        ...


class UtilityPolicy:
    """FlowMesh's policy: ``choose``, the argmax of the utility rate."""

    name = "utility"

    def choose(
        self,
        candidates: Sequence[BatchCandidate],
        workers: Sequence[WorkerView],
        *,
        throughput: ThroughputModel,
        weights: UtilityWeights,
        usage: TenantUsage,
    ) -> Decision | None:
        return choose(candidates, workers, throughput=throughput, weights=weights, usage=usage)


class _OldestFirst:
    """The baselines: the oldest candidate (then smallest signature), at the largest size
    the chosen worker allows, on the free worker that ``_rank`` puts first (ties: most free
    slots, then smallest worker_id). They ignore utility, so they decide even when it is
    not positive; the Score they return is still ``score``'s, for comparison.
    """

    name = "oldest-first"

    def choose(
        self,
        candidates: Sequence[BatchCandidate],
        workers: Sequence[WorkerView],
        *,
        throughput: ThroughputModel,
        weights: UtilityWeights,
        usage: TenantUsage,
    ) -> Decision | None:
        free = [w for w in workers if w.free_slots > 0 and w.max_batch >= 1]
        if not candidates or not free:
            return None
        c = min(candidates, key=lambda c: (-c.oldest_wait_s, c.signature))

        def at_largest(w: WorkerView) -> Score:
            n = min(c.ready, w.max_batch)
            return score(c, w, n, throughput=throughput, weights=weights, usage=usage)

        w = min(free, key=lambda w: (self._rank(c, w, at_largest), free_worker_key(w)))
        return Decision(c.signature, w.worker_id, min(c.ready, w.max_batch), at_largest(w))

    def _rank(self, c: BatchCandidate, w: WorkerView, at: Callable[[WorkerView], Score]) -> float:
        return 0.0


class FifoPolicy(_OldestFirst):
    """The oldest candidate to any free worker (the one with the most free slots)."""

    name = "fifo"


class CheapestPolicy(_OldestFirst):
    """The oldest candidate to the free worker with the lowest $/hour."""

    name = "cheapest"

    def _rank(self, c: BatchCandidate, w: WorkerView, at: Callable[[WorkerView], Score]) -> float:
        return w.price_per_hour


class FastestPolicy(_OldestFirst):
    """The oldest candidate to the free worker with the lowest expected seconds per item.

    Per item, as workers allow different batch sizes and the smallest batch would otherwise
    always look fastest; for equal sizes it is the lowest expected seconds (load included).
    """

    name = "fastest"

    def _rank(self, c: BatchCandidate, w: WorkerView, at: Callable[[WorkerView], Score]) -> float:
        return at(w).seconds / min(c.ready, w.max_batch)


POLICIES: Mapping[str, Policy] = MappingProxyType(
    {p.name: p for p in (UtilityPolicy(), FifoPolicy(), CheapestPolicy(), FastestPolicy())}
)
