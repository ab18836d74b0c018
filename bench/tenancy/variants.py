"""Running one fabric variant over one overlap, and what it measured.

Each variant gets a fresh control plane with its own settings on the run's prefix, the
throughput model the warm-up taught (restored, so no variant learns from an earlier one),
and records salted with its own code (no variant gets another's cache hits). Its figures
are differences of counters read while the workers are idle right before and right after:
``ControlPlane.stats`` (items, batches, busy seconds, $ and Wh), the worker processes'
CPU clocks, this process's CPU clock (the control plane runs here) and Redis' own.

This module must never read a counter while a worker holds a batch, nor leave a worker
marked draining.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import time
from collections import defaultdict
from collections.abc import Callable, Collection
from dataclasses import dataclass, field

from bench.tenancy.errors import BenchError
from bench.tenancy.fabric import only, running_plane, until_idle
from bench.tenancy.options import Options
from bench.tenancy.workers import WorkerPool
from bench.tenancy.workload import PromptPlan, workflow
from flowmesh_core.checkpoint import read_tree
from flowmesh_core.control import ControlPlane, NodeState, Tenant, WorkflowStatus
from flowmesh_core.models import Satisfaction, Workflow
from flowmesh_core.settings import DedupDomain, Settings
from flowmesh_core.store import Store

__all__ = [
    "SALTS",
    "Bench",
    "Build",
    "Counters",
    "StageFigures",
    "VariantResult",
    "run_variant",
]

SALTS = {"warm-up": 0, "isolated": 1, "no-dedup": 2, "no-batching": 3, "flowmesh": 4}
"""Each variant's code in its records; the oracle takes flowmesh's records."""
POLL_S = 0.25

Build = Callable[..., Workflow]
"""A tenant's workflow from its records: ``build(records, dedup=)``; None: the data
stage's (``workload.workflow`` at ``--max-new-tokens``)."""


@dataclass(frozen=True)
class Counters:
    """Cumulative counters at one moment; ``after - before`` is what happened between."""

    requested: float = 0.0
    executed: float = 0.0
    batches: float = 0.0
    batched: float = 0.0  # items in those batches
    busy_s: float = 0.0
    cost_usd: float = 0.0
    energy_wh: float = 0.0
    worker_cpu_s: float = 0.0
    plane_cpu_s: float = 0.0  # this process: the control plane and the benchmark's polling
    redis_cpu_s: float = 0.0  # the whole Redis server (shared with anyone else using it)

    def __sub__(self, other: Counters) -> Counters:
        return Counters(*(getattr(self, f.name) - getattr(other, f.name) for f in _FIELDS))

    def __add__(self, other: Counters) -> Counters:
        return Counters(*(getattr(self, f.name) + getattr(other, f.name) for f in _FIELDS))


_FIELDS = dataclasses.fields(Counters)


@dataclass(frozen=True)
class StageFigures:
    """One node across every tenant's workflow, from the lineage."""

    executed: int
    batches: int
    busy_s: float
    requested: int = 0  # lineage records: one per tenant's item
    examples: int = 0  # training nodes: examples x epochs the executed runs trained on


@dataclass(frozen=True)
class VariantResult:
    """What one variant did at one overlap (the oracle fills only what makes sense)."""

    variant: str
    overlap: int
    counters: Counters
    stage: str = "data"  # or "training" (bench.tenancy.training)
    latencies: tuple[float, ...] = ()
    makespan_s: float | None = None
    makespan_note: str = ""
    stages: dict[str, StageFigures] = field(default_factory=dict)
    oracle_sizes: dict[str, int] = field(default_factory=dict)  # node -> best batch size
    notes: dict[str, float] = field(default_factory=dict)  # the oracle's result-write timing


@dataclass
class Bench:
    """What every variant shares: options, the fleet, the tenants, the base settings."""

    options: Options
    settings: Settings
    store: Store
    pool: WorkerPool
    tenants: list[Tenant]
    admin: Tenant
    learned: str | None = None  # the throughput model after the warm-up, as JSON
    tick: Callable[[int, int], None] = lambda done, total: None

    def settings_for(self, variant: str) -> Settings:
        if variant == "isolated":
            return self.settings.model_copy(update={"dedup_domain": DedupDomain.TENANT})
        if variant == "no-batching":
            return self.settings.model_copy(update={"scheduler_max_batch": 1})
        return self.settings

    async def restore_learning(self) -> None:
        if self.learned is not None:
            await self.store.save_json(self.store.keys.throughput(), self.learned)


async def run_variant(
    bench: Bench,
    variant: str,
    overlap: int,
    plan: PromptPlan,
    build: Build | None = None,
    trees: Collection[str] = (),
) -> VariantResult:
    """One fabric variant over ``plan``'s records, each tenant's workflow from ``build``;
    the nodes in ``trees`` train (their results are checkpoint trees)."""
    await bench.restore_learning()
    stage = "training" if trees else "data"
    async with running_plane(bench.settings_for(variant)) as plane:
        if variant == "isolated":
            return await _isolated(bench, plane, overlap, plan, build, trees)
        await until_idle(plane.store)
        before = await counters(bench, plane)
        dedup = variant != "no-dedup"
        ids = await submit(bench, plane, plan, range(len(bench.tenants)), dedup, build)
        final = await follow(bench, plane, ids)
        await until_idle(plane.store)
        after = await counters(bench, plane)
        stages = await stage_figures(bench, plane, ids, trees)
    started = min(s.created_at for s in final)
    ended = max(s.finished_at or 0.0 for s in final)
    return VariantResult(
        variant, overlap, after - before, stage, _latencies(final), ended - started,
        "first submit -> last done", stages,
    )  # fmt: skip


