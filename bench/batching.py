"""Batching benchmark: items/s of real models on this CPU, through the fabric and directly.

Per kind (``embed`` on the real all-MiniLM-L6-v2, ``llm.generate`` on the tiny random-weight
``flowmesh/tiny-gpt``) and batch size B, one right after the other: *direct*, the worker's
executor (``create_executor``, ``resolve_model``) on N items in chunks of B, nothing around
it; *fabric*, a fresh control plane (``ControlPlane.run``) and one real worker
(``build_worker``, one slot, ``max_batch`` = B) on the N items submitted as ONE operator,
timed from submit to every result read back from the CAS. Both are warmed first (no load
time is counted). Texts are never seen before (dedup hides no work) and of one token
length; each fabric configuration has its own key prefix (the scheduler's throughput model
starts from its priors). Batch sizes shown are the ones the scheduler formed. Nothing here
asserts a time.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import datetime
import json
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from flowmesh_core.control import ControlPlane, NodeState, Tenant, create_tenant
from flowmesh_core.manifest import read_manifest
from flowmesh_core.models import ModelRef, Operator
from flowmesh_core.registry import Registry
from flowmesh_core.settings import Settings
from flowmesh_core.store import Store
from flowmesh_core.store.embedded import EmbeddedServer
from flowmesh_worker.assemble import build_worker
from flowmesh_worker.executors import Batch, ItemError, WorkItem, create_executor
from flowmesh_worker.weights import resolve_model

RESULTS = Path(__file__).resolve().parent / "results" / "batching.csv"
WAIT_S = 900.0  # one operator; generous, a loaded 2-core machine is slow
WARMUP_S = 1.0  # of batches before each timing: a model copy's first calls are slower


@dataclass(frozen=True)
class Workload:
    """What one kind runs: its model, the list input it batches over, its params."""

    model: str
    batch_input: str
    params: dict[str, Any]
    reference: str


WORKLOADS: dict[str, Workload] = {
    "embed": Workload("all-MiniLM-L6-v2", "texts", {"normalize": True},
        "sentence-transformers alone on this machine: ~115 texts/s at batch 1, ~330/s at 128"),
    "llm.generate": Workload("flowmesh/tiny-gpt", "prompts", {"max_new_tokens": 16},
        "random weights (2 layers, hidden 64), greedy, up to 16 new tokens"),
}  # fmt: skip

# 32 words, each one WordPiece token in MiniLM's vocabulary (which tiny-gpt shares).
WORDS = (
    "river", "engine", "quiet", "lantern", "orbit", "copper", "meadow", "signal", "harbor",
    "velvet", "thunder", "pixel", "garden", "mirror", "falcon", "ledger", "candle", "summit",
    "prism", "anchor", "willow", "cobalt", "ocean", "glacier", "stone", "cloud", "bright",
    "forest", "silver", "window", "music", "paper",
)  # fmt: skip
WORDS_PER_TEXT = 14


def texts(count: int) -> list[str]:
    """``count`` new texts of one token length (so warm-up batches have the timed shapes):
    numbers from a random 60-bit start, spelled in base 32 with ``WORDS``."""
    start = uuid.uuid4().int >> 68
    out = []
    for n in range(start, start + count):
        digits = [WORDS[(n >> (5 * j)) % 32] for j in range(WORDS_PER_TEXT)]
        out.append(f"The {' '.join(digits)}.")
    return out


# -- measurements --------------------------------------------------------------------------


@dataclass
class FabricRun:
    """One timed operator through the fabric, with what the scheduler actually formed."""

    items: int
    wall_s: float
    batches: int
    mean_batch: float
    sizes: Counter[int]  # batch size -> how many batches of that size
    busy_s: float  # the worker inside its batches (reports' finished_at - started_at)

    @property
    def rate(self) -> float:
        return self.items / self.wall_s


@dataclass
class Row:
    kind: str
    size: int
    direct: float  # items/s
    fabric: FabricRun


class Direct:
    """The worker's executor for one kind, called in-process with no fabric around it."""

    def __init__(self, kind: str, model_dir: Path) -> None:
        self.kind, self.workload = kind, WORKLOADS[kind]
        self.spec = Registry.default().get(kind)
        self.ref = ModelRef(name=self.workload.model)
        self.executor = create_executor(kind)
        self.loaded = self.executor.load(resolve_model(self.ref, model_dir=model_dir), self.ref)

    def rate(self, size: int, items: list[str], warmup_s: float) -> float:
        """items/s over ``items`` in chunks of ``size``, after ``warmup_s`` of warm-up."""
        params = self.spec.normalize_params(self.workload.params)
        key = self.workload.batch_input
        work = [WorkItem(f"direct-{i}", {key: text}, params) for i, text in enumerate(items)]
        version = self.spec.version or "1"
        chunks = [work[s : s + size] for s in range(0, len(work), size)]
        batches = [Batch(self.kind, version, self.ref, chunk) for chunk in chunks]
        start = time.perf_counter()
        while True:  # see WARMUP_S
            self.executor.run(batches[0], self.loaded)
            if time.perf_counter() - start >= warmup_s:
                break
        start = time.perf_counter()
        for batch in batches:
            outcomes = self.executor.run(batch, self.loaded)
            if any(isinstance(o, ItemError) for o in outcomes):
                raise RuntimeError(f"{self.kind}: the executor failed an item: {outcomes}")
        return len(work) / (time.perf_counter() - start)


