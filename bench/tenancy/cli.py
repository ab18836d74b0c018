"""The command: options, Redis check, scratch space, worker pool, run, report, clean-up.

Exit status 0 when the run completed, 1 when it failed (one line says why), 2 for the
user's mistakes (a bad option, a Redis that does not answer), 130 on Ctrl-C or SIGTERM.
However it ends, the workers are stopped (SIGTERM, then SIGKILL), the key prefix is
purged and the scratch directory removed. ``FLOWMESH_*`` variables are ignored: the
benchmark sets every setting it uses, for itself and for its workers.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import os
import shutil
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from importlib.metadata import version
from pathlib import Path
from types import FrameType

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from bench.tenancy.errors import BenchError, UsageError
from bench.tenancy.options import Options, parse_options
from bench.tenancy.report import Pricing, show, write_csv, write_png
from bench.tenancy.session import Board, measure, training_variants
from bench.tenancy.training import GROUP_SIZE
from bench.tenancy.training import MAX_NEW_TOKENS as TRAINING_TOKENS
from bench.tenancy.variants import VariantResult
from bench.tenancy.workers import ONE_THREAD, WorkerPool
from flowmesh_core.errors import FlowMeshError
from flowmesh_core.settings import Settings
from flowmesh_core.store import Store
from flowmesh_worker.assemble import model_dir

__all__ = ["main"]

PROG = "bench/multitenant.py"


def main(argv: Sequence[str] | None = None, description: str = "") -> int:
    """Run the benchmark; the exit status (see the module docstring)."""
    for name in [k for k in os.environ if k.startswith("FLOWMESH_")]:
        del os.environ[name]
    os.environ.update(ONE_THREAD)  # before torch is imported: one thread, as the workers
    console = Console() if sys.stdout.isatty() else Console(width=200)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        options = parse_options(argv, description)
        return _run(options, console)
    except UsageError as exc:
        console.print(f"{PROG}: error: {exc}", markup=False, highlight=False, soft_wrap=True)
        return 2
    except (BenchError, FlowMeshError) as exc:
        console.print(f"{PROG}: failed: {exc}", markup=False, highlight=False, soft_wrap=True)
        return 1
    except KeyboardInterrupt:
        console.print(f"{PROG}: interrupted; workers stopped, key prefix purged")
        return 130


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # SIGTERM cleans up as Ctrl-C does


def _run(options: Options, console: Console) -> int:
    redis_version = asyncio.run(_probe(options.redis_url))
    run_id = uuid.uuid4().hex[:8]
    prefix = f"fmbench-{run_id}"
    scratch = Path(tempfile.mkdtemp(prefix="flowmesh-bench-multitenant-"))
    models = model_dir(Settings())
    settings = Settings(
        redis_url=options.redis_url, key_prefix=prefix, blob_url=f"file://{scratch / 'blobs'}",
        worker_model_dir=str(models),
    )  # fmt: skip
    env = {
        "FLOWMESH_REDIS_URL": options.redis_url,
        "FLOWMESH_KEY_PREFIX": prefix,
        "FLOWMESH_BLOB_URL": settings.blob_url,
        "FLOWMESH_WORKER_MODEL_DIR": str(models),
        "FLOWMESH_WORKER_TTL_S": "6",  # a heartbeat every 2 s (not 5): warm models show sooner
    }
    machine = _Machine()
    if not options.quick and (others := machine.others(1.0)) > 0.3:
        console.print(f"[yellow]warning: other processes keep {others:.1f} cores busy[/yellow]")
    steps = len(options.overlaps) * len(options.variants) if "data" in options.stages else 0
    steps += len(training_variants(options)) if "training" in options.stages else 0
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    quiet = not console.is_terminal
    progress = Progress(*columns, TimeElapsedColumn(), console=console, disable=quiet)
    try:
        with WorkerPool(options.workers, env, scratch / "logs", run_id) as pool, progress:
            board = Board.open(progress, steps)
            header = _header(options, redis_version, prefix, scratch)
            results, pricing = asyncio.run(measure(options, settings, pool, board, models))
            header.update(machine.since(pool))
    finally:
        with contextlib.suppress(FlowMeshError):
            asyncio.run(_purge(options.redis_url, prefix))
        shutil.rmtree(scratch, ignore_errors=True)
    _report(console, options, header, results, pricing)
    return 0


def _report(
    console: Console,
    options: Options,
    header: dict[str, str],
    results: list[VariantResult],
    pricing: Pricing,
) -> None:
    header["workers declare"] = f"${pricing.price_per_hour:g}/h, {pricing.watts:g} W each"
    console.print(", ".join(f"{k}: {v}" for k, v in header.items()), highlight=False)
    show(console, results, pricing)
    write_csv(options.csv, header, results, pricing)
    title = (f"{options.tenants} tenants x {options.prompts} prompts, {options.workers} "
             f"worker(s), {header['nproc']} cores, {header['date']}")  # fmt: skip
    write_png(options.png, results, pricing, title)
    plot = (
        f" and {options.png}"
        if "data" in options.stages
        else " (no plot: the data stage did not run)"
    )
    console.print(f"wrote {options.csv}{plot}")


async def _probe(url: str) -> str:
    store = Store.open(url, "fmbench-probe")
    try:
        await store.ping()
        await store.check_capabilities()
        return await store.server_version()
    except FlowMeshError as exc:
        cause = exc.__cause__ or exc
        raise UsageError(
            f"no usable Redis at {store.shown_url} ({cause}); start one, or pass --redis-url"
        ) from exc
    finally:
        await store.aclose()


async def _purge(url: str, prefix: str) -> None:
    store = Store.open(url, prefix)
    try:
        await store.purge()
    finally:
        await store.aclose()


def _header(options: Options, redis_version: str, prefix: str, scratch: Path) -> dict[str, str]:
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "nproc": str(os.cpu_count()),
        "load average at start": ", ".join(f"{x:.2f}" for x in os.getloadavg()),
        "redis": f"{redis_version}, key prefix {prefix} (purged at the end)",
        "python": sys.version.split()[0],
        "torch": f"{version('torch')}, 1 thread per worker and in the oracle",
        "options": _options_line(options),
        "blobs": f"file:// in {scratch} (fsync per blob)",
    }


def _options_line(o: Options) -> str:
    data = (
        f"data stage: tenants {o.tenants}, prompts {o.prompts} per tenant, overlaps "
        f"{','.join(map(str, o.overlaps))}, max_new_tokens {o.max_new_tokens}, variants "
        f"{','.join(o.variants)}, oracle batch sizes {','.join(map(str, o.oracle_sizes))}"
    )
    training = (
        f"training stage: tenants {o.tenants} in groups of {GROUP_SIZE}, prompts "
        f"{o.training_prompts} per tenant, max_new_tokens {TRAINING_TOKENS}, variants "
        f"{','.join(training_variants(o))}"
    )
    stages = [text for stage, text in (("data", data), ("training", training))
              if stage in o.stages]  # fmt: skip
    workers = f"workers {o.workers} (1 slot, max_batch 64)"
    return "; ".join([workers, *stages]) + (", quick" if o.quick else "")


class _Machine:
    """CPU the rest of the machine used during the run: all busy CPU time (/proc/stat)
    minus this process's and the workers'."""

    def __init__(self) -> None:
        self.start = self._busy(), time.process_time(), time.monotonic(), self._steal()

    @staticmethod
    def _ticks() -> list[int]:
        with open("/proc/stat") as fh:
            return [int(x) for x in fh.readline().split()[1:]]

    def _busy(self) -> float:
        ticks = self._ticks()
        return (sum(ticks[:8]) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")

    def _steal(self) -> float:
        """CPU seconds the hypervisor took from this machine (0 on bare metal)."""
        return self._ticks()[7] / os.sysconf("SC_CLK_TCK")

    def others(self, seconds: float) -> float:
        """Cores other processes keep busy, over ``seconds`` from now (this one sleeps)."""
        busy, own, wall = self._busy(), time.process_time(), time.monotonic()
        time.sleep(seconds)
        used = self._busy() - busy - (time.process_time() - own)
        return used / (time.monotonic() - wall)

    def since(self, pool: WorkerPool) -> dict[str, str]:
        busy, own, wall = self._busy(), time.process_time(), time.monotonic()
        others = busy - self.start[0] - (own - self.start[1]) - pool.cpu_seconds()
        return {
            "load average at end": ", ".join(f"{x:.2f}" for x in os.getloadavg()),
            "other processes' CPU during the run": (
                f"{others / (wall - self.start[2]):.2f} cores on average (Redis included)"
            ),
            "CPU stolen by the hypervisor during the run": (
                f"{(self._steal() - self.start[3]) / (wall - self.start[2]):.3f} cores on average"
            ),
        }
