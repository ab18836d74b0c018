"""The autoscaler's decision: how many replicas each pool should have now.

Pure functions, shared by the product (``flowmesh autoscale``, the ``/v1/autoscale``
metrics) and the simulator (bench/sim), so the figures in bench/RESULTS.md measure the
code that runs. Nothing here reads the store or the clock; callers pass what they saw.

The policy (docs/autoscaling.md):

* **Scale out** for the backlog: enough replicas to drain the waiting work (in seconds of
  this pool's accelerator, from the throughput model) within ``drain_s``, never more new
  replicas than there are batches waiting, counting booting and idle replicas as already
  bought.
* **Scale in** only idle replicas: a replica idle for longer than ``idle_s`` is released
  unless the pool would drop below ``min_replicas``; with ``min_replicas = 0`` and nothing
  waiting a pool scales to zero.
* **Utility-aware**: across pools, replicas are released most expensive first ($/h, then
  watts), so a pool that costs more per replica is the first to give back idle capacity
  that a cheaper pool already covers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from flowmesh_core.autoscale.pools import PoolSpec

__all__ = ["Decision", "PoolView", "decide", "recommend"]


@dataclass(frozen=True, slots=True)
class PoolView:
    """What the caller saw of one pool at one instant."""

    replicas: int  # ready (registered) replicas
    booting: int = 0  # requested, not yet registered
    idle: int = 0  # ready replicas with no batch now
    idle_expired: int = 0  # of those, idle for longer than idle_s
    backlog_s: float = 0.0  # waiting work, in seconds of this pool's accelerator
    batches: int = 0  # batches the waiting work forms on this pool


@dataclass(frozen=True, slots=True)
class Decision:
    """How to change one pool: ``remove`` idle replicas, then ``add`` new ones."""

    desired: int
    add: int
    remove: int
    reason: str


def decide(spec: PoolSpec, view: PoolView, drain_s: float, *, scale: bool = True) -> Decision:
    """The replicas ``spec``'s pool should have given ``view``; ``drain_s`` > 0.

    With ``scale`` false the pool keeps its size except to reach ``min_replicas``.
    """
    if drain_s <= 0:
        raise ValueError("drain_s must be positive")
    alive = view.replicas + view.booting
    # booting replicas count towards min_replicas: they will be there before a new one
    remove = min(view.idle_expired, max(0, alive - spec.min_replicas)) if scale else 0
    alive -= remove
    spare = view.booting + max(0, view.idle - remove)
    need = max(0, math.ceil(view.backlog_s / drain_s) - spare) if scale else 0
    add = min(need, max(0, view.batches - spare))
    add = max(add, spec.min_replicas - alive)
    add = max(0, min(add, spec.max_replicas - alive))
    desired = alive + add
    return Decision(desired, add, remove, _reason(spec, view, add, remove, desired, drain_s))


def _reason(
    spec: PoolSpec, view: PoolView, add: int, remove: int, desired: int, drain_s: float
) -> str:
    if add and desired == spec.max_replicas and view.backlog_s > 0:
        return f"backlog {view.backlog_s:.0f}s needs more; capped at max_replicas {desired}"
    if add and view.backlog_s > 0:
        return f"backlog {view.backlog_s:.0f}s in {view.batches} batch(es), drain in {drain_s:.0f}s"
    if add:
        return f"min_replicas {spec.min_replicas}"
    if remove and desired == 0:
        return "nothing waiting: scale to zero"
    if remove:
        return f"{remove} replica(s) idle past idle_s"
    if view.backlog_s > 0:
        return "backlog covered by ready, booting and idle replicas"
    return "steady"


def recommend(
    pools: Mapping[str, PoolSpec],
    views: Mapping[str, PoolView],
    drain_s: float,
) -> dict[str, Decision]:
    """Each pool's decision, in release order: most expensive first ($/h, then watts).

    A pool absent from ``views`` is seen as empty (no replicas, nothing waiting).
    """
    order = sorted(pools, key=lambda n: (-pools[n].usd_per_hour, -pools[n].watts, n))
    return {name: decide(pools[name], views.get(name, PoolView(0)), drain_s) for name in order}
