"""The command line: options, their defaults (full and ``--quick``), and what each figure means.

A bad option is a ``UsageError`` (one line, exit status 2), never argparse's usage dump.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from bench.tenancy.errors import UsageError
from bench.tenancy.workload import MAX_NEW_TOKENS, MAX_PROMPTS, MAX_TENANTS

__all__ = ["EXPLAIN", "VARIANTS", "Options", "parse_options"]

RESULTS = Path(__file__).resolve().parents[1] / "results"
VARIANTS = ("isolated", "no-dedup", "no-batching", "flowmesh", "oracle")
STAGES = ("data", "training")
ORACLE_SIZES = (8, 16, 32, 64)

EXPLAIN = """\
variants (one after another, on the same worker processes):
  isolated      each tenant alone: one tenant at a time on one worker (the others marked
                draining), dedup domain = the tenant; nothing shared or batched across
                tenants. Makespan: the longest alone run, as if each tenant had its own
                worker in parallel (said so in the output)
  no-dedup      every tenant at once, every node submitted `dedup: false`
  no-batching   every tenant at once, scheduler_max_batch = 1
  flowmesh      every tenant at once, everything on
  oracle        only the distinct items of each stage across tenants, on the worker's own
                executors in this process, each stage at its best batch size of 8/16/32/64;
                no fabric, no latency ("-")

