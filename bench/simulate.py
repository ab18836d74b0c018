"""Cluster simulator: FlowMesh's real scheduler on a simulated heterogeneous GPU fleet.

A discrete-event simulation (``bench/sim/``) of many tenants' post-training pipelines on
H100 / A100 / L40S / L4 workers whose speed comes from a roofline over published specs
(``bench/sim/hardware.py``, every number with its source). The decisions are the
product's: each scheduling round is ``flowmesh_core.control.planning.RoundPlan`` with the
utility policy, a learning ``ThroughputModel`` and the default weights, exactly as
``flowmesh serve`` runs them; only time, workers and the store's semantics are simulated.

Scenarios:
  paper-fixed, paper-ramp, paper-bursty
        32 tenants x 4 workflows x 1,000 prompts (sft / dpo / chain templates over 1B and
        3B models), 50% prompt overlap, over one hour with fixed, ramping or bursty
        arrivals. Every variant: static worker per submission (the baseline), the oracle,
        FlowMesh on on-demand prices (same price list as the baseline) and on marketplace
        prices with 10%/h preemption, FlowMesh with each feature off, and the placement
        baselines (round-robin, cheapest-first, fastest-first, fixed pipeline).
  preemption
        64 tenants x 4 workflows over two hours on marketplace workers, preempted at 0,
        10%, 30% and 100% of workers per hour: is anything lost, and what does it cost?
  autoscaler, autoscaler-bursty
        paper-fixed (paper-bursty) on marketplace prices under a grid of the autoscaler's
        two knobs (drain the backlog within D s; remove a worker idle for I s).
  scale
        a fixed fleet of 1,000 workers (200 each of H100, A100, L40S, L4 and CPU nodes)
        and ~100,000 operators.

Every figure is simulated; none is measured on a GPU. See bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from bench.sim.engine import Engine, Outcome
from bench.sim.report import Row, console, plot, row, table, write_csv
from bench.sim.static import run_oracle, run_static
from bench.sim.variants import ABLATIONS, BASELINES, FLEET_TYPES, FLOWMESH, Dynamics, Variant
from bench.sim.workload import Submission, make_submissions

RESULTS = Path(__file__).resolve().parent / "results"
ALL = (
    "paper-fixed",
    "paper-ramp",
    "paper-bursty",
    "preemption",
    "autoscaler",
    "autoscaler-bursty",
    "scale",
)


@dataclass(frozen=True)
class Size:
    tenants: int
    workflows: int
    prompts: int
    horizon_s: float
    scale_tenants: int
    scale_prompts: int
    scale_fleet: int  # workers of each type


FULL = Size(32, 4, 1000, 3600.0, 100, 310, 200)
QUICK = Size(6, 2, 60, 600.0, 10, 60, 4)

Runner = Callable[[list[Submission], Callable[[int], None]], Outcome]


def _fabric(variant: Variant, dyn: Dynamics, seed: int) -> Runner:
    return lambda subs, tick: Engine(subs, variant, dyn, seed).run(tick)


def paper_runs(seed: int) -> list[tuple[str, Runner]]:
    on_demand = Dynamics()
    market = Dynamics(marketplace=True, preempt_per_hour=0.10)
    runs: list[tuple[str, Runner]] = [
        ("static", lambda subs, tick: run_static(subs)),
        ("oracle", lambda subs, tick: run_oracle(subs)),
        ("oracle-market", lambda subs, tick: run_oracle(subs, price="market")),
        ("oracle-energy", lambda subs, tick: run_oracle(subs, by="energy")),
        ("flowmesh", _fabric(FLOWMESH, on_demand, seed)),
        ("flowmesh-market", _fabric(FLOWMESH, market, seed)),
        ("flowmesh-market, buys by Wh", _fabric(FLOWMESH, replace(market, buy_by="energy"), seed)),
        # ready work only, no next wave: decide() then buys as the rule before the lead did
        ("flowmesh-market, ready only", _fabric(FLOWMESH, replace(market, ahead=False), seed)),
    ]
    runs += [(v.name, _fabric(v, on_demand, seed)) for v in (*ABLATIONS, *BASELINES)]
    return runs


def preemption_runs(seed: int) -> list[tuple[str, Runner]]:
    def market(rate: float) -> Dynamics:
        return Dynamics(marketplace=True, preempt_per_hour=rate)

    return [
        ("static", lambda subs, tick: run_static(subs)),
        *[
            (f"flowmesh-market {round(r * 100)}%/h", _fabric(FLOWMESH, market(r), seed))
            for r in (0.0, 0.10, 0.30, 1.0)
        ],
    ]


def autoscaler_runs(seed: int) -> list[tuple[str, Runner]]:
    """The autoscaler's two knobs, on marketplace prices with 10%/h preemption."""
    runs: list[tuple[str, Runner]] = [("static", lambda subs, tick: run_static(subs))]
    for drain in (30, 60, 120, 300):
        for idle in (30, 60, 180):
            dyn = Dynamics(marketplace=True, preempt_per_hour=0.10, drain_s=drain, idle_s=idle)
            runs.append((f"drain {drain}s idle {idle}s", _fabric(FLOWMESH, dyn, seed)))
    return runs


