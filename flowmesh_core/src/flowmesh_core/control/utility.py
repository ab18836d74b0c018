"""The scheduler's decision: which batch runs next, on which worker, at which size.

``score`` is FlowMesh's one utility function (docs/architecture.md): it weighs a
batch of a ready-pool group on a worker by measured throughput, $/hour, energy, data
locality (model warm, inputs local, bytes to move) and waiting time / tenant fairness.
``choose`` is its argmax over (candidate, worker, size). The baseline policies that share
its interface live in ``policies``.

Everything here is a pure function of its arguments: it must never perform I/O, read the
clock, touch Redis or asyncio, or keep state between calls. The simulator imports it as it
is, and equal inputs give equal decisions (ties break deterministically).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TypeAlias

from flowmesh_core.control.throughput import ThroughputModel
from flowmesh_core.errors import ConfigError, InvalidInputError

__all__ = [
    "BatchCandidate",
    "Decision",
    "Score",
    "TenantUsage",
    "UtilityWeights",
    "WorkerView",
    "choose",
    "fairness",
    "free_worker_key",
    "score",
    "size_ladder",
]

TenantUsage: TypeAlias = Mapping[str, float]
"""Tenant -> recent worker-seconds attributed to it (decayed by the caller)."""


def _finite_at_least(owner: str, name: str, value: float, low: float) -> None:
    if not (math.isfinite(value) and value >= low):
        raise InvalidInputError(f"{owner}.{name} must be a finite number >= {low}, got {value!r}")


@dataclass(frozen=True, slots=True)
class BatchCandidate:
    """One batch-signature group waiting in the ready pool."""

    signature: str
    kind: str
    model: str | None  # canonical model id; None for model-less kinds
    ready: int  # items waiting in this group
    oldest_wait_s: float  # seconds the oldest item has waited
    tenant_items: Mapping[str, int]  # tenant -> items among the first `ready`
    input_bytes_per_item: float = 0.0  # mean input bytes a worker must hold locally
    local_fraction: Mapping[str, float] = field(default_factory=dict)  # worker_id -> 0..1
    batch_input_bytes: float = 0.0  # bytes a batch needs once, whatever its size (a
    # checkpoint model's files); local_fraction covers these and the items' bytes alike
    item_weight: float = 1.0  # units of work one item stands for (a training run: its examples)

    def __post_init__(self) -> None:
        if self.ready < 1:
            raise InvalidInputError(f"BatchCandidate.ready must be >= 1, got {self.ready}")
        _finite_at_least("BatchCandidate", "oldest_wait_s", self.oldest_wait_s, 0.0)
        _finite_at_least("BatchCandidate", "input_bytes_per_item", self.input_bytes_per_item, 0.0)
        _finite_at_least("BatchCandidate", "batch_input_bytes", self.batch_input_bytes, 0.0)
        if not (math.isfinite(self.item_weight) and self.item_weight > 0):
            raise InvalidInputError(
                f"BatchCandidate.item_weight must be a finite number > 0, got {self.item_weight!r}"
            )
        for worker_id, fraction in self.local_fraction.items():
            if not 0.0 <= fraction <= 1.0:
                raise InvalidInputError(
                    f"BatchCandidate.local_fraction[{worker_id!r}] must be in [0, 1], "
                    f"got {fraction!r}"
                )


@dataclass(frozen=True, slots=True)
class WorkerView:
    """What the scheduler knows of one worker right now."""

    worker_id: str
    accelerator: str  # "cpu", "H100", "A100", "L4", ...
    price_per_hour: float  # $
    watts: float
    free_slots: int  # batches it can take now (0 = busy)
    max_batch: int  # most items in one batch (memory / model limit)
    warm_models: frozenset[str]
    bandwidth_bytes_s: float = 1e9  # to fetch inputs it lacks

    def __post_init__(self) -> None:
        _finite_at_least("WorkerView", "price_per_hour", self.price_per_hour, 0.0)
        _finite_at_least("WorkerView", "watts", self.watts, 0.0)
        if not (math.isfinite(self.bandwidth_bytes_s) and self.bandwidth_bytes_s > 0):
            raise InvalidInputError(
                f"WorkerView.bandwidth_bytes_s must be a finite number > 0, "
                f"got {self.bandwidth_bytes_s!r}"
            )


@dataclass(frozen=True, slots=True)
class UtilityWeights:
    """The utility function's weights; configuration, all in $ (or $ per unit).

    Defaults: an item is worth $0.01 (enough that an idle CPU worker takes even a single
    item of a cold model at once, while a lone item on a cold $4/h GPU waits a little for
    company or for its value to grow); its value grows 5% per second its group's oldest
    item has waited (doubles after 20 s); $ count at face value; a Wh costs $0.00015 (a
    grid price of $0.15/kWh); a second of latency costs $0.0001 ($0.36 per hour); fairness
    moves an item's value by up to ±50%; an unmeasured cold model load takes 30 s.
    """

    value_per_item: float = 1e-2
    wait_weight: float = 0.05
    cost_weight: float = 1.0
    energy_weight: float = 1.5e-4
    time_weight: float = 1e-4
    fairness_weight: float = 0.5
    default_load_s: float = 30.0

    def __post_init__(self) -> None:
        for name in self.__slots__:
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ConfigError(
                    f"utility weight {name} must be a finite number >= 0, got {value!r}"
                )
        if self.value_per_item <= 0:
            raise ConfigError("utility weight value_per_item must be > 0")


@dataclass(frozen=True, slots=True)
class Score:
    """Every term of one (candidate, worker, size) evaluation, for tests and the simulator."""

    value: float  # $
    cost_usd: float
    energy_wh: float
    seconds: float  # expected, including model load and input transfer
    utility: float  # value - weighted cost, energy and time
    rate: float  # utility / seconds: what choose() maximises


@dataclass(frozen=True, slots=True)
class Decision:
    """Run ``size`` items of group ``signature`` on ``worker_id``."""

    signature: str
    worker_id: str
    size: int
    score: Score


# -- the utility function -------------------------------------------------------------------


def fairness(candidate: BatchCandidate, usage: TenantUsage) -> float:
    """How under-served the candidate's tenants are, in [-1, 1].

    Active tenants are those with ``usage[t] > 0``; ``m`` of them used ``U`` worker-seconds
    in all, so the equal share is ``s = U / m``. A tenant's own term is
    ``f_t = (s - u_t) / max(s, u_t)`` with ``u_t = usage.get(t, 0)``: +1 for a tenant with
    no usage, 0 at exactly an equal share, towards -1 as its usage dwarfs the share.
    The candidate's fairness is the item-weighted mean ``sum(n_t * f_t) / sum(n_t)`` over
    tenants with ``n_t = tenant_items[t] > 0``; 0 when no tenant has usage or the
    candidate names no tenant.
    """
    return _fairness(candidate.tenant_items, _fair_share(usage), usage)


def _fair_share(usage: TenantUsage) -> float:
    active = [u for u in usage.values() if u > 0]
    return math.fsum(active) / len(active) if active else 0.0


def _fairness(tenant_items: Mapping[str, int], share: float, usage: TenantUsage) -> float:
    if share <= 0:
        return 0.0
    weighted = 0.0
    items = 0
    for tenant, n in tenant_items.items():
        if n > 0:
            used = max(usage.get(tenant, 0.0), 0.0)
            weighted += n * ((share - used) / max(share, used))  # each term in [-1, 1]
            items += n
    return weighted / items if items else 0.0


def _item_value(candidate: BatchCandidate, weights: UtilityWeights, fair: float) -> float:
    v = weights.value_per_item * candidate.item_weight
    return v * (1.0 + weights.wait_weight * candidate.oldest_wait_s) + (
        weights.fairness_weight * v * fair
    )


def _load_seconds(
    candidate: BatchCandidate,
    worker: WorkerView,
    throughput: ThroughputModel,
    weights: UtilityWeights,
) -> float:
    model = candidate.model
    if model is None or model in worker.warm_models:
        return 0.0
    return throughput.load_seconds(worker.accelerator, model, weights.default_load_s)


def _transfer_per_item(candidate: BatchCandidate, fraction: float, worker: WorkerView) -> float:
    if candidate.input_bytes_per_item == 0:
        return 0.0
    return candidate.input_bytes_per_item * (1.0 - fraction) / worker.bandwidth_bytes_s


def _transfer_per_batch(candidate: BatchCandidate, fraction: float, worker: WorkerView) -> float:
    if candidate.batch_input_bytes == 0:
        return 0.0
    return candidate.batch_input_bytes * (1.0 - fraction) / worker.bandwidth_bytes_s


def _has_inputs(candidate: BatchCandidate) -> bool:
    """Whether ``candidate`` has bytes to move, so local fractions can tell workers apart."""
    return bool(candidate.input_bytes_per_item or candidate.batch_input_bytes)


def _penalty_per_s(worker: WorkerView, weights: UtilityWeights) -> float:
    """$ charged per expected second on ``worker``: its price, its energy and latency."""
    return (
        weights.cost_weight * worker.price_per_hour / 3600.0
        + weights.energy_weight * worker.watts / 3600.0
        + weights.time_weight
    )


def score(
    candidate: BatchCandidate,
    worker: WorkerView,
    size: int,
    *,
    throughput: ThroughputModel,
    weights: UtilityWeights,
    usage: TenantUsage,
) -> Score:
    """THE utility of running ``size`` items of ``candidate`` on ``worker``.

    With c = candidate, w = worker, n = size (1 <= n <= min(c.ready, w.max_batch)) and
    (v, a, phi, kc, ke, kt, L0) = weights (value_per_item, wait_weight, fairness_weight,
    cost_weight, energy_weight, time_weight, default_load_s)::

        load    = 0  if c.model is None or c.model in w.warm_models
                  else throughput.load_seconds(w.accelerator, c.model, default=L0)
        f       = c.local_fraction.get(w.worker_id, 0)
        xfer    = c.input_bytes_per_item * (1 - f) / w.bandwidth_bytes_s
        fetch   = c.batch_input_bytes * (1 - f) / w.bandwidth_bytes_s
        T       = u * throughput.batch_seconds(w.accelerator, c.kind, c.model, n)
                  + load + fetch + n * xfer             (expected seconds)
        value   = n * u * (v * (1 + a * c.oldest_wait_s) + phi * v * fairness(c, usage))
        utility = value - (kc * w.price_per_hour / 3600 + ke * w.watts / 3600 + kt) * T
        rate    = utility / T

    with ``u = c.item_weight``, the units of work one item stands for (1 for an item of a
    split list; a training run's examples times epochs): such an item is worth that many
    units and takes as long as that many (the throughput model learns per unit, see
    ``throughput``), so it is weighed by what one unit of it costs and earns, whatever
    the size of the run. That is,
    ``utility = value - kc * cost - ke * energy - kt * T`` with
    ``cost = w.price_per_hour * T / 3600`` ($) and ``energy = w.watts * T / 3600`` (Wh),
    the two reported in the Score. ``fairness`` (in [-1, 1]) is defined in its docstring.
    Aging makes an item's value grow without bound while it waits, so no group starves;
    ``rate`` is utility per second of the worker's time, which ``choose`` maximises.
    ``fetch`` is what a batch moves once (a checkpoint model's files, which a worker that
    holds it on disk has: f = 1), ``xfer`` what each item moves; both are 0 when their
    bytes are 0. The scheduler sets them (docs/architecture.md, "Data locality").
    """
    limit = min(candidate.ready, worker.max_batch)
    if not 1 <= size <= limit:
        raise InvalidInputError(
            f"batch size must be in [1, min(ready, max_batch)={limit}], got {size}"
        )
    fair = _fairness(candidate.tenant_items, _fair_share(usage), usage)
    fraction = candidate.local_fraction.get(worker.worker_id, 0.0)
    seconds = (
        candidate.item_weight
        * throughput.batch_seconds(worker.accelerator, candidate.kind, candidate.model, size)
        + _load_seconds(candidate, worker, throughput, weights)
        + _transfer_per_batch(candidate, fraction, worker)
        + size * _transfer_per_item(candidate, fraction, worker)
    )
    value = size * _item_value(candidate, weights, fair)
    utility = value - _penalty_per_s(worker, weights) * seconds
    return _score(value, seconds, utility, worker)


def _score(value: float, seconds: float, utility: float, worker: WorkerView) -> Score:
    cost = worker.price_per_hour * seconds / 3600.0
    energy = worker.watts * seconds / 3600.0
    return Score(value, cost, energy, seconds, utility, utility / seconds)


# -- the argmax -----------------------------------------------------------------------------


@lru_cache(maxsize=1024)
def size_ladder(limit: int) -> tuple[int, ...]:
    """Batch sizes ``choose`` tries: 1, 2, 4, ... up to ``limit``, and ``limit`` itself.

    Value grows linearly with size, per-batch seconds (load, overhead) are shared, and the
    throughput model's items/s never falls within a power-of-two bucket (constant when
    measured, rising when seeded), so the rate-best size of a bucket is its largest. The
    ladder holds exactly those (the cap included): no other size has a higher rate.
    """
    sizes = [1 << k for k in range(limit.bit_length()) if 1 << k <= limit]
    if sizes and sizes[-1] != limit:
        sizes.append(limit)
    return tuple(sizes)


def free_worker_key(worker: WorkerView) -> tuple[int, str]:
    """Among equivalent workers: the most free slots first, then by worker_id."""
    return (-worker.free_slots, worker.worker_id)


_Hardware = tuple[str, float, float, int, float]
_Options = list[tuple[WorkerView, float]]


def _hardware(w: WorkerView) -> _Hardware:
    return (w.accelerator, w.price_per_hour, w.watts, w.max_batch, w.bandwidth_bytes_s)


def _classes(workers: Sequence[WorkerView]) -> dict[tuple[_Hardware, frozenset[str]], WorkerView]:
    """The best free worker of each class of equal hardware and warm models."""
    reps: dict[tuple[_Hardware, frozenset[str]], WorkerView] = {}
    for w in workers:
        if w.free_slots <= 0 or w.max_batch < 1:
            continue
        key = (_hardware(w), w.warm_models)
        rep = reps.get(key)
        if (
            rep is None
            or w.free_slots > rep.free_slots
            or (w.free_slots == rep.free_slots and w.worker_id < rep.worker_id)
        ):
            reps[key] = w
    return reps


def _options(
    c: BatchCandidate,
    reps: dict[tuple[_Hardware, frozenset[str]], WorkerView],
    free: dict[str, WorkerView],
    by_model: dict[str | None, _Options],
) -> _Options:
    """(worker, local fraction) pairs that cover everything ``score`` can tell apart for c.

    Besides hardware, a worker matters to one candidate only by whether c.model is warm
    on it and, when c has input bytes, by its local fraction. Classes that differ only in
    other warm models merge; each merged class offers its best worker at fraction 0. A
    worker holding part of c's inputs is offered besides, at its fraction; it can only beat
    its class at fraction 0 (less to fetch, so fewer seconds and a higher rate), so that
    class's offer may even be the holder itself without changing the argmax.
    """
    holders: list[tuple[WorkerView, float]] = []
    if _has_inputs(c):
        holders = [(free[k], f) for k, f in c.local_fraction.items() if f != 0 and k in free]
    if not holders and c.model in by_model:  # many candidates share a model
        return by_model[c.model]
    best: dict[tuple[_Hardware, bool, float], WorkerView] = {}

    def offer(hardware: _Hardware, worker: WorkerView, fraction: float) -> None:
        key = (hardware, c.model is None or c.model in worker.warm_models, fraction)
        held = best.get(key)
        if held is None or free_worker_key(worker) < free_worker_key(held):
            best[key] = worker

    for (hardware, _), rep in reps.items():
        offer(hardware, rep, 0.0)
    for worker, fraction in holders:
        offer(_hardware(worker), worker, fraction)
    options = [(worker, key[2]) for key, worker in best.items()]
    if not holders:
        by_model[c.model] = options
    return options


_Key = tuple[float, float, str, int, int, str]
_Best = tuple[_Key, Decision] | None


def _best_for(
    c: BatchCandidate,
    item_value: float,
    options: _Options,
    best: _Best,
    throughput: ThroughputModel,
    weights: UtilityWeights,
) -> _Best:
    """``best`` improved by any (worker, ladder size) of ``options`` for candidate ``c``."""
    ladders: dict[tuple[str, int], list[tuple[int, float]]] = {}
    weight = c.item_weight
    for worker, fraction in options:
        limit = min(c.ready, worker.max_batch)
        ladder = ladders.get((worker.accelerator, limit))
        if ladder is None:
            ladder = ladders[(worker.accelerator, limit)] = [
                (n, weight * throughput.batch_seconds(worker.accelerator, c.kind, c.model, n))
                for n in size_ladder(limit)
            ]
        load_s = _load_seconds(c, worker, throughput, weights)
        fetch_s = _transfer_per_batch(c, fraction, worker)
        xfer_s = _transfer_per_item(c, fraction, worker)
        penalty = _penalty_per_s(worker, weights)
        for n, batch_s in ladder:
            # score()'s arithmetic, operation for operation, so the floats agree exactly.
            seconds = batch_s + load_s + fetch_s + n * xfer_s
            value = n * item_value
            utility = value - penalty * seconds
            if utility <= 0:
                continue
            rate = utility / seconds
            if best is not None and rate < -best[0][0]:
                continue
            key = (-rate, -c.oldest_wait_s, c.signature, -n, -worker.free_slots, worker.worker_id)
            if best is None or key < best[0]:
                scored = _score(value, seconds, utility, worker)
                best = (key, Decision(c.signature, worker.worker_id, n, scored))
    return best


def choose(
    candidates: Sequence[BatchCandidate],
    workers: Sequence[WorkerView],
    *,
    throughput: ThroughputModel,
    weights: UtilityWeights,
    usage: TenantUsage,
) -> Decision | None:
    """The (candidate, worker, size) with the highest ``score(...).rate`` among utility > 0.

    Only workers with ``free_slots > 0`` qualify; sizes come from ``size_ladder(min(ready,
    max_batch))``. None when no option has positive utility. Ties prefer, in order: the
    older candidate, the smaller signature, the larger size, the worker with more free
    slots, the smaller worker_id, so equal inputs give equal decisions.

    Performance (it runs once per batch assigned, over ~1,000 workers): free workers are
    grouped into equivalence classes (same accelerator, price, watts, max_batch,
    bandwidth and warm models); per candidate, classes that differ only in warm models
    other than the candidate's merge, and workers holding part of a candidate's input
    bytes split off by their local fraction. Each class is evaluated once, and the
    decision names its worker with the most free slots (then the smallest worker_id).
    The result is exactly what scoring every free worker at every ladder size with
    ``score`` gives, rounding included: both do the same arithmetic in the same order.
    """
    reps = _classes(workers)
    free: dict[str, WorkerView] = {}
    if any(_has_inputs(c) and c.local_fraction for c in candidates):
        free = {w.worker_id: w for w in workers if w.free_slots > 0 and w.max_batch >= 1}
    share = _fair_share(usage)
    by_model: dict[str | None, _Options] = {}
    best: _Best = None
    for c in candidates:
        item_value = _item_value(c, weights, _fairness(c.tenant_items, share, usage))
        options = _options(c, reps, free, by_model)
        best = _best_for(c, item_value, options, best, throughput, weights)
    return None if best is None else best[1]
