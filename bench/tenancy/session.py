"""One whole run on a started worker pool: tenants, the warm-up, every overlap x variant,
then (``--stages training``) every fabric variant of the training stage.

The warm-up gives each worker in turn (the others marked draining) a workflow that
runs every stage with every model, so no measured variant pays an import or a model load
(with the training stage, a small training workflow too: TRL's import and its first
trainer), and waits until every worker reports every model warm. Meanwhile this process loads
the oracle's models (in the one thread that later runs the oracle's calls). The
scheduler's throughput model as the warm-up left it is kept, and every variant starts
from it.

Overlaps run one after another; within one, the variants run in ``VARIANTS`` order. The
training stage runs last, its variants in the same order (no oracle: it has none).
"""

from __future__ import annotations

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from rich.progress import Progress, TaskID

from bench.tenancy.fabric import only, running_plane, until_registered, until_warm
from bench.tenancy.options import Options
from bench.tenancy.oracle import Oracle, OracleRun
from bench.tenancy.report import Pricing
from bench.tenancy.training import (
    OVERLAP_PCT,
    TRAINING_NODES,
    plan_training,
    training_workflow,
)
from bench.tenancy.variants import (
    SALTS,
    Bench,
    Counters,
    StageFigures,
    VariantResult,
    follow,
    run_variant,
)
from bench.tenancy.workers import WorkerPool
from bench.tenancy.workload import (
    EMBED_MODEL,
    GENERATE_MODEL,
    SCORE_MODEL,
    new_nonce,
    plan_prompts,
    workflow,
)
from flowmesh_core.blobs import open_blob_store
from flowmesh_core.control import create_tenant
from flowmesh_core.settings import Settings
from flowmesh_core.store import Store
from flowmesh_worker.demo.warmup import quiet_ml_libraries

__all__ = ["Board", "measure", "training_variants"]


@dataclass
class Board:
    """The progress bars: one step per variant run, and the items of the current one."""

    progress: Progress
    steps: TaskID
    items: TaskID

    @classmethod
    def open(cls, progress: Progress, steps: int) -> Board:
        return cls(
            progress,
            progress.add_task("starting workers", total=steps),
            progress.add_task("items done", total=None),
        )

    def step(self, description: str, advance: int = 0) -> None:
        self.progress.update(self.steps, description=description, advance=advance)
        self.progress.reset(self.items, total=None)

    def tick(self, done: int, total: int) -> None:
        self.progress.update(self.items, completed=done, total=max(total, 1))


async def measure(
    options: Options, settings: Settings, pool: WorkerPool, board: Board, model_dir: Path
) -> tuple[list[VariantResult], Pricing]:
    """Every variant at every overlap; the workers' declared price and power."""
    store = Store.from_settings(settings)
    models = ThreadPoolExecutor(1, "oracle")
    try:
        await until_registered(store, pool.ids, pool.check_alive)
        pricing = await _pricing(store, pool.ids)
        names = [f"tenant-{t + 1}" for t in range(options.tenants)]
        tenants = [(await create_tenant(store, name))[0] for name in names]
        admin, _ = await create_tenant(store, "bench-admin", admin=True)
        bench = Bench(options, settings, store, pool, tenants, admin, tick=board.tick)
        loop = asyncio.get_running_loop()
        loading = None
        data = "data" in options.stages
        if data and "oracle" in options.variants:
            blob_dir = Path(settings.blob_url.removeprefix("file://")).with_name("oracle-blobs")
            loading = loop.run_in_executor(models, _load_oracle, model_dir, options, blob_dir)
        await _warm_up(bench, board)
        oracle = await loading if loading is not None else None
        results = []
        nonce = new_nonce()
        for overlap in options.overlaps if data else ():
            for variant in options.variants:
                board.step(f"overlap {overlap}%: {variant}")
                salt = SALTS.get(variant, SALTS["flowmesh"])
                plan = plan_prompts(options.tenants, options.prompts, overlap, salt, nonce)
                if variant == "oracle" and oracle is not None:
                    run = await loop.run_in_executor(models, oracle.run, plan)
                    results.append(_oracle_result(overlap, run, pricing))
                else:
                    results.append(await run_variant(bench, variant, overlap, plan))
                board.step(f"overlap {overlap}%: {variant} done", advance=1)
        if "training" in options.stages:
            results += await _training(bench, board, nonce)
        return results, pricing
    finally:
        models.shutdown(wait=True, cancel_futures=True)
        await store.aclose()


