"""The autoscaler's decision: how many replicas each pool should have now.

Pure functions, shared by the product (``flowmesh autoscale``, the ``/v1/autoscale``
metrics) and the simulator (bench/sim), so the figures in bench/RESULTS.md measure the
code that runs. Nothing here reads the store or the clock; callers pass what they saw.

The policy (docs/autoscaling.md):

* **Lead time.** A new replica takes no work for ``lead = boot_s + load_s`` (the pool's
  boot, then the model load), so it only helps with what is still waiting by then.
* **Scale out** for the backlog: the ready replicas (busy or idle) keep draining while a
  new one boots, so the work they finish within the lead is not bought for; enough
  replicas to drain the rest (in seconds of this pool's accelerator, from the throughput
  model) within ``drain_s``, never more new replicas than there are batches waiting,
  counting booting and idle replicas as already bought. A backlog the ready replicas
  drain before a new one could start buys nothing: that replica would only be billed.
  This discount holds only where the caller also sees the next wave
  (``PoolView.ahead_known``): without it, waiting one lead for the backlog means every
  later stage waits a boot too, so a view without the next wave is sized on the whole
  backlog (the rule before the lead was added, never slower than it).
* **Scale ahead** for the next wave (``ahead_s``: work that becomes ready when the work
  running now finishes, such as a workflow's next stage): the whole pool will be free by
  then, so the pool is grown to what drains that wave within ``drain_s`` (never more than
  its batches), now, one lead before it is needed instead of one lead late.
* **Scale in** only idle replicas: a replica idle for longer than ``idle_s`` is released
  unless the pool would drop below ``min_replicas`` or below what the next wave needs;
  with ``min_replicas = 0`` and nothing waiting or coming a pool scales to zero.
* **Utility-aware**: across pools, replicas are released most expensive first ($/h, then
  watts), so a pool that costs more per replica is the first to give back idle capacity
  that a cheaper pool already covers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from flowmesh_core.autoscale.pools import PoolSpec

__all__ = ["Decision", "PoolView", "decide", "recommend", "replicas_for"]


@dataclass(frozen=True, slots=True)
class PoolView:
    """What the caller saw of one pool at one instant."""

    replicas: int  # ready (registered) replicas, busy or idle
    booting: int = 0  # requested, not yet registered
    idle: int = 0  # ready replicas with no batch now
    idle_expired: int = 0  # of those, idle for longer than idle_s
    backlog_s: float = 0.0  # waiting work, in seconds of this pool's accelerator
    batches: int = 0  # batches the waiting work forms on this pool
    load_s: float = 0.0  # model load a new replica needs before its first batch
    ahead_s: float = 0.0  # the next wave of work (ready once running work ends), seconds
    ahead_batches: int = 0  # batches that wave forms on this pool
    ahead_known: bool = False  # the caller computed the next wave (ahead_* may still be 0)


@dataclass(frozen=True, slots=True)
class Decision:
    """How to change one pool: ``remove`` idle replicas, then ``add`` new ones.

    ``ahead`` of the ``add`` are bought for the next wave rather than the backlog.
    """

    desired: int
    add: int
    remove: int
    reason: str
    ahead: int = 0


def decide(spec: PoolSpec, view: PoolView, drain_s: float, *, scale: bool = True) -> Decision:
    """The replicas ``spec``'s pool should have given ``view``; ``drain_s`` > 0.

    With ``scale`` false the pool keeps its size except to reach ``min_replicas``.
    """
    if drain_s <= 0:
        raise ValueError("drain_s must be positive")
    alive = view.replicas + view.booting
    wave = replicas_for(view.ahead_s, view.ahead_batches, drain_s) if scale else 0
    # booting replicas count towards min_replicas: they will be there before a new one;
    # an idle replica the next wave needs is kept rather than released and bought again
    keep = max(spec.min_replicas, wave)
    remove = min(view.idle_expired, max(0, alive - keep)) if scale else 0
    alive -= remove
    spare = view.booting + max(0, view.idle - remove)
    now = ahead = 0
    if scale:
        left = max(0.0, view.backlog_s - (view.replicas - remove) * _lead(spec, view))
        now = max(0, min(math.ceil(left / drain_s), view.batches) - spare)
        ahead = max(0, wave - alive - now)
    add = max(now + ahead, spec.min_replicas - alive)
    add = max(0, min(add, spec.max_replicas - alive))
    ahead = max(0, min(ahead, add - now))  # under max_replicas the backlog comes first
    desired = alive + add
    reason = _reason(spec, view, add, ahead, remove, desired, drain_s)
    return Decision(desired, add, remove, reason, ahead)


def replicas_for(seconds: float, batches: int, drain_s: float) -> int:
    """Replicas that drain ``seconds`` of work within ``drain_s``, never more than its
    ``batches`` (a replica without a batch only costs)."""
    return min(math.ceil(seconds / drain_s), batches)


def _reason(
    spec: PoolSpec,
    view: PoolView,
    add: int,
    ahead: int,
    remove: int,
    desired: int,
    drain_s: float,
) -> str:
    waiting = view.backlog_s + view.ahead_s
    if add and desired == spec.max_replicas and waiting > 0:
        return f"backlog {waiting:.0f}s needs more; capped at max_replicas {desired}"
    if ahead and ahead == add:
        return (
            f"next wave {view.ahead_s:.0f}s in {view.ahead_batches} batch(es): "
            f"ready one boot early, drain in {drain_s:.0f}s"
        )
    if add and view.backlog_s > 0:
        return f"backlog {view.backlog_s:.0f}s in {view.batches} batch(es), drain in {drain_s:.0f}s"
    if add:
        return f"min_replicas {spec.min_replicas}"
    if remove and desired == 0:
        return "nothing waiting: scale to zero"
    if remove:
        return f"{remove} replica(s) idle past idle_s"
    if view.backlog_s > 0 and view.ahead_known:
        lead = _lead(spec, view)
        return f"backlog covered by ready, booting and idle replicas (lead {lead:.0f}s)"
    if view.backlog_s > 0:
        return "backlog covered by booting and idle replicas"
    return "steady"


def _lead(spec: PoolSpec, view: PoolView) -> float:
    """Seconds the ready replicas drain before a new one starts, counted only with the
    next wave in view (the module docstring says why)."""
    return spec.boot_s + view.load_s if view.ahead_known else 0.0


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