figures (per variant and overlap; workers' figures are differences across the variant):
  requested     items the tenants asked for, every stage (ControlPlane.stats)
  executed      items the workers ran (the rest: cache hits and joins)
  batches       batches run, and their mean size
  busy s        the workers' time inside batches: inputs read, model, results written to
                the CAS (ControlPlane.stats worker_seconds); oracle: the executor calls
  CPU-s         user+system CPU of the worker processes (/proc/PID/stat), read while
                they are idle right before and after; oracle: the calling thread's CPU
  busy/CPU      busy s / CPU-s: above 1, batches waited (for a core, for an fsync);
                below 1, workers spent CPU outside batches (Redis, polling)
  $ busy        price x busy s (the workers' declared $/h; ControlPlane.stats cost_usd)
  $ CPU         price x CPU-s
  Wh            watts x busy s (ControlPlane.stats energy_wh)
  p50 / p95 s   per-workflow latency, submit -> done (control-plane timestamps)
  makespan s    first submit -> last done (isolated: the longest alone run)

stages:
  data          the post-training data workflow above, at every overlap (the default)
  training      inference -> SFT and inference -> DPO (bench/tenancy/training.py): tenants
                in pairs ask for the same pipeline, the pairs share half their records,
                32 new tokens per generation (not --max-new-tokens); every variant but
                the oracle, after the data stage. Its table adds the training runs
                requested and executed (once per pair under flowmesh, once per tenant
                when isolated or without dedup) and the examples trained per busy
                second of the train.* nodes

ratios: isolated/flowmesh of $ busy, $ CPU, CPU-s and Wh (what sharing saves), and
flowmesh/oracle (what the fabric costs over the unique work alone; target <= 1.2).
Then, per stage, flowmesh against the oracle (items, batches, busy ms per item), what
one result write to the CAS costs here, and the CPU of the control plane (this process)
and of Redis, which no $ includes. The CSV has a row per overlap and variant.
"""


@dataclass(frozen=True)
class Options:
    """What one run measures."""

    tenants: int
    prompts: int
    overlaps: tuple[int, ...]
    workers: int
    variants: tuple[str, ...]
    max_new_tokens: int
    redis_url: str
    csv: Path
    png: Path
    quick: bool
    stages: tuple[str, ...] = ("data",)
    training_prompts: int = 16
    oracle_sizes: tuple[int, ...] = ORACLE_SIZES
    timeout_s: float = 900.0


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see --help)")


def _parser(description: str) -> _Parser:
    parser = _Parser(
        prog="bench/multitenant.py",
        description=description,
        epilog=EXPLAIN,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = parser.add_argument
    add("--tenants", type=int, help="tenants (4; quick: 2)")
    add("--prompts", type=int, help="prompts per tenant (64; quick: 4)")
    add("--overlaps", help="overlap %% between tenants, comma-separated (0,25,50,75; quick: 50)")
    add("--workers", type=int, help="worker processes (2; quick: 1)")
    add("--variants", default=",".join(VARIANTS), help="variants to run (%(default)s)")
    add("--max-new-tokens", type=int, help=f"tokens generated per prompt ({MAX_NEW_TOKENS})")
    add("--redis-url", default="redis://127.0.0.1:6379/0", help="a real Redis (%(default)s)")
    add("--csv", type=Path, default=RESULTS / "multitenant.csv", help="results (%(default)s)")
    add("--png", type=Path, default=RESULTS / "multitenant.png", help="plot (%(default)s)")
    add("--stages", default="data", help="stages to run: data, training or both (%(default)s)")
    add(
        "--training-prompts",
        type=int,
        help="prompts per tenant in the training stage (16; quick: 4)",
    )
    add("--quick", action="store_true", help="smoke sizes: 2 tenants x 4 prompts, 50%%, 1 worker")
    return parser


def parse_options(argv: Sequence[str] | None, description: str) -> Options:
    """The options, validated; raises UsageError naming what to fix."""
    args = _parser(description).parse_args(argv)
    quick = bool(args.quick)

    def given(value: int | None, full: int, smoke: int) -> int:
        return value if value is not None else (smoke if quick else full)

    overlaps = args.overlaps if args.overlaps is not None else ("50" if quick else "0,25,50,75")
    options = Options(
        tenants=given(args.tenants, 4, 2),
        prompts=given(args.prompts, 64, 4),
        overlaps=_integers("--overlaps", overlaps),
        workers=given(args.workers, 2, 1),
        variants=_choices("--variants", args.variants, VARIANTS),
        max_new_tokens=given(args.max_new_tokens, MAX_NEW_TOKENS, MAX_NEW_TOKENS),
        redis_url=args.redis_url,
        csv=args.csv,
        png=args.png,
        quick=quick,
        stages=_choices("--stages", args.stages, STAGES),
        training_prompts=given(args.training_prompts, 16, 4),
    )
    _check(options)
    return options


def _integers(flag: str, text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise UsageError(f"{flag} takes integers separated by commas, e.g. 0,25,50") from None
    if not values:
        raise UsageError(f"{flag} needs at least one value")
    return values


def _choices(flag: str, text: str, allowed: tuple[str, ...]) -> tuple[str, ...]:
    asked = {v.strip() for v in text.split(",") if v.strip()}
    if unknown := sorted(asked - set(allowed)):
        raise UsageError(f"unknown {flag} value(s) {', '.join(unknown)}; choose from {allowed}")
    if not asked:
        raise UsageError(f"{flag} needs at least one of {allowed}")
    return tuple(v for v in allowed if v in asked)  # always in this order


def _check(o: Options) -> None:
    if not 1 <= o.tenants <= MAX_TENANTS:
        raise UsageError(f"--tenants must be between 1 and {MAX_TENANTS}")
    if not 1 <= o.prompts <= MAX_PROMPTS:
        raise UsageError(f"--prompts must be between 1 and {MAX_PROMPTS}")
    if not all(0 <= x <= 100 for x in o.overlaps):
        raise UsageError("--overlaps are percentages between 0 and 100")
    if not 1 <= o.workers <= 16:
        raise UsageError("--workers must be between 1 and 16")
    if not 2 <= o.training_prompts <= MAX_PROMPTS:
        raise UsageError(f"--training-prompts must be between 2 and {MAX_PROMPTS}")
    if o.stages == ("training",) and o.variants == ("oracle",):
        raise UsageError("the training stage has no oracle: add a fabric variant to --variants")
    if not 1 <= o.max_new_tokens <= 512:
        raise UsageError("--max-new-tokens must be between 1 and 512")
    if not o.redis_url.startswith(("redis://", "rediss://", "unix://")):
        raise UsageError(
            f"--redis-url {o.redis_url!r} must name a Redis server (redis://host:port/db): "
            "the workers are separate processes"
        )