def scale_runs(seed: int, per_type: int) -> list[tuple[str, Runner]]:
    """A fixed fleet; no-dedup executes every operator, no-batching decides once per item."""
    dyn = Dynamics(autoscale=False, initial={name: per_type for name in FLEET_TYPES})
    variants = (FLOWMESH, FLOWMESH.without("dedup"), FLOWMESH.without("batching"))
    return [(v.name, _fabric(v, dyn, seed)) for v in variants]


def scenario(
    name: str, size: Size, overlap: float, seed: int
) -> tuple[list[Submission], list[tuple[str, Runner]]]:
    if name.startswith("paper-"):
        subs = make_submissions(
            tenants=size.tenants,
            workflows_per_tenant=size.workflows,
            prompts=size.prompts,
            overlap=overlap,
            arrival=name.removeprefix("paper-"),
            horizon_s=size.horizon_s,
            seed=seed,
        )
        return subs, paper_runs(seed)
    if name == "preemption":
        subs = make_submissions(
            tenants=2 * size.tenants,
            workflows_per_tenant=size.workflows,
            prompts=size.prompts,
            overlap=overlap,
            arrival="fixed",
            horizon_s=2 * size.horizon_s,
            seed=seed,
        )
        return subs, preemption_runs(seed)
    if name.startswith("autoscaler"):
        subs = make_submissions(
            tenants=size.tenants,
            workflows_per_tenant=size.workflows,
            prompts=size.prompts,
            overlap=overlap,
            arrival="bursty" if name.endswith("bursty") else "fixed",
            horizon_s=size.horizon_s,
            seed=seed,
        )
        return subs, autoscaler_runs(seed)
    subs = make_submissions(
        tenants=size.scale_tenants,
        workflows_per_tenant=1,
        prompts=size.scale_prompts,
        overlap=overlap,
        arrival="bursty",
        horizon_s=size.horizon_s / 6,
        seed=seed,
    )
    return subs, scale_runs(seed, size.scale_fleet)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    names = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = [n for n in names if n not in ALL]
    if unknown:
        print(
            f"error: unknown scenario {', '.join(unknown)}; choose from {', '.join(ALL)}",
            file=sys.stderr,
        )
        return 2
    if not 0.0 <= args.overlap <= 1.0:
        print("error: --overlap must be between 0 and 1 (0.5 = 50%)", file=sys.stderr)
        return 2
    size = QUICK if args.quick else FULL
    out = console()
    rows: list[Row] = []
    for name in names:
        rows += _run_scenario(out, name, size, args.overlap, args.seed)
    write_csv(
        args.csv,
        rows,
        {"scenarios": names, "overlap": args.overlap, "seed": args.seed, "quick": args.quick},
    )
    plot(args.png, rows, [n for n in names if n != "scale"] or names)
    out.print(f"wrote {args.csv} and {args.png}")
    return 0


def _run_scenario(console: Console, name: str, size: Size, overlap: float, seed: int) -> list[Row]:
    subs, runs = scenario(name, size, overlap, seed)
    rows = []
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=True) as progress:
        for label, runner in runs:
            task = progress.add_task(f"{name}: {label}", total=len(subs))
            started = time.perf_counter()
            out = runner(subs, lambda n, task=task: progress.advance(task, n))
            progress.update(task, completed=len(subs))
            rows.append(row(name, label, out, time.perf_counter() - started))
    title = (
        f"{name}: {len(subs)} workflows, {rows[0].requested:,} operators requested, "
        f"{overlap:.0%} prompt overlap"
    )
    console.print(table(title, rows, base="static" if name != "scale" else "flowmesh"))
    if name == "scale":
        for r in rows:
            console.print(
                f"scale, {r.variant}: {r.peak_workers} workers, {r.requested:,} operators "
                f"requested, {r.executed:,} executed in {r.batches:,} batches: simulated in "
                f"{r.sim_wall_s:.1f} s wall"
            )
    return rows


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bench/simulate.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--scenarios",
        default=",".join(ALL),
        help=f"comma-separated, from {', '.join(ALL)} (default: all)",
    )
    parser.add_argument(
        "--overlap",
        type=float,
        default=0.5,
        help="share of each workflow's prompts drawn from the shared pool",
    )
    parser.add_argument("--seed", type=int, default=1, help="workload and preemption seed")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="small sizes (6 tenants, 60 prompts, 20 workers at scale): a smoke test",
    )
    parser.add_argument("--csv", type=Path, default=RESULTS / "simulate.csv")
    parser.add_argument("--png", type=Path, default=RESULTS / "simulate.png")
    return parser


if __name__ == "__main__":
    sys.exit(main())
