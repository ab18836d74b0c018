"""Simulated workers, their bills, and the autoscaler that adds and removes them.

A worker is billed from the moment it is requested (boot time included) until it is
removed or preempted, at its market's price; it draws its board power while running a
batch (model loads included) and its idle power otherwise. Marketplace workers are
preempted at a Poisson rate; the engine re-plans their work.

The autoscaler looks at the ready pool every ``interval_s``: it estimates the backlog in
accelerator-seconds on the type it would buy (the type with the lowest $ per item for the
largest backlog, unless heterogeneity is switched off), that type's lead (boot, then the
model load) and the next wave: the nodes the workflows in flight reach next, found by the
product's own function (``flowmesh_core.autoscale.wave.next_wave``) from each workflow's
graph and the items of the node before, as the live observer finds them.
How many workers to buy and which idle ones to release is the product's decision
(``flowmesh_core.autoscale.decide``): what the ready workers cannot drain within one lead
is drained within ``drain_s``, the pool grows ahead to what the next wave needs, at least
``min_workers``, idle for ``idle_s`` goes.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass, field

from bench.sim.hardware import ACCELERATORS, MODELS, Accelerator, Roofline, Work
from flowmesh_core.autoscale import PoolSpec
from flowmesh_core.autoscale.decide import replicas_for

__all__ = ["Autoscaler", "Batch", "SimWorker", "Usage", "Wave", "backlog_seconds"]


@dataclass(slots=True)
class Batch:
    batch_id: int
    signature: str
    items: list  # engine items
    started: float
    load_s: float
    exec_s: float


@dataclass(slots=True)
class SimWorker:
    worker_id: str
    acc: Accelerator
    price_hr: float
    marketplace: bool
    max_batch: int
    requested: float
    ready_at: float
    pool: str = "all"
    gone_at: float | None = None
    warm: OrderedDict[str, None] = field(default_factory=OrderedDict)
    batch: Batch | None = None
    idle_since: float = 0.0
    busy_s: float = 0.0

    @property
    def alive(self) -> bool:
        return self.gone_at is None

    def warm_up(self, model: str) -> None:
        """Keep ``model`` warm, evicting the least recently used ones past half the memory."""
        self.warm[model] = None
        self.warm.move_to_end(model)
        budget = 0.5 * self.acc.memory_gb * 1e9
        while sum(MODELS[m].weight_bytes for m in self.warm) > budget and len(self.warm) > 1:
            self.warm.popitem(last=False)


@dataclass(slots=True)
class Usage:
    """What the fleet cost: $, Wh, busy and billed seconds."""

    usd: float = 0.0
    wh: float = 0.0
    busy_s: float = 0.0
    billed_s: float = 0.0
    peak_workers: int = 0

    def bill(self, w: SimWorker, until: float) -> None:
        billed = max(0.0, until - w.requested)
        idle = max(0.0, until - w.ready_at) - w.busy_s
        self.usd += w.price_hr * billed / 3600.0
        self.wh += (w.acc.watts * w.busy_s + w.acc.idle_watts * max(idle, 0.0)) / 3600.0
        self.busy_s += w.busy_s
        self.billed_s += billed


@dataclass
class Autoscaler:
    """Adds workers for the backlog, removes idle ones; one per pool of signatures."""

    types: tuple[str, ...]
    marketplace: bool
    min_workers: int = 0
    max_workers: int = 1000
    per_type_max: int = 1000
    drain_s: float = 60.0
    idle_s: float = 60.0
    interval_s: float = 15.0
    heterogeneous: bool = True
    default_type: str = "A100"
    buy_by: str = "usd"  # or "energy": the type with the fewest Wh for the backlog
    ahead: bool = True  # price the next wave (price_wave) for the product's scale-ahead

    def pick_type(
        self,
        roof: Roofline,
        backlog: list[tuple[Work, int]],
        works: list[Work],
        counts: dict[str, int],
    ) -> str | None:
        """The type with room left that runs the whole backlog for the fewest $.

        ``backlog`` holds (work, items waiting) pairs (a training run counts its examples).
        Costs come from the spec sheet (the roofline at the batch the backlog allows), as
        a cloud autoscaler knows the instance types it can buy; the scheduler's learned
        rates only cover types it has already run, at the batch sizes it happened to form.
        """
        if not self.heterogeneous:
            name = self.default_type
            return name if counts.get(name, 0) < self.per_type_max else None
        best, best_usd = None, math.inf
        for name in self.types:
            if counts.get(name, 0) >= self.per_type_max:
                continue
            acc = ACCELERATORS[name]
            price = acc.market_hr if self.marketplace else acc.on_demand_hr
            if self.buy_by == "energy":
                price = acc.watts
            usd = price * sum(
                backlog_seconds(roof, acc, work, ready, works) for work, ready in backlog
            )
            if usd < best_usd:
                best, best_usd = name, usd
        return best

    def spec(self, acc: Accelerator | None = None) -> PoolSpec:
        """The pool as the product declares it (bounds, and the boot of the type it buys);
        how many to buy and which idle workers to release is the product's decision
        (flowmesh_core.autoscale)."""
        boot = {"boot_s": acc.boot_s, "accelerator": acc.name} if acc else {}
        return PoolSpec(min_replicas=self.min_workers, max_replicas=self.max_workers, **boot)

    def price_wave(
        self,
        roof: Roofline,
        groups: dict[Work, list[int]],
        works: list[Work],
        counts: dict[str, int],
    ) -> Wave | None:
        """The next wave priced on the type ``pick_type`` buys for its largest group (by
        seconds on ``default_type``); None when nothing is coming or every type is at its
        cap. ``groups`` maps a work to (items or examples, training runs): what the
        product's ``flowmesh_core.autoscale.wave.next_wave`` reads from the workflows'
        graphs (the engine builds it).
        """
        if not groups:
            return None
        reference = ACCELERATORS[self.default_type]
        # the group with the most work (a training run is long however few they are)
        sizes = {w: Wave.of(roof, reference, {w: g}, works).seconds for w, g in groups.items()}
        work = max(sizes, key=lambda w: (sizes[w], repr(w)))
        units, runs = groups[work]
        choice = self.pick_type(roof, [(work, units // max(runs, 1))], works, counts)
        return None if choice is None else Wave.of(roof, ACCELERATORS[choice], groups, works)


def backlog_seconds(
    roof: Roofline, acc: Accelerator, work: Work, ready: int, works: list[Work]
) -> float:
    """Seconds ``acc`` needs for ``ready`` items of ``work`` in full batches."""
    if work.kind.startswith("train."):
        return roof.batch_seconds(acc, work, ready)
    n = max(1, min(ready, Roofline.max_batch(acc, works)))
    return ready * roof.batch_seconds(acc, work, n) / n


@dataclass(frozen=True, slots=True)
class Wave:
    """Work that becomes ready later, priced on the type that would run it."""

    type_name: str
    seconds: float
    batches: int

    @classmethod
    def of(
        cls, roof: Roofline, acc: Accelerator, groups: dict[Work, list[int]], works: list[Work]
    ) -> Wave:
        """``groups`` maps a work to (items or examples, training runs)."""
        cap = Roofline.max_batch(acc, works)
        seconds, batches = 0.0, 0
        for work, (units, runs) in groups.items():
            if runs:  # each training run is one batch over its own examples
                seconds += runs * backlog_seconds(roof, acc, work, units // runs, works)
                batches += runs
            else:
                seconds += backlog_seconds(roof, acc, work, units, works)
                batches += -(-units // cap)
        return cls(acc.name, seconds, batches)

    def workers(self, drain_s: float) -> int:
        """Workers that drain this wave within ``drain_s``, never more than its batches."""
        return replicas_for(self.seconds, self.batches, drain_s)