@dataclass
class Fabric:
    """Where every fabric configuration runs: one store URL, one blob and model dir."""

    store_url: str
    run_id: str
    scratch: Path
    warmup_s: float

    async def rate(self, kind: str, size: int, items: int) -> FabricRun:
        """One configuration on a fresh prefix: a plane, a worker with max_batch=size."""
        prefix = f"fmbench-{self.run_id}-{kind.replace('.', '_')}-b{size}"
        blobs, models = self.scratch / "blobs", self.scratch / "models"
        settings = Settings(
            redis_url=self.store_url, key_prefix=prefix, blob_url=f"file://{blobs}",
            worker_model_dir=str(models),
        )  # fmt: skip
        plane = ControlPlane(settings)
        stop, worker_stop = asyncio.Event(), asyncio.Event()
        loops = asyncio.create_task(plane.run(stop))
        worker = build_worker(settings, worker_id=f"bench-b{size}", max_batch=size, slots=1)
        working = asyncio.create_task(worker.run(worker_stop))
        try:
            tenant, _ = await create_tenant(plane.store, "bench")
            start = time.perf_counter()
            while True:  # loads the model, then runs batches of B until warm
                await run_operator(plane, tenant, kind, texts(size))
                if time.perf_counter() - start >= self.warmup_s:
                    break
            return await _timed(plane, tenant, kind, texts(items))
        finally:
            worker_stop.set()
            stop.set()  # together: each waits out its own blocking read (~0.5 s)
            try:
                await asyncio.wait_for(asyncio.gather(working, loops), 60)
            finally:
                await plane.store.purge()
                await worker.store.aclose()
                await plane.aclose()


async def _timed(plane: ControlPlane, tenant: Tenant, kind: str, items: list[str]) -> FabricRun:
    admin = Tenant(name="bench-admin", admin=True)  # batches are fabric-wide figures
    before = await plane.stats(admin)
    start = time.perf_counter()
    wf_id = await run_operator(plane, tenant, kind, items)
    elapsed = time.perf_counter() - start
    after = await plane.stats(admin)
    batches = after.batches - before.batches
    batched = after.mean_batch_size * after.batches - before.mean_batch_size * before.batches
    lineage = await plane.lineage(tenant, wf_id)
    return FabricRun(
        items=len(items),
        wall_s=elapsed,
        batches=batches,
        mean_batch=batched / batches if batches else 0.0,
        sizes=Counter(Counter(r.batch_id for r in lineage).values()),
        busy_s=after.worker_seconds - before.worker_seconds,
    )


async def run_operator(plane: ControlPlane, tenant: Tenant, kind: str, items: list[str]) -> str:
    """Submit ``items`` as one operator, wait, read every result back; the workflow id."""
    workload = WORKLOADS[kind]
    fields = {"kind": kind, "model": workload.model, "params": workload.params}
    op = Operator.model_validate({**fields, "inputs": {workload.batch_input: items}})
    submitted = await plane.submit_operator(tenant, op)
    status = await plane.wait(tenant, submitted.workflow_id, WAIT_S)
    node = status.nodes[0]
    if status.state is not NodeState.DONE or node.result_digest is None:
        raise RuntimeError(f"{kind} operator ended {status.state.value}: {node.error}")
    manifest = read_manifest(await plane.results.read(node.result_digest))
    found = await plane.results.read_many(manifest)
    values = [json.loads(found[digest]) for digest in manifest]
    if len(values) != len(items) or not all(_looks_right(kind, v) for v in values):
        raise RuntimeError(f"{kind}: {len(values)} results for {len(items)} items, or malformed")
    return submitted.workflow_id


def _looks_right(kind: str, value: Any) -> bool:
    if kind == "embed":
        return isinstance(value, list) and len(value) == 384  # MiniLM's dimension
    return isinstance(value, dict) and isinstance(value.get("completion"), str)


