"""The command: options, the cluster, a warm-up, the timed load, the report, the clean-up.

Exit status 0 when every accepted workflow finished, 1 when one failed or was lost or the
run went wrong (one line says why), 2 for the user's mistakes (a bad option, a Redis that
does not answer), 130 on Ctrl-C or SIGTERM. However it ends, the processes it started
are stopped, its key prefix purged and its scratch directory removed. ``FLOWMESH_*``
variables are ignored (but ``FLOWMESH_TOKEN`` with ``--url``): the run sets every setting
its processes use.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import os
import random
import signal
import sys
import time
from collections.abc import Callable, Sequence
from types import FrameType

from rich.console import Console

from bench.loadrun.clients import Budget, Target, read_stats, run_clients
from bench.loadrun.cluster import LocalCluster, cpu_seconds, machine_busy_seconds, redis_calls
from bench.loadrun.options import BenchError, Options, UsageError, parse_options
from bench.loadrun.report import Measured, Summary, show, summarise, write_json
from bench.loadrun.workload import Workload
from flowmesh_core.errors import FlowMeshError

__all__ = ["main"]

PROG = "bench/load.py"
WARMUP_WORKFLOWS = 8
WARMUP_TIMEOUT_S = 60.0


def main(argv: Sequence[str] | None = None, description: str = "") -> int:
    """Run the load; the exit status (see the module docstring)."""
    console = Console() if sys.stdout.isatty() else Console(width=160)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        options = parse_options(argv, description)
        for name in [k for k in os.environ if k.startswith("FLOWMESH_")]:
            del os.environ[name]
        summary = _run(options, console)
    except UsageError as exc:
        console.print(f"{PROG}: error: {exc}", markup=False, highlight=False, soft_wrap=True)
        return 2
    except (BenchError, FlowMeshError) as exc:
        console.print(f"{PROG}: failed: {exc}", markup=False, highlight=False, soft_wrap=True)
        return 1
    except KeyboardInterrupt:
        console.print(f"{PROG}: interrupted; processes stopped, key prefix purged")
        return 130
    return 0 if summary.all_finished else 1


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # SIGTERM cleans up as Ctrl-C does


def _say(line: str) -> None:
    print(line, flush=True)


def _run(options: Options, console: Console) -> Summary:
    nonce = options.seed if options.seed is not None else random.getrandbits(48)
    workload = Workload(nonce, options.records, options.overlap, options.pool)
    setup = _setup(options, nonce)
    if options.url is not None:
        assert options.token is not None  # parse_options saw to it
        targets = [Target(options.url, options.token)] * options.clients
        measured = asyncio.run(_load(options, workload, targets, lambda: {}, None))
        summary = summarise(measured, setup)
    else:
        with LocalCluster(options, _say) as local:
            setup["redis"] = f"{local.redis_version}, key prefix {local.prefix} (purged at the end)"
            setup["api"] = ", ".join(local.urls)
            targets = [
                Target(local.urls[i % len(local.urls)], local.tokens[i % len(local.tokens)])
                for i in range(options.clients)
            ]
            load = _load(options, workload, targets, _clocks(local), options.redis_url)
            measured = dataclasses.replace(asyncio.run(load), replicas=len(local.urls))
            summary = summarise(measured, setup)
            if not summary.all_finished:
                console.print(local.tails(), highlight=False, markup=False, soft_wrap=True)
    show(console, summary)
    if options.json is not None:
        write_json(options.json, summary)
        console.print(f"wrote {options.json}", highlight=False)
    return summary


def _setup(options: Options, nonce: int) -> dict[str, object]:
    bound = f", at most {options.max_workflows} workflows" if options.max_workflows else ""
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "nproc": os.cpu_count(),
        "load average at start": ", ".join(f"{x:.2f}" for x in os.getloadavg()),
        "clients": options.clients,
        "bound": f"{options.duration_s:g} s of submitting{bound}",
        "api replicas": options.api_replicas if options.url is None else f"--url {options.url}",
        "workers": options.workers if options.url is None else "(existing server)",
        "tenants": options.tenants if options.url is None else "(--token)",
        "workflow": f"data.template({options.records} records) -> data.dedup -> data.template",
        "overlap": f"{options.overlap:g} of records from a pool of {options.pool}",
        "log level": options.log_level,
        "seed": nonce,
    }


CpuClocks = Callable[[], dict[str, float | None]]


def _clocks(local: LocalCluster) -> CpuClocks:
    """CPU seconds so far of each serve replica, the workers (summed) and redis-server."""

    def read() -> dict[str, float | None]:
        clocks: dict[str, float | None] = {}
        for index, pid in enumerate(local.serve_pids, 1):
            role = "scheduler + API" if index == 1 else "API only"
            clocks[f"serve {index} ({role})"] = cpu_seconds(pid)
        workers = [cpu_seconds(pid) for pid in local.worker_pids]
        clocks[f"workers ({len(workers)})"] = (
            None if None in workers else sum(w for w in workers if w is not None)
        )
        clocks["redis-server"] = None if local.redis_pid is None else cpu_seconds(local.redis_pid)
        return clocks

    return read


async def _load(
    options: Options,
    workload: Workload,
    targets: list[Target],
    clocks: CpuClocks,
    redis_url: str | None,
) -> Measured:
    """Warm up, then the timed load: its outcomes, and the CPU, fabric and Redis counters
    over it (Redis' only when ``redis_url`` is given)."""
    await _warm_up(targets, workload)
    _say(f"load: {len(targets)} clients for {options.duration_s:g} s ...")
    stats = await read_stats(targets[0])
    calls = await redis_calls(redis_url) if redis_url else {}
    before, own, busy = clocks(), time.process_time(), machine_busy_seconds()
    started = time.monotonic()
    budget = Budget(started + options.duration_s, options.max_workflows)
    tally = await run_clients(
        targets, workload, budget, options.drain_timeout_s, options.progress_s, _say
    )
    wall = time.monotonic() - started
    after = clocks()
    cpu: dict[str, float | None] = {}
    for name, end in after.items():
        begin = before.get(name)
        cpu[name] = None if end is None or begin is None else end - begin
    cpu["load generator (this process)"] = time.process_time() - own
    machine = machine_busy_seconds() - busy
    cpu["other processes"] = machine - sum(s for s in cpu.values() if s is not None)
    cpu[f"whole machine ({os.cpu_count()} cores)"] = machine
    after_stats = await read_stats(targets[0])
    fabric = {name: after_stats[name] - stats[name] for name in stats}
    after_calls = await redis_calls(redis_url) if redis_url else {}
    commands = {name: n - calls.get(name, 0.0) for name, n in after_calls.items()}
    return Measured(tally.outcomes, cpu, wall, fabric, commands)


async def _warm_up(targets: list[Target], workload: Workload) -> None:
    """A few workflows through every replica, untimed: imports and first batches paid."""
    unique = {t.url: t for t in targets}
    picked = [list(unique.values())[i % len(unique)] for i in range(WARMUP_WORKFLOWS)]
    _say(f"warm-up: {len(picked)} workflows ...")
    warm = Workload(workload.nonce ^ 0x5A5A, workload.records)
    budget = Budget(time.monotonic() + WARMUP_TIMEOUT_S, len(picked))
    tally = await run_clients(picked, warm, budget, WARMUP_TIMEOUT_S, WARMUP_TIMEOUT_S, _say)
    bad = [o for o in tally.outcomes if o.state != "done"]
    if bad:
        raise BenchError(
            f"{len(bad)} of {len(tally.outcomes)} warm-up workflows did not finish; the first: "
            f"{bad[0].state} ({bad[0].error or 'no error given'})"
        )
