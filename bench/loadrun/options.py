"""The command line: options, their defaults (full and ``--quick``), and what each figure means.

A bad option is a ``UsageError`` (one line, exit status 2), never argparse's usage dump.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

__all__ = ["EXPLAIN", "BenchError", "Options", "UsageError", "parse_options"]

EXPLAIN = """\
the load: C clients (asyncio, one httpx.AsyncClient and connection each, spread round-robin
over the API replicas and the tenants). Each client, in a closed loop: POST /v1/workflows a
three-node workflow of data.* kinds (data.template over R records -> data.dedup ->
data.template; no model), then GET /v1/workflows/{id}/wait until it is done or failed,
then the next. It stops submitting after --duration s or --max-workflows submissions in
all, whichever comes first, and gives what is in flight up to --drain-timeout s.

figures:
  submitted     POSTs sent; accepted: answered 200/201 with a workflow id; rejected: any
                other answer or a transport error (counted, never retried)
  finished      accepted workflows whose wait answered state "done"
  failed        accepted workflows whose wait answered state "failed"
  lost          accepted workflows that were neither when the drain timeout ran out
  workflows/s   finished / wall time (first POST -> last done)
  submit        POST round trip, ms (p50/p95/p99 over accepted workflows)
  submit->done  before the POST -> the wait's answer, ms, as the client sees it
  server        the workflow's created_at -> finished_at (the control plane's clock), ms
  via serve N   with --api-replicas above 1: submit and submit->done of the clients that
                replica N served (replica 1 also runs the scheduler and the applier)
  items         what the submit plans said of the first node's items: created, cache
                hits, joined (with --overlap 0 every item is created)
  executed, batches, mean size
                items the workers ran (every node) and the batches they ran them in: the
                differences of GET /v1/stats across the timed phase
  worker busy   the batch seconds the workers report (stats worker_seconds) per wall second;
                W = every worker always in a batch. What they include is the fabric's
                definition: the run of a batch, not the writing of its results to the CAS
  CPU (cores)   CPU seconds / wall seconds of the timed phase, from /proc/PID/stat: each
                serve replica, the workers, redis-server (when its /proc entry is visible)
                and this load generator. Near 1.0 for a single-threaded process (a serve
                replica) says that process is the bound; a sum near the machine's cores
                says the machine is. "other processes": the machine's busy time (/proc/stat)
                less every process above (Redis too when its pid is not visible here).
                CPU ms / workflow: the same CPU seconds per finished workflow, the figure
                that moves least when other load slows the run down.
  Redis commands / workflow
                INFO commandstats across the timed phase, per finished workflow: the total
                and the busiest commands. evalsha is a Lua script called; the commands a
                script runs are counted too, so this is not round trips. It counts every
                client of the server: share the server with nothing else when you read it.

