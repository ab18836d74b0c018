"""What the autoscaler sees: each pool's replicas and its share of the ready pool.

Reads the worker registry and the ready pool from the store (two round trips) and the
learned throughput model; the decision itself is ``decide.recommend`` (pure). A worker
belongs to a pool through the ``pool`` label ``flowmesh worker --pool`` registers.

Idle time is not tracked here: every idle replica is offered for release, and the
scale-down delay is the HPA's stabilization window (the chart sets it to
``autoscale_idle_s``), so a replica goes only after it stayed surplus that long
(docs/autoscaling.md).

A new replica's lead is the pool's ``boot_s`` plus the longest learned load of a waiting
model on its accelerator. The next wave (``PoolView.ahead_s``: the nodes running
workflows reach next, ``wave.next_wave``) is read from the index of active workflows,
at most ``MAX_WORKFLOWS`` of them (the oldest), and placed on the pools as the ready work
is; the decision then counts the lead (docs/autoscaling.md, "The next wave"). Reading
it costs three round trips whatever the number of workflows, and reads each one's graph
summary, never its spec.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from flowmesh_core.autoscale.decide import Decision, PoolView, recommend, replicas_for
from flowmesh_core.autoscale.place import Waiting, place
from flowmesh_core.autoscale.pools import PoolSpec
from flowmesh_core.autoscale.wave import next_wave, waves
from flowmesh_core.control.scheduler import model_id
from flowmesh_core.control.throughput import ThroughputModel
from flowmesh_core.models.graph_summary import GraphSummary
from flowmesh_core.registry import Registry
from flowmesh_core.settings import Settings
from flowmesh_core.store import Store
from flowmesh_core.store.records import ActiveWorkflow

__all__ = ["MAX_WORKFLOWS", "Recommendation", "observe_and_recommend"]

_HEAD = 1
MAX_WORKFLOWS = 500  # active workflows read per call for the next wave (oldest first)


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
                    "ahead_s": round(self.views[name].ahead_s, 3),
                    "ahead_batches": self.views[name].ahead_batches,
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


def _coming(active: Sequence[ActiveWorkflow], registry: Registry) -> dict[int, list[Waiting]]:
    """The waves of ``active`` by depth, as ready-pool groups; a graph summary that no
    longer parses (written by another version) is skipped rather than failing the
    recommendation. Summaries are small, so none is cached."""
    coming = []
    for wf in active:
        try:
            graph = GraphSummary.from_json(wf.graph)
        except ValueError:
            continue
        items = {node: total for node, (total, _) in wf.items.items()}
        coming += next_wave(graph, wf.nodes, items, registry)
    return waves(coming)


def _largest_wave(
    pools: dict[str, PoolSpec],
    coming: dict[int, list[Waiting]],
    seconds: Any,
    drain_s: float,
) -> dict[str, tuple[float, int]]:
    """Each pool's share of the wave (one, two... stages ahead) that needs the most of its
    replicas: the pool is grown once for the largest of them, as the simulator does."""
    best = {name: (0.0, 0) for name in pools}
    for groups in coming.values():
        for name, share in place(pools, groups, seconds, drain_s).items():
            if replicas_for(*share, drain_s) > replicas_for(*best[name], drain_s):
                best[name] = share
    return best


async def observe_and_recommend(
    store: Store, settings: Settings, now: float, registry: Registry | None = None
) -> Recommendation:
    """Read the fleet, the ready pool and the next wave at ``now`` and recommend replicas
    for each pool; ``registry`` tells which kinds split their input (default: built-in)."""
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
    kinds = registry or Registry.default()
    coming = _coming(await store.active_workflows(MAX_WORKFLOWS), kinds)
    ahead = _largest_wave(pools, coming, _seconds(model), settings.autoscale_drain_s)
    models = {w.model for w in waiting if w.model}
    views = {
        name: PoolView(
            replicas=counts[name][0],
            idle=counts[name][1],
            idle_expired=counts[name][1],
            backlog_s=shares[name][0],
            batches=shares[name][1],
            load_s=max((model.load_seconds(spec.accelerator, m) for m in models), default=0.0),
            ahead_s=ahead[name][0],
            ahead_batches=ahead[name][1],
            ahead_known=True,
        )
        for name, spec in pools.items()
    }
    decisions = recommend(pools, views, settings.autoscale_drain_s)
    return Recommendation(decisions, views, unpooled, sum(w.items for w in waiting))
