"""The demo from start to end: warm up, run shared, run each tenant alone, report.

The shared run starts one control plane and two workers on a fresh embedded store and
blob directory, and has the three tenants submit their overlapping workflows at once.
The isolated run then does the same work the way three separate deployments would: each
tenant alone, one after another, on its own fresh store, blob directory and single cold
worker. Both are measured the same way (``ControlPlane.stats``), so their ratio is
measured, not assumed.

On a CPU, torch's thread count (process-wide) is set so that every worker computes with
the same share of the cores in every run: the two shared workers split the cores, and a
lone worker gets one worker's share. Otherwise a lone worker would have the whole machine
to itself, and the comparison would be between machines of different sizes.

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
from flowmesh_worker.demo.fabric import WorkerSpec
from flowmesh_worker.demo.results import DemoOptions, DemoResult, RunResult
from flowmesh_worker.demo.session import DemoInterrupted, Session
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
    """The shared run, then (unless turned off) the isolated runs; their figures."""
    plans = plan_tenants(options.per_tenant)
    specs = worker_specs(warmup.hardware)
    threads = cpu_threads_per_worker(warmup.hardware, len(specs))
    session = Session(settings, warmup, options, console, interrupt)
    with _torch_threads(threads):
        with _blob_dir(options.keep_blobs) as blobs:
            shared, late, sample = await session.shared(plans, specs, blobs)
        isolated: list[RunResult] = []
        if options.isolated and not shared.failed:
            for plan in plans:
                with _blob_dir(None) as blobs:
                    isolated.append(await session.alone(plan, specs[0], blobs))
    return DemoResult(options, warmup, shared, isolated, late, sample, threads)


@contextlib.contextmanager
def _torch_threads(threads: int | None) -> Iterator[None]:
    """torch's (process-wide) intra-op thread count set to ``threads``, then restored."""
    if threads is None:
        yield
        return
    import torch

    saved = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(saved)


@contextlib.contextmanager
def _blob_dir(keep: Path | None) -> Iterator[Path]:
    """``keep`` (created if needed, left in place), else a temporary directory removed
    afterwards."""
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        yield keep
        return
    path = Path(tempfile.mkdtemp(prefix="flowmesh-demo-blobs-"))
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
    with console.status("Warming up: importing torch and transformers, loading each model once"):
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