async def _pricing(store: Store, ids: list[str]) -> Pricing:
    profiles = [r.profile for r in await store.workers() if r.profile.worker_id in ids]
    return Pricing(profiles[0].price_per_hour, profiles[0].watts)


def _load_oracle(model_dir: Path, options: Options, blob_dir: Path) -> Oracle:
    import torch

    quiet_ml_libraries()  # no loading bars through the progress bars
    torch.set_num_threads(1)  # as each worker (OMP_NUM_THREADS=1 there)
    blobs = open_blob_store(f"file://{blob_dir}")
    return Oracle(model_dir, options.max_new_tokens, options.oracle_sizes, blobs)


def training_variants(options: Options) -> tuple[str, ...]:
    """The variants the training stage runs: every fabric variant asked for."""
    return tuple(v for v in options.variants if v != "oracle")


async def _training(bench: Bench, board: Board, nonce: int) -> list[VariantResult]:
    """Every fabric variant over the training stage's workload."""
    options, results = bench.options, []
    for variant in training_variants(options):
        board.step(f"training: {variant}")
        plan = plan_training(options.tenants, options.training_prompts, SALTS[variant], nonce)
        result = await run_variant(
            bench, variant, OVERLAP_PCT, plan, training_workflow, trees=TRAINING_NODES
        )
        results.append(result)
        board.step(f"training: {variant} done", advance=1)
    return results


async def _warm_up(bench: Bench, board: Board) -> None:
    """Each worker alone runs a workflow through every stage (the filter keeps all), and
    with the training stage a training workflow too."""
    ids, options = bench.pool.ids, bench.options
    prompts = 4 if options.quick else 16
    data, training = "data" in options.stages, "training" in options.stages
    async with running_plane(bench.settings) as plane:
        for i, worker in enumerate(ids):
            board.step(f"warm-up: {worker} (imports, model loads)")
            flows = []
            if data:
                plan = plan_prompts(1, prompts, 0, SALTS["warm-up"], new_nonce())
                flows.append(workflow(plan.sets[0], max_new_tokens=options.max_new_tokens,
                                      min_score=None, name=f"warm-up-{i}"))  # fmt: skip
            if training:
                plan = plan_training(1, 4, SALTS["warm-up"], new_nonce())
                flows.append(training_workflow(plan.sets[0], name=f"warm-up-training-{i}"))
            async with only(bench.store, ids, [worker]):
                for flow in flows:
                    submitted = await plane.submit_workflow(bench.tenants[0], flow)
                    await follow(bench, plane, [submitted.workflow_id])
        board.step("warm-up: waiting for every worker to report its models warm")
        models = {GENERATE_MODEL, SCORE_MODEL} | ({EMBED_MODEL} if data else set())
        await until_warm(bench.store, ids, models)
        bench.learned = json.dumps(plane.scheduler.throughput.to_dict())


def _oracle_result(overlap: int, run: OracleRun, p: Pricing) -> VariantResult:
    wall = run.total("wall_s")
    counters = Counters(
        requested=run.total("requested"),
        executed=run.total("executed"),
        batches=run.total("batches"),
        batched=run.total("executed"),
        busy_s=wall,
        cost_usd=p.price_per_hour * wall / 3600,
        energy_wh=p.watts * wall / 3600,
        worker_cpu_s=run.total("cpu_s"),
    )
    stages = {s.node: StageFigures(s.executed, s.batches, s.wall_s) for s in run.stages}
    sizes = {s.node: s.size for s in run.stages}
    writes = {
        "write_cpu_ms": 1000 * run.write_cpu_s / max(run.writes, 1),
        "write_wall_ms": 1000 * run.write_wall_s / max(run.writes, 1),
    }
    return VariantResult(
        "oracle", overlap, counters, stages=stages, oracle_sizes=sizes, notes=writes
    )