async def measure(args: argparse.Namespace, progress: Progress, scratch: Path) -> list[Row]:
    """Direct then fabric at each batch size, per kind, interleaved so drift hits both;
    with ``--repeat``, the fastest of that many runs of each (other load only ever slows
    a run down, so the fastest is the least disturbed, as with ``timeit``).

    Every model call runs on one thread (the loop's only executor thread), as in a one-slot
    worker process: a second thread calling torch makes OpenMP stop spin-waiting once its
    teams outnumber the cores (2 here), which slowed MiniLM at batch 1 from ~8 to ~13 ms.
    """
    import torch  # here, so that --help stays quick

    asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(1, "model-calls"))
    if args.threads:
        await asyncio.to_thread(torch.set_num_threads, args.threads)
    fabric = Fabric(args.store_url, uuid.uuid4().hex[:8], scratch, args.warmup_s)
    rows: list[Row] = []
    for kind in args.kinds:
        steps = 2 * len(args.batch_sizes) * args.repeat
        task = progress.add_task(f"{kind}: loading", total=steps)
        direct = await asyncio.to_thread(Direct, kind, scratch / "models")
        for size in args.batch_sizes:
            rates, runs = [], []
            for _ in range(args.repeat):  # alternating, so that a burst of load hits both
                progress.update(task, description=f"{kind} batch {size}: direct")
                items = texts(args.items)
                rates.append(await asyncio.to_thread(direct.rate, size, items, args.warmup_s))
                progress.update(task, advance=1, description=f"{kind} batch {size}: fabric")
                runs.append(await fabric.rate(kind, size, args.items))
                progress.advance(task)
            rows.append(Row(kind, size, max(rates), max(runs, key=lambda run: run.rate)))
    return rows


# -- report --------------------------------------------------------------------------------

EXPLAIN = """\
columns:
  direct items/s       the executor alone: N items in chunks of B, in this process
  fabric items/s       N items as one operator: submit -> every result read from the CAS
  overhead             direct / fabric items/s (1.00: the fabric costs nothing)
  batches formed       what the scheduler did: batches and their mean size from
  mean batch size      ControlPlane.stats (the timed operator only), sizes from the
  batch sizes formed   lineage's batch ids ("3x32": three batches of 32)
  worker busy %        the worker's time inside its batches (reading inputs, the model,
                       writing results to the CAS; ControlPlane.stats worker_seconds)
                       over the fabric's wall time
  fabric gap ms/batch  the rest of the wall time, per batch: submission, scheduling,
                       delivery, applying reports, waking the waiter, result reads
"""

COLUMNS = (  # (table heading, CSV column)
    ("kind", "kind"), ("batch size", "batch_size"), ("direct items/s", "direct_items_per_s"),
    ("fabric items/s", "fabric_items_per_s"),
    ("overhead (direct/fabric)", "overhead_direct_per_fabric"),
    ("batches formed", "batches_formed"), ("mean batch size", "mean_batch_size"),
    ("batch sizes formed", "batch_sizes_formed"), ("worker busy %", "worker_busy_pct"),
    ("fabric gap ms/batch", "fabric_gap_ms_per_batch"),
)  # fmt: skip


def cells(row: Row) -> list[str]:
    f = row.fabric
    gap_ms = 1000 * (f.wall_s - f.busy_s) / max(f.batches, 1)
    formed = " ".join(f"{n}x{size}" for size, n in sorted(f.sizes.items(), reverse=True))
    return [
        row.kind, str(row.size), f"{row.direct:.1f}", f"{f.rate:.1f}",
        f"{row.direct / f.rate:.2f}", str(f.batches), f"{f.mean_batch:.1f}", formed,
        f"{100 * f.busy_s / f.wall_s:.0f}", f"{gap_ms:.1f}",
    ]  # fmt: skip


def show(console: Console, header: dict[str, str], rows: list[Row], items: int) -> None:
    console.print(", ".join(f"{k}: {v}" for k, v in header.items()))
    table = Table(title=f"batching: {items} items per configuration", title_justify="left")
    for name, _ in COLUMNS:
        table.add_column(
            name, justify="left" if name in ("kind", "batch sizes formed") else "right"
        )
    for row in rows:
        table.add_row(*cells(row))
    console.print(table)
    for kind in dict.fromkeys(row.kind for row in rows):
        console.print(f"{kind} ({WORKLOADS[kind].model}): {WORKLOADS[kind].reference}")
    console.print("overhead = direct / fabric items/s (1.00: the fabric costs nothing); --help")


def write_csv(path: Path, header: dict[str, str], rows: list[Row]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        for key, text in header.items():
            fh.write(f"# {key}: {text}\n")
        writer = csv.writer(fh)
        writer.writerow([column for _, column in COLUMNS])
        writer.writerows(cells(row) for row in rows)


def machine_header(args: argparse.Namespace, store: str) -> dict[str, str]:
    import torch

    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "nproc": str(os.cpu_count()),
        "load average at start": ", ".join(f"{x:.2f}" for x in os.getloadavg()),
        "store": store,
        "python": sys.version.split()[0],
        "torch": f"{torch.__version__}, {args.threads or torch.get_num_threads()} threads",
        "items": f"{args.items} per timed operator; the fastest of {args.repeat} run(s)",
        "settings": "defaults (utility_weights unchanged); one worker, 1 slot, max_batch = B",
        "warm-up": f"model loaded, then {args.warmup_s:g} s of batches of B (not timed)",
    }


