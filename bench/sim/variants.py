"""What is compared: FlowMesh, FlowMesh with one feature off, and the baselines.

Every variant of the shared fabric runs through the same engine; they differ only in the
placement policy (a name in ``POLICIES``, or round-robin), the feature switches, the
worker types the autoscaler may buy, and whether workers form one shared pool or one pool
per task type (the fixed-pipeline baseline). The static-worker-per-submission baseline
and the oracle have no shared fabric at all; they live in ``static.py``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from statistics import fmean

from bench.sim.fleet import Autoscaler, SimWorker
from bench.sim.hardware import ACCELERATORS, Accelerator, Roofline, Work
from flowmesh_core.control.utility import WorkerView

__all__ = [
    "ABLATIONS",
    "BASELINES",
    "FLEET_TYPES",
    "FLOWMESH",
    "Dynamics",
    "Features",
    "Variant",
]

FLEET_TYPES = ("H100", "A100", "L40S", "L4", "cpu")  # what the autoscaler may buy


@dataclass(frozen=True, slots=True)
class Features:
    dedup: bool = True
    batching: bool = True
    locality: bool = True
    heterogeneous: bool = True


@dataclass(frozen=True, slots=True)
class Dynamics:
    """The cluster's behaviour: market, failures, autoscaling bounds."""

    marketplace: bool = False
    preempt_per_hour: float = 0.0  # share of marketplace workers preempted per hour
    detect_s: float = 15.0  # worker_ttl_s: a silent worker's batch is re-planned after this
    max_attempts: int = 3  # Settings.max_attempts
    autoscale: bool = True
    initial: Mapping[str, int] = field(default_factory=dict)  # type -> workers at t = 0
    min_workers: int = 0
    max_workers: int = 1000
    per_type_max: int = 1000
    drain_s: float = 60.0  # the autoscaler buys enough to drain the backlog within this
    idle_s: float = 60.0  # ... and removes a worker idle this long
    buy_by: str = "usd"  # what the autoscaler minimises per item when it buys: usd or energy
    ahead: bool = True  # show the autoscaler the next wave (as the live observer does)


@dataclass(frozen=True, slots=True)
class Variant:
    name: str
    policy: str = "utility"
    features: Features = Features()
    types: tuple[str, ...] = FLEET_TYPES
    per_task_pools: bool = False
    homogeneous_type: str = "A100"

    # -- what the scheduler is shown ---------------------------------------------------

    def label(self, accelerator: str) -> str:
        return accelerator if self.features.heterogeneous else "gpu"

    def view(self, w: SimWorker) -> WorkerView:
        hetero = self.features.heterogeneous
        accs = [ACCELERATORS[t] for t in self.types]
        mean_price = fmean(a.market_hr if w.marketplace else a.on_demand_hr for a in accs)
        return WorkerView(
            worker_id=w.worker_id,
            accelerator=self.label(w.acc.name),
            price_per_hour=w.price_hr if hetero else mean_price,
            watts=w.acc.watts if hetero else fmean(a.watts for a in accs),
            free_slots=1,
            max_batch=w.max_batch,
            warm_models=frozenset(w.warm) if self.features.locality else frozenset(),
        )

    def max_batch(self, acc: Accelerator, works: Iterable[Work]) -> int:
        return Roofline.max_batch(acc, list(works)) if self.features.batching else 1

    # -- pools and the autoscaler ------------------------------------------------------

    def pool_of(self, signature: str) -> str:
        return "/".join(signature.split("/")[:2]) if self.per_task_pools else "all"

    def pools_of(self, pool: Mapping[str, object]) -> dict[str, list[str]]:
        """Signatures with items waiting, by the worker pool that may run them."""
        out: dict[str, list[str]] = {}
        for sig, queue in pool.items():
            if queue:
                out.setdefault(self.pool_of(sig), []).append(sig)
        return out

    def autoscalers(self, dyn: Dynamics, signatures: Iterable[str]) -> dict[str, Autoscaler]:
        hetero = self.features.heterogeneous
        names = {self.pool_of(s) for s in signatures} if self.per_task_pools else {"all"}
        return {
            name: Autoscaler(
                types=self.types,
                marketplace=dyn.marketplace,
                min_workers=dyn.min_workers,
                max_workers=dyn.max_workers,
                per_type_max=dyn.per_type_max,
                drain_s=dyn.drain_s,
                idle_s=dyn.idle_s,
                buy_by=dyn.buy_by,
                ahead=dyn.ahead,
                heterogeneous=hetero,
                default_type=self.homogeneous_type,
            )
            for name in sorted(names)
        }

    def without(self, feature: str) -> Variant:
        return replace(
            self, name=f"no-{feature}", features=replace(self.features, **{feature: False})
        )


FLOWMESH = Variant("flowmesh")
ABLATIONS = tuple(FLOWMESH.without(f) for f in ("dedup", "batching", "locality", "heterogeneous"))
BASELINES = (
    # the fabric's dedup and batching, with a naive placement policy
    Variant("round-robin", policy="round-robin"),
    Variant("cheapest-first", policy="cheapest"),
    Variant("fastest-first", policy="fastest"),
    # one pool of one worker type per task, FIFO, no dedup (a service per pipeline step)
    Variant(
        "fixed-pipeline",
        policy="fifo",
        features=Features(dedup=False, heterogeneous=False),
        per_task_pools=True,
    ),
)