async def _isolated(
    bench: Bench,
    plane: ControlPlane,
    overlap: int,
    plan: PromptPlan,
    build: Build | None,
    trees: Collection[str],
) -> VariantResult:
    """Tenant by tenant, each alone on one worker (round robin over the pool)."""
    every = bench.pool.ids
    total, final, stages = Counters(), [], defaultdict(list)
    for t in range(len(bench.tenants)):
        mine = [every[t % len(every)]]
        async with only(bench.store, every, mine):
            await until_idle(plane.store)
            before = await counters(bench, plane, mine)
            ids = await submit(bench, plane, plan, [t], True, build)
            final += await follow(bench, plane, ids)
            await until_idle(plane.store)
            total += await counters(bench, plane, mine) - before
        for node, figures in (await stage_figures(bench, plane, ids, trees)).items():
            stages[node].append(figures)
    latencies = _latencies(final)
    return VariantResult(
        "isolated", overlap, total, "training" if trees else "data", latencies, max(latencies),
        "longest alone run (each tenant on its own worker, in parallel)",
        {node: _sum_stages(parts) for node, parts in stages.items()},
    )  # fmt: skip


async def counters(bench: Bench, plane: ControlPlane, workers: list[str] | None = None) -> Counters:
    """The counters now; the worker CPU of ``workers`` only, when named."""
    stats = await plane.stats(bench.admin)
    info = await plane.store.redis.info("cpu")
    bench.pool.check_alive()
    return Counters(
        requested=stats.requested,
        executed=stats.executed,
        batches=stats.batches,
        batched=stats.mean_batch_size * stats.batches,
        busy_s=stats.worker_seconds,
        cost_usd=stats.cost_usd,
        energy_wh=stats.energy_wh,
        worker_cpu_s=bench.pool.cpu_seconds(workers),
        plane_cpu_s=time.process_time(),
        redis_cpu_s=float(info["used_cpu_sys"]) + float(info["used_cpu_user"]),
    )


async def submit(
    bench: Bench,
    plane: ControlPlane,
    plan: PromptPlan,
    which: range | list[int],
    dedup: bool,
    build: Build | None = None,
) -> list[str]:
    """Tenant ``t``'s workflow over ``plan.sets[t]`` for each ``t`` in ``which``, at once."""
    make = build or functools.partial(workflow, max_new_tokens=bench.options.max_new_tokens)
    submitted = await asyncio.gather(
        *(plane.submit_workflow(bench.tenants[t], make(plan.sets[t], dedup=dedup)) for t in which)
    )
    return [s.workflow_id for s in submitted]


async def follow(bench: Bench, plane: ControlPlane, ids: list[str]) -> list[WorkflowStatus]:
    """Until every workflow is done; raise BenchError if one fails or time runs out."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + bench.options.timeout_s
    final: dict[str, WorkflowStatus] = {}
    while True:
        done = total = 0
        for wf_id in ids:
            status = final.get(wf_id) or await plane.status(bench.admin, wf_id, with_lineage=False)
            if status.state.final:
                final[wf_id] = status
            done += sum(n.items_done for n in status.nodes)
            total += sum(n.items_total for n in status.nodes)
        bench.tick(done, total)
        if len(final) == len(ids):
            break
        if loop.time() > deadline:
            raise BenchError(f"workflows not done within {bench.options.timeout_s:g} s")
        bench.pool.check_alive()
        await asyncio.sleep(POLL_S)
    for status in final.values():
        if status.state is not NodeState.DONE:
            errors = "; ".join(f"{n.node}: {n.error}" for n in status.nodes if n.error)
            raise BenchError(f"workflow {status.workflow_id} {status.state}: {errors}")
    return [final[wf_id] for wf_id in ids]


async def stage_figures(
    bench: Bench, plane: ControlPlane, ids: list[str], trees: Collection[str] = ()
) -> dict[str, StageFigures]:
    """Per node, over the workflows ``ids``: items requested and executed, batches, busy
    seconds and, for the nodes in ``trees``, the examples their executed runs trained on
    (read from each checkpoint's metrics). Busy seconds are the executed records' own: a
    batch's seconds are split over its items, but every requester of an item (a join, a
    cache hit) sees that item's whole share, so summing theirs would count it again."""
    requested: dict[str, int] = defaultdict(int)
    executed: dict[str, int] = defaultdict(int)
    examples: dict[str, int] = defaultdict(int)
    batches: dict[str, set[str]] = defaultdict(set)
    busy: dict[str, float] = defaultdict(float)
    for wf_id in ids:
        for record in await plane.lineage(bench.admin, wf_id):
            requested[record.node] += 1
            if record.satisfied_by is Satisfaction.EXECUTED:
                busy[record.node] += record.worker_seconds
                executed[record.node] += 1
                if record.batch_id:
                    batches[record.node].add(record.batch_id)
                if record.node in trees and record.result_digest is not None:
                    tree = read_tree(await plane.results.read(record.result_digest))
                    examples[record.node] += int(tree.metrics.get("examples", 0))
    return {
        node: StageFigures(
            executed[node], len(batches[node]), busy[node], requested[node], examples[node]
        )
        for node in requested
    }


def _sum_stages(parts: list[StageFigures]) -> StageFigures:
    return StageFigures(*(sum(getattr(p, f.name) for p in parts) for f in _STAGE_FIELDS))


_STAGE_FIELDS = dataclasses.fields(StageFigures)


def _latencies(final: list[WorkflowStatus]) -> tuple[float, ...]:
    return tuple((s.finished_at or s.created_at) - s.created_at for s in final)