def _cpu() -> tuple[float, float, float]:
    """(busy CPU seconds of the machine from /proc/stat, NaN off Linux; CPU seconds of
    this process; wall seconds) now."""
    own = os.times()
    try:
        with open("/proc/stat") as fh:
            ticks = [int(x) for x in fh.readline().split()[1:]]
        busy = (sum(ticks[:8]) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError):
        busy = float("nan")
    return busy, own.user + own.system, time.perf_counter()


def _others(since: tuple[float, float, float]) -> float:
    """Cores that other processes kept busy since ``since`` (a ``_cpu()``), on average."""
    now = _cpu()
    return (now[0] - since[0] - (now[1] - since[1])) / (now[2] - since[2])


# -- main ----------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/batching.py",
        description=__doc__,
        epilog=EXPLAIN,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = parser.add_argument
    add("--items", type=int, help="items per timed operator (96; quick: 8)")
    add("--batch-sizes", help="comma-separated batch sizes B (1,8,32; quick: 1,4)")
    add("--kinds", default=",".join(WORKLOADS), help="kinds to measure (%(default)s)")
    add("--redis-url", help="a real Redis (redis://...); default: the embedded store")
    add("--warmup-s", type=float, help=f"warm-up seconds per timing ({WARMUP_S:g}; quick: 0.1)")
    add("--repeat", type=int, default=1, help="runs of each figure, the fastest kept (1)")
    add("--threads", type=int, help="torch intra-op threads (default: torch's, one per core)")
    add("--csv", type=Path, default=RESULTS, help=f"results file ({RESULTS})")
    add("--quick", action="store_true", help="smoke sizes: 8 items, B in 1,4")
    args = parser.parse_args(argv)
    args.items = args.items or (8 if args.quick else 96)
    if args.warmup_s is None:
        args.warmup_s = 0.1 if args.quick else WARMUP_S
    try:
        sizes = args.batch_sizes or ("1,4" if args.quick else "1,8,32")
        args.batch_sizes = [int(b) for b in sizes.split(",")]
    except ValueError:
        parser.error("--batch-sizes takes integers separated by commas, e.g. 1,8,32")
    args.kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    if unknown := [k for k in args.kinds if k not in WORKLOADS]:
        parser.error(f"unknown kind(s) {unknown}; choose from {', '.join(WORKLOADS)}")
    if min([args.items, args.repeat, *args.batch_sizes, args.threads or 1]) < 1:
        parser.error("--items, --repeat, --threads and every batch size must be at least 1")
    if args.redis_url and args.redis_url.startswith("memory:"):
        parser.error("--redis-url names a real Redis server; leave it out for the embedded store")
    args.store_url = args.redis_url or "memory://"
    return args


async def amain(args: argparse.Namespace, console: Console) -> int:
    start = _cpu()
    await asyncio.sleep(0 if args.quick else 1.0)
    if not args.quick and (others := _others(start)) > 0.2:
        console.print(f"[yellow]warning: other processes keep {others:.1f} cores busy[/yellow]")
    if uneven := [b for b in args.batch_sizes if args.items % b]:
        console.print(f"note: {args.items} items are not a multiple of {uneven}")
    scratch = Path(tempfile.mkdtemp(prefix="flowmesh-bench-batching-"))
    if not args.redis_url:  # the embedded store, in a state directory of the run's own
        os.environ["FLOWMESH_STATE_DIR"] = str(scratch / "state")
    probe = Store.open(args.store_url, "fmbench-probe")
    try:
        header = machine_header(args, await probe.server_version())
    finally:
        await probe.aclose()
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    quiet = not console.is_terminal
    progress = Progress(*columns, TimeElapsedColumn(), console=console, disable=quiet)
    start = _cpu()
    try:
        with progress:
            rows = await measure(args, progress, scratch)
    finally:
        if not args.redis_url:
            EmbeddedServer(scratch / "state").stop(force=True)
        shutil.rmtree(scratch, ignore_errors=True)
    header["load average at end"] = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    header["other processes' CPU during the run"] = f"{_others(start):.2f} cores"
    show(console, header, rows, args.items)
    write_csv(args.csv, header, rows)
    console.print(f"wrote {args.csv}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # workers never download; say so to the hub
    args = parse_args(argv)
    console = Console()
    if not console.is_terminal:  # a log or a pipe: wide enough that rows stay one line
        console = Console(width=170)
    return asyncio.run(amain(args, console))


if __name__ == "__main__":
    sys.exit(main())
