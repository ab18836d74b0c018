"""The demo from start to end: build the models, start every fabric, run shared, run each
tenant alone, report.

All fabrics are real processes (``fabric``): the shared one is a control plane and two
worker processes, each tenant's own is a control plane and one worker process, all on
one embedded store made for the demo (a temporary state directory), each fabric under a
key prefix and blob directory of its own. They all start before anything is measured;
then the shared run goes, then each tenant alone, one after another. Both are measured
the same way (``/v1/stats``, lineage, each worker process's CPU time), so their ratio is
measured, not assumed.

On a CPU, torch's thread count is set (per process, through OMP_NUM_THREADS) so that
every worker computes with the same share of the cores in every run: the two shared
workers split the cores, and a lone worker gets one worker's share. Otherwise a lone
worker would have the whole machine to itself, and the comparison would be between
machines of different sizes.

``run_demo`` returns figures and uses the console only for the live view; ``main`` is
what ``flowmesh demo`` calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path

from rich.console import Console

from flowmesh_core.settings import Settings
from flowmesh_worker.assemble import model_dir
from flowmesh_worker.demo.fabric import FabricPlan, WorkerSpec, open_fabrics
from flowmesh_worker.demo.results import DemoOptions, DemoResult, RunResult
from flowmesh_worker.demo.session import LATE_TENANT, DemoInterrupted, Session
from flowmesh_worker.demo.warmup import Warmup, warm_up
from flowmesh_worker.demo.workload import plan_tenants
from flowmesh_worker.profile import HARDWARE, Hardware

__all__ = [
    "DemoInterrupted",
    "cpu_threads_per_worker",
    "logs_to",
    "main",
    "run_demo",
    "worker_specs",
]

SECOND_WORKER_MARKUP = 1.5  # the second worker declares 50% more $/h and W than the first


def worker_specs(hardware: Hardware) -> list[WorkerSpec]:
    """The shared run's two workers: the hardware's list price and power, and one dearer."""
    price, watts = HARDWARE.get(hardware.accelerator, (1.0, 300.0))
    name = hardware.accelerator.lower().replace(" ", "-")
    markup = SECOND_WORKER_MARKUP
    return [
        WorkerSpec(f"{name}-1", price, watts),
        WorkerSpec(f"{name}-2", round(price * markup, 4), round(watts * markup, 1)),
    ]


def cpu_threads_per_worker(hardware: Hardware, workers: int) -> int | None:
    """Torch threads per worker on a CPU: the cores split evenly between ``workers``
    (None on an accelerator, where torch's CPU threads hardly matter)."""
    if hardware.device != "cpu":
        return None
    return max(1, (os.cpu_count() or 1) // workers)


async def run_demo(
    options: DemoOptions,
    settings: Settings,
    warmup: Warmup,
    *,
    console: Console,
    interrupt: asyncio.Event | None = None,
) -> DemoResult:
    """Start the fabrics, run shared, then (unless turned off) each tenant alone."""
    plans = plan_tenants(options.per_tenant)
    specs = worker_specs(warmup.hardware)
    threads = cpu_threads_per_worker(warmup.hardware, len(specs))
    teams = [p.name for p in plans]
    fabrics = [FabricPlan("demo-shared", specs, [*teams, LATE_TENANT])]
    if options.isolated:
        for team in teams:
            lone = WorkerSpec(f"{specs[0].worker_id}-{team}", *_price(specs[0]))
            fabrics.append(FabricPlan(f"demo-{team}", [lone], [team]))
    session = Session(options, console, interrupt)
    with _scratch("flowmesh-demo-") as scratch:
        blobs = [options.keep_blobs or scratch / "blobs-shared"]
        blobs += [scratch / f"blobs-{f.name}" for f in fabrics[1:]]
        for path in blobs:
            path.mkdir(parents=True, exist_ok=True)
        starting = console.status(
            f"Starting {len(fabrics)} control plane(s) and "
            f"{sum(len(f.workers) for f in fabrics)} worker processes"
        )
        starting.start()
        try:
            async with open_fabrics(
                settings, scratch / "state", blobs, fabrics, threads=threads, logs=scratch / "logs"
            ) as running:
                starting.stop()
                shared, late, sample = await session.shared(running[0], plans)
                isolated: list[RunResult] = []
                if not shared.failed:
                    for fabric, plan in zip(running[1:], plans, strict=False):
                        isolated.append(await session.alone(fabric, plan))
        finally:
            starting.stop()
    return DemoResult(options, warmup, shared, isolated, late, sample, threads, os.getpid())


def _price(spec: WorkerSpec) -> tuple[float, float]:
    return spec.price_per_hour, spec.watts


@contextlib.contextmanager
def _scratch(prefix: str) -> Iterator[Path]:
    """A temporary directory, removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# -- the command ------------------------------------------------------------------------


def main(options: DemoOptions, settings: Settings, console: Console) -> DemoResult:
    """Warm up, run the demo with Ctrl-C handled, print the report; the figures.

    Raises ``DemoInterrupted`` after a clean stop on Ctrl-C / SIGTERM (a second Ctrl-C
    stops at once), ``KeyboardInterrupt`` when it arrives during the warm-up.
    """
    from flowmesh_worker.demo.report import print_intro, print_summary

    plans = plan_tenants(options.per_tenant)  # a bad --prompts fails before the warm-up
    with console.status("Getting ready: detecting the hardware, building the tiny models"):
        warmup = warm_up(model_dir(settings))
    specs = worker_specs(warmup.hardware)
    print_intro(console, warmup, plans, specs, cpu_threads_per_worker(warmup.hardware, 2))
    result = asyncio.run(_main(options, settings, warmup, console))
    print_summary(console, result)
    return result


async def _main(
    options: DemoOptions, settings: Settings, warmup: Warmup, console: Console
) -> DemoResult:
    loop = asyncio.get_running_loop()
    interrupt = asyncio.Event()
    signals = (signal.SIGINT, signal.SIGTERM)

    def on_signal() -> None:
        interrupt.set()
        for sig in signals:
            loop.remove_signal_handler(sig)  # a second one stops at once

    with contextlib.suppress(NotImplementedError):  # no loop signal handlers on Windows
        for sig in signals:
            loop.add_signal_handler(sig, on_signal)
    try:
        return await run_demo(options, settings, warmup, console=console, interrupt=interrupt)
    finally:
        with contextlib.suppress(NotImplementedError):
            for sig in signals:
                loop.remove_signal_handler(sig)


@contextlib.contextmanager
def logs_to(console: Console, verbose: bool) -> Iterator[None]:
    """FlowMesh's logs through ``console``, so they print above the live view instead of
    through it: INFO and up with ``verbose``, else warnings and errors only."""
    from rich.logging import RichHandler

    logger = logging.getLogger("flowmesh")
    handler = RichHandler(console=console, show_path=False, log_time_format="[%X]")
    saved = (logger.level, logger.propagate)
    logger.addHandler(handler)
    logger.propagate = False
    if verbose:
        logger.setLevel(logging.INFO)
    elif logger.getEffectiveLevel() < logging.WARNING:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(saved[0])
        logger.propagate = saved[1]
