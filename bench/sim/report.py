"""Rows, tables, the CSV and the plot of the simulator's results."""

from __future__ import annotations

import csv
import datetime
import os
import platform
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from bench.sim.engine import Outcome

__all__ = ["Row", "plot", "row", "table", "write_csv"]

FIELDS = (
    "scenario",
    "variant",
    "cost_usd",
    "energy_kwh",
    "p50_s",
    "p95_s",
    "makespan_s",
    "utilisation",
    "requested",
    "executed",
    "shared",
    "batches",
    "mean_batch",
    "peak_workers",
    "preemptions",
    "replanned",
    "lost",
    "unfinished",
    "sim_wall_s",
)


@dataclass(frozen=True)
class Row:
    scenario: str
    variant: str
    cost_usd: float
    energy_kwh: float
    p50_s: float | None
    p95_s: float | None
    makespan_s: float | None
    utilisation: float
    requested: int
    executed: int
    shared: int
    batches: int
    mean_batch: float
    peak_workers: int
    preemptions: int
    replanned: int
    lost: int
    unfinished: int
    sim_wall_s: float


def _quantile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def row(scenario: str, variant: str, out: Outcome, wall_s: float) -> Row:
    usage = out.usage
    return Row(
        scenario=scenario,
        variant=variant,
        cost_usd=usage.usd,
        energy_kwh=usage.wh / 1000.0,
        p50_s=_quantile(out.latencies, 0.50),
        p95_s=_quantile(out.latencies, 0.95),
        makespan_s=out.makespan_s if out.latencies else None,
        utilisation=usage.busy_s / usage.billed_s if usage.billed_s else 0.0,
        requested=out.requested,
        executed=out.executed,
        shared=out.requested - out.executed,
        batches=out.batches,
        mean_batch=out.executed / out.batches if out.batches else 0.0,
        peak_workers=usage.peak_workers,
        preemptions=out.preemptions,
        replanned=out.replanned,
        lost=out.lost,
        unfinished=out.unfinished,
        sim_wall_s=wall_s,
    )


def _s(value: float | None) -> str:
    return "—" if value is None else f"{value:,.0f}"


def table(title: str, rows: Sequence[Row], base: str) -> Table:
    """One scenario's rows; "÷" columns are the ``base`` variant's figure over this row's."""
    ref = next((r for r in rows if r.variant == base), None)
    t = Table(title=title, title_justify="left")
    heads = (
        "variant",
        "cost $",
        f"{base} ÷",
        "kWh",
        f"{base} ÷",
        "p50 s",
        "p95 s",
        "util",
        "executed / requested",
        "batch",
        "preempt",
        "re-planned",
        "lost",
    )
    for name in heads:
        t.add_column(name, justify="left" if name == "variant" else "right")
    for r in rows:
        cost_ratio = f"{ref.cost_usd / r.cost_usd:.2f}x" if ref and r.cost_usd else "—"
        energy_ratio = f"{ref.energy_kwh / r.energy_kwh:.2f}x" if ref and r.energy_kwh else "—"
        t.add_row(
            r.variant,
            f"{r.cost_usd:,.2f}",
            cost_ratio,
            f"{r.energy_kwh:,.2f}",
            energy_ratio,
            _s(r.p50_s),
            _s(r.p95_s),
            f"{r.utilisation:.2f}",
            f"{r.executed:,} / {r.requested:,}",
            f"{r.mean_batch:.1f}",
            str(r.preemptions),
            f"{r.replanned:,}",
            f"{r.lost + r.unfinished:,}",
        )
    return t


def write_csv(path: Path, rows: Sequence[Row], options: dict[str, object]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        fh.write(f"# date: {datetime.datetime.now(datetime.UTC).isoformat(timespec='seconds')}\n")
        fh.write(f"# machine: {platform.machine()} nproc={os.cpu_count()}\n")
        fh.write(f"# options: {options}\n")
        writer = csv.writer(fh)
        writer.writerow(FIELDS)
        for r in rows:
            writer.writerow(
                [
                    f"{v:.6g}" if isinstance(v, float) else ("" if v is None else v)
                    for v in (getattr(r, f) for f in FIELDS)
                ]
            )


def plot(path: Path, rows: Sequence[Row], scenarios: Sequence[str]) -> None:
    """Cost and p95 per variant, one panel pair per scenario."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    fig, axes = plt.subplots(2, len(scenarios), figsize=(5.5 * len(scenarios), 8), squeeze=False)
    for col, scenario in enumerate(scenarios):
        mine = [r for r in rows if r.scenario == scenario]
        names = [r.variant for r in mine]
        colors = [_color(n) for n in names]
        axes[0][col].barh(names, [r.cost_usd for r in mine], color=colors)
        axes[0][col].set_title(f"{scenario}: cost ($)")
        axes[0][col].invert_yaxis()
        axes[1][col].barh(names, [r.p95_s or 0.0 for r in mine], color=colors)
        axes[1][col].set_title(f"{scenario}: p95 workflow latency (s)")
        axes[1][col].invert_yaxis()
        for ax, values in (
            (axes[0][col], [r.cost_usd for r in mine]),
            (axes[1][col], [r.p95_s for r in mine if r.p95_s]),
        ):
            if values and max(values) > 30 * min(values):  # no-batching dwarfs the rest
                ax.set_xscale("log")
                ax.xaxis.set_minor_formatter(NullFormatter())
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _color(variant: str) -> str:
    if variant.startswith(("static", "oracle")):
        return "tab:blue"
    if variant.startswith(("flowmesh", "drain")):
        return "tab:green"
    return "tab:gray"


def console() -> Console:
    """The terminal's width on a terminal; wide enough for the tables in a log or a pipe."""
    plain = Console()
    return plain if plain.is_terminal else Console(width=150)
