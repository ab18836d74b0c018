"""One scheduling round over a local view: ask the policy, take the decision, ask again.

``RoundPlan`` holds what a round knows (the ready pool's candidates and their first
members, the free workers, tenant usage) and keeps it current after each claim, so the
next decision sees the batch just taken and the slot just used. The scheduler drives it
against Redis (``Scheduler.round``); the cluster simulator (``bench/sim``) drives the very
same object against simulated workers, so both make the same decisions from the same view.

Pure: it never performs I/O, reads the clock or keeps anything between rounds.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Mapping
from typing import Any

from flowmesh_core.control.policies import Policy
from flowmesh_core.control.throughput import ThroughputModel
from flowmesh_core.control.utility import (
    BatchCandidate,
    Decision,
    TenantUsage,
    UtilityWeights,
    WorkerView,
    fairness,
)
from flowmesh_core.store.keys import KeySpace

__all__ = ["RoundPlan", "member_tenant"]


def member_tenant(member: str) -> str:
    """The tenant of a ready-pool member (``KeySpace.ready_member``)."""
    return KeySpace.parse_ready_member(member)[0]


class RoundPlan:
    """The decisions of one round, one at a time, over a view that follows each claim."""

    def __init__(
        self,
        candidates: Mapping[str, BatchCandidate],
        members: Mapping[str, list[str]],
        workers: list[WorkerView],
        *,
        policy: Policy,
        throughput: ThroughputModel,
        weights: UtilityWeights,
        usage: TenantUsage,
    ) -> None:
        self.candidates = dict(candidates)
        self.members = {sig: list(ms) for sig, ms in members.items()}
        self.workers = [w for w in workers if w.free_slots > 0]
        self.policy = policy
        self.throughput = throughput
        self.weights = weights
        self.usage = usage

    def next(self) -> Decision | None:
        """The policy's next decision, or None when nothing more is worth assigning."""
        if not self.candidates or not self.workers:
            return None
        return self.policy.choose(
            list(self.candidates.values()),
            self.workers,
            throughput=self.throughput,
            weights=self.weights,
            usage=self.usage,
        )

    def terms(self, decision: Decision) -> dict[str, Any]:
        """Why ``decision`` (not yet accounted) chose its batch and worker: the utility's
        terms as the policy saw them, recorded with the batch (docs/ui.md, batch page).

        Aggregates only: no tenant's name or item is among them.
        """
        candidate = self.candidates[decision.signature]
        worker = next(w for w in self.workers if w.worker_id == decision.worker_id)
        s = decision.score
        return {
            "size": decision.size,
            "ready": candidate.ready,
            "oldest_wait_s": candidate.oldest_wait_s,
            "fairness": fairness(candidate, self.usage),
            "accelerator": worker.accelerator,
            "price_per_hour": worker.price_per_hour,
            "watts": worker.watts,
            "model_warm": candidate.model is None or candidate.model in worker.warm_models,
            "input_bytes": candidate.batch_input_bytes
            + decision.size * candidate.input_bytes_per_item,
            "input_local": candidate.local_fraction.get(worker.worker_id, 0.0),
            "free_workers": len(self.workers),
            "value": s.value,
            "cost_usd": s.cost_usd,
            "energy_wh": s.energy_wh,
            "seconds": s.seconds,
            "utility": s.utility,
            "rate": s.rate,
        }

    def account(self, decision: Decision, got: int) -> None:
        """Record that claiming ``decision`` took ``got`` items (0: the group was gone).

        The group loses what was taken (at least the size asked for: fewer means the rest
        had already left the pool) and disappears when empty or when the claim found
        nothing; the worker loses a slot, gains the model warm, and leaves the view when
        it has no slot left.
        """
        sig = decision.signature
        taken = max(got, decision.size)
        rest = self.members.get(sig, [])[taken:]
        self.members[sig] = rest
        old = self.candidates.pop(sig)
        left = old.ready - taken
        if left > 0 and got > 0:
            tenants = Counter(member_tenant(m) for m in rest)
            self.candidates[sig] = dataclasses.replace(old, ready=left, tenant_items=tenants)
        for i, worker in enumerate(self.workers):
            if worker.worker_id == decision.worker_id:
                warm = worker.warm_models | ({old.model} if old.model else set())
                self.workers[i] = dataclasses.replace(
                    worker, free_slots=worker.free_slots - 1, warm_models=frozenset(warm)
                )
                if self.workers[i].free_slots <= 0:
                    del self.workers[i]
                break
