"""What the autoscaler sees: each pool's replicas and its share of the ready pool.

Reads the worker registry and the ready pool from the store (two round trips) and the
learned throughput model; the decision itself is ``decide.recommend`` (pure). A worker
belongs to a pool through the ``pool`` label ``flowmesh worker --pool`` registers.

Idle time is not tracked here: every idle replica is offered for release, and the
scale-down delay is the HPA's stabilization window (the chart sets it to
``autoscale_idle_s``), so a replica goes only after it stayed surplus that long
(docs/autoscaling.md).

A new replica's lead is the pool's ``boot_s`` plus the longest learned load of a waiting
model on its accelerator. The next wave (``PoolView.ahead_s``: the stages running
workflows reach next) is not observed yet: the store keeps no index of running
workflows' pending nodes to read it from, so a live pool scales for what is ready only
(docs/autoscaling.md, "What the live recommendation does not see yet").
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from flowmesh_core.autoscale.decide import Decision, PoolView, recommend
from flowmesh_core.autoscale.place import Waiting, place
from flowmesh_core.autoscale.pools import PoolSpec
from flowmesh_core.control.scheduler import model_id
from flowmesh_core.control.throughput import ThroughputModel
from flowmesh_core.settings import Settings
from flowmesh_core.store import Store

__all__ = ["Recommendation", "observe_and_recommend"]

_HEAD = 1


@dataclass(frozen=True, slots=True)
class Recommendation:
    """The decisions with what they were made from."""

    decisions: dict[str, Decision]
    views: dict[str, PoolView]
    unpooled_workers: int
    waiting_items: int

    def to_json(self) -> dict[str, Any]:
        """The shape KEDA's metrics-api scaler reads: ``pools.NAME.desired``."""
        return {
            "pools": {
                name: {
                    "desired": d.desired,
                    "add": d.add,
                    "remove": d.remove,
                    "replicas": self.views[name].replicas,
                    "idle": self.views[name].idle,
                    "backlog_s": round(self.views[name].backlog_s, 3),
                    "batches": self.views[name].batches,
                    "reason": d.reason,
                }
                for name, d in self.decisions.items()
            },
            "unpooled_workers": self.unpooled_workers,
            "waiting_items": self.waiting_items,
        }


def _seconds(model: ThroughputModel) -> Any:
    def per_item(spec: PoolSpec, group: Waiting) -> float:
        # The model answers per unit of work; an item of a training run is many units.
        size = max(1, min(group.items, group.max_batch))
        seconds = model.batch_seconds(spec.accelerator, group.kind, group.model, size)
        return group.weight * seconds / size

    return per_item


async def observe_and_recommend(store: Store, settings: Settings, now: float) -> Recommendation:
    """Read the fleet and ready pool at ``now`` and recommend replicas for each pool."""
    pools = settings.pools
    workers = await store.workers()
    alive = [w for w in workers if w.heartbeat >= now - settings.worker_ttl_s]
    counts = {name: [0, 0] for name in pools}  # replicas, idle
    unpooled = 0
    for w in alive:
        name = w.profile.labels.get("pool")
        if name not in counts:
            unpooled += 1
            continue
        counts[name][0] += 1
        counts[name][1] += int(w.inflight == 0 and not w.draining)
    waiting = []
    for sig, count, _ in await store.ready_summary(_HEAD):
        meaning = await store.signature_info(sig)
        kind = str(meaning.get("kind") or "unknown")
        model = meaning.get("model")
        weight = float(meaning.get("weight", 1.0))
        waiting.append(Waiting(sig, kind, model_id(model), count, weight=weight))
    stored = await store.load_json(store.keys.throughput())
    model = ThroughputModel.from_dict(json.loads(stored)) if stored else ThroughputModel()
    shares = place(pools, waiting, _seconds(model), settings.autoscale_drain_s)
    models = {w.model for w in waiting if w.model}
    views = {
        name: PoolView(
            replicas=counts[name][0],
            idle=counts[name][1],
            idle_expired=counts[name][1],
            backlog_s=shares[name][0],
            batches=shares[name][1],
            load_s=max((model.load_seconds(spec.accelerator, m) for m in models), default=0.0),
        )
        for name, spec in pools.items()
    }
    decisions = recommend(pools, views, settings.autoscale_drain_s)
    return Recommendation(decisions, views, unpooled, sum(w.items for w in waiting))