exit status: 0 when every accepted workflow finished, 1 when one failed or was lost (or
the run went wrong: one line says why), 2 for a bad option or no Redis, 130 on Ctrl-C.
"""


class BenchError(Exception):
    """The run went wrong (a process died, nothing answered): exit status 1, one line."""


class UsageError(BenchError):
    """The user asked for something that cannot run (a bad option, no Redis): status 2."""


@dataclass(frozen=True)
class Options:
    """What one run does."""

    clients: int
    duration_s: float
    max_workflows: int | None
    api_replicas: int
    workers: int
    tenants: int
    records: int
    overlap: float
    pool: int
    url: str | None
    token: str | None
    redis_url: str
    log_level: str
    drain_timeout_s: float
    progress_s: float
    seed: int | None
    json: Path | None
    quick: bool


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see --help)")


def _parser(description: str) -> argparse.ArgumentParser:
    parser = _Parser(
        prog="bench/load.py",
        description=description,
        epilog=EXPLAIN,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = parser.add_argument
    add("--clients", type=int, help="concurrent clients (default 100; --quick 10)")
    add(
        "--duration", type=float, metavar="S", help="seconds of submitting (default 60; --quick 10)"
    )
    add(
        "--max-workflows",
        type=int,
        metavar="N",
        help="stop submitting after N workflows in all (default: no count bound)",
    )
    add(
        "--api-replicas",
        type=int,
        default=1,
        metavar="K",
        help="`flowmesh serve` processes behind the same Redis: the first runs the scheduler, "
        "the others `--no-scheduler`; clients spread round-robin (default 1)",
    )
    add("--workers", type=int, default=2, help="`flowmesh worker` processes (default 2)")
    add(
        "--tenants",
        type=int,
        default=4,
        help="tenants the clients are spread over, round-robin (default 4)",
    )
    add("--records", type=int, default=3, help="records per workflow (default 3)")
    add(
        "--overlap",
        type=float,
        default=0.0,
        metavar="O",
        help="share of records drawn from a pool every client shares, 0..1 (default 0: every "
        "item is new work)",
    )
    add("--pool", type=int, default=16, help="size of that shared pool (default 16)")
    add(
        "--url",
        help="load an existing server at this URL instead of starting a cluster "
        "(needs --token or FLOWMESH_TOKEN; no CPU figures then)",
    )
    add("--token", help="a tenant token for --url")
    add(
        "--redis-url",
        default="redis://127.0.0.1:6379/0",
        help="the Redis for the local cluster (default redis://127.0.0.1:6379/0)",
    )
    add(
        "--log-level",
        default="info",
        choices=("debug", "info", "warning", "error"),
        help="the cluster's log level, as `flowmesh up --log-level` (default info: uvicorn "
        "writes an access-log line per request, as `flowmesh up` does)",
    )
    add(
        "--drain-timeout",
        type=float,
        default=60.0,
        metavar="S",
        help="seconds the workflows in flight get after submitting stops (default 60)",
    )
    add(
        "--progress",
        type=float,
        metavar="S",
        help="seconds between progress lines (default 5; --quick 2)",
    )
    add(
        "--seed",
        type=int,
        help="the run's nonce: the same seed submits the same records "
        "(default: random, so no run gets another's cache hits)",
    )
    add("--json", type=Path, metavar="PATH", help="write the figures to PATH as JSON")
    add("--quick", action="store_true", help="10 clients for 10 s: the smoke test")
    return parser


def parse_options(argv: Sequence[str] | None, description: str) -> Options:
    """The options, checked; raises UsageError naming what to fix."""
    args = _parser(description).parse_args(argv)
    quick = bool(args.quick)
    token = args.token or (os.environ.get("FLOWMESH_TOKEN") if args.url else None)
    options = Options(
        clients=args.clients if args.clients is not None else (10 if quick else 100),
        duration_s=args.duration if args.duration is not None else (10.0 if quick else 60.0),
        max_workflows=args.max_workflows,
        api_replicas=args.api_replicas,
        workers=args.workers,
        tenants=args.tenants,
        records=args.records,
        overlap=args.overlap,
        pool=args.pool,
        url=args.url.rstrip("/") if args.url else None,
        token=token,
        redis_url=args.redis_url,
        log_level=args.log_level,
        drain_timeout_s=args.drain_timeout,
        progress_s=args.progress if args.progress is not None else (2.0 if quick else 5.0),
        seed=args.seed,
        json=args.json,
        quick=quick,
    )
    _check(options)
    return options


def _check(o: Options) -> None:
    bounds = [
        ("--clients", o.clients, 1, 10_000),
        ("--api-replicas", o.api_replicas, 1, 16),
        ("--workers", o.workers, 1, 64),
        ("--tenants", o.tenants, 1, 1000),
        ("--records", o.records, 1, 1000),
        ("--pool", o.pool, 1, 1_000_000),
    ]
    for flag, value, low, high in bounds:
        if not low <= value <= high:
            raise UsageError(f"{flag} {value} is out of range: give {low} to {high}")
    if o.duration_s <= 0 or o.drain_timeout_s <= 0 or o.progress_s <= 0:
        raise UsageError("--duration, --drain-timeout and --progress must be above 0 seconds")
    if o.max_workflows is not None and o.max_workflows < 1:
        raise UsageError(f"--max-workflows {o.max_workflows} must be at least 1")
    if not 0.0 <= o.overlap <= 1.0:
        raise UsageError(f"--overlap {o.overlap} is a share: give 0 to 1 (0.25 for 25 %)")
    if o.url is not None:
        if not o.token:
            raise UsageError("--url needs a tenant token: pass --token or set FLOWMESH_TOKEN")
        if o.api_replicas != 1:
            raise UsageError("--api-replicas starts replicas; with --url give one URL")
