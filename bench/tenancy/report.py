"""What the benchmark prints and writes: a table per overlap with its ratios, where the
busy time goes (flowmesh against the oracle, stage by stage), a summary over overlaps,
the training stage's table with its ratios and training runs, the CSV and the plot.

Every number comes from a ``VariantResult``; this module only derives ratios ($ from
seconds, percentiles) and formats. It never runs anything.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from bench.tenancy.training import GROUP_SIZE, TRAINING_NODES
from bench.tenancy.training import NODES as TRAINING_STAGE_NODES
from bench.tenancy.variants import Counters, VariantResult
from bench.tenancy.workload import NODES

__all__ = ["Pricing", "percentile", "show", "write_csv", "write_png"]

DASH = "—"


@dataclass(frozen=True)
class Pricing:
    """The workers' declared $/hour and watts (every worker declares the same)."""

    price_per_hour: float
    watts: float


def percentile(values: Sequence[float], pct: float) -> float | None:
    """Linear interpolation between the closest ranks (numpy's default); None if empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * pct / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


# (heading, CSV column, value of a result): a value of None prints as a dash
Figure = tuple[str, str, Callable[[VariantResult, Pricing], float | None], str]

FIGURES: tuple[Figure, ...] = (
    ("requested", "items_requested", lambda r, p: r.counters.requested, "{:.0f}"),
    ("executed", "items_executed", lambda r, p: r.counters.executed, "{:.0f}"),
    ("batches", "batches", lambda r, p: r.counters.batches, "{:.0f}"),
    ("mean batch", "mean_batch_size", lambda r, p: _div(r.counters.batched, r.counters.batches),
     "{:.1f}"),
    ("busy s", "busy_s", lambda r, p: r.counters.busy_s, "{:.2f}"),
    ("CPU-s", "worker_cpu_s", lambda r, p: r.counters.worker_cpu_s, "{:.2f}"),
    ("busy/CPU", "busy_per_cpu", lambda r, p: _div(r.counters.busy_s, r.counters.worker_cpu_s),
     "{:.2f}"),
    ("$ busy", "cost_busy_usd", lambda r, p: r.counters.cost_usd, "{:.6f}"),
    ("$ CPU", "cost_cpu_usd", lambda r, p: p.price_per_hour * r.counters.worker_cpu_s / 3600,
     "{:.6f}"),
    ("Wh", "energy_wh", lambda r, p: r.counters.energy_wh, "{:.4f}"),
    ("p50 s", "latency_p50_s", lambda r, p: percentile(r.latencies, 50), "{:.2f}"),
    ("p95 s", "latency_p95_s", lambda r, p: percentile(r.latencies, 95), "{:.2f}"),
    ("makespan s", "makespan_s", lambda r, p: r.makespan_s, "{:.2f}"),
)  # fmt: skip


def training_runs(r: VariantResult) -> tuple[int, int] | None:
    """(requested, executed) runs of the train.* nodes; None outside the training stage."""
    if r.stage != "training":
        return None
    nodes = [r.stages[n] for n in TRAINING_NODES if n in r.stages]
    return sum(n.requested for n in nodes), sum(n.executed for n in nodes)


def _training_figure(index: int) -> Callable[[VariantResult], float | None]:
    def get(r: VariantResult) -> float | None:
        runs = training_runs(r)
        return None if runs is None else runs[index]

    return get


EXTRA_CSV: tuple[tuple[str, Callable[[VariantResult], float | None], str], ...] = (
    ("training_runs_requested", _training_figure(0), "{:.0f}"),
    ("training_runs_executed", _training_figure(1), "{:.0f}"),
    ("plane_cpu_s", lambda r: None if r.variant == "oracle" else r.counters.plane_cpu_s, "{:.3f}"),
    ("redis_cpu_s", lambda r: None if r.variant == "oracle" else r.counters.redis_cpu_s, "{:.3f}"),
    ("result_write_cpu_ms", lambda r: r.notes.get("write_cpu_ms"), "{:.3f}"),
    ("result_write_wall_ms", lambda r: r.notes.get("write_wall_ms"), "{:.3f}"),
)


def _div(a: float, b: float) -> float | None:
    return a / b if b else None


def _cell(value: float | None, fmt: str, dash: str = DASH) -> str:
    return dash if value is None else fmt.format(value)


def _value(results: Sequence[VariantResult], variant: str, figure: str, p: Pricing) -> float | None:
    fig = next(f for f in FIGURES if f[0] == figure)
    row = next((r for r in results if r.variant == variant), None)
    return None if row is None else fig[2](row, p)


def _ratio(results: Sequence[VariantResult], a: str, b: str, figure: str, p: Pricing) -> str:
    x, y = _value(results, a, figure, p), _value(results, b, figure, p)
    return f"{x / y:.2f}x" if x is not None and y else DASH


def show(console: Console, results: Sequence[VariantResult], pricing: Pricing) -> None:
    """A table per overlap with its ratios and stage breakdown, then the summary; then
    the training stage's table, ratios and where its busy time goes."""
    data = [r for r in results if r.stage == "data"]
    for overlap in dict.fromkeys(r.overlap for r in data):
        rows = [r for r in data if r.overlap == overlap]
        console.print(_overlap_table(f"overlap {overlap}%", rows, pricing))
        console.print(_ratio_lines(rows, pricing))
        if {"flowmesh", "oracle"} <= {r.variant for r in rows}:
            console.print(_stage_table(overlap, rows))
            console.print(_gap_line(rows))
    if data:
        console.print(_summary_table(data, pricing))
    if training := [r for r in results if r.stage == "training"]:
        title = (
            f"training stage: inference -> SFT and inference -> DPO, tenants in groups of "
            f"{GROUP_SIZE} asking for the same pipeline, {training[0].overlap}% of records "
            "shared between groups"
        )
        console.print(_overlap_table(title, training, pricing, runs=True))
        console.print(_ratio_lines(training, pricing, oracle=False))
        console.print(_training_lines(training))


def _overlap_table(
    title: str, rows: Sequence[VariantResult], p: Pricing, runs: bool = False
) -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column("variant")
    for heading, *_ in FIGURES:
        table.add_column(heading, justify="right")
    if runs:
        table.add_column("training runs", justify="right")
    for row in rows:
        cells = [_cell(get(row, p), fmt) for _, _, get, fmt in FIGURES]
        if runs and (counted := training_runs(row)) is not None:
            cells.append(f"{counted[1]} of {counted[0]}")
        table.add_row(row.variant, *cells)
    notes = {r.makespan_note for r in rows if r.makespan_note and r.variant == "isolated"}
    table.caption = "; ".join(f"isolated makespan: {n}" for n in notes) or None
    return table


def _ratio_lines(rows: Sequence[VariantResult], p: Pricing, oracle: bool = True) -> str:
    pairs = [("$ busy", "$ busy"), ("$ CPU", "$ CPU"), ("CPU-s", "CPU-s"), ("Wh", "Wh")]
    iso = ", ".join(f"{label} {_ratio(rows, 'isolated', 'flowmesh', f, p)}" for label, f in pairs)
    ora = ", ".join(f"{label} {_ratio(rows, 'flowmesh', 'oracle', f, p)}" for label, f in pairs)
    p95 = {v: _value(rows, v, "p95 s", p) for v in ("flowmesh", "isolated")}
    return (
        f"isolated / flowmesh: {iso}\n"
        + (f"flowmesh / oracle:   {ora}\n" if oracle else "")
        + f"p95 latency: flowmesh {_cell(p95['flowmesh'], '{:.2f} s')}, "
        f"isolated {_cell(p95['isolated'], '{:.2f} s')} (alone on one worker)"
    )


def _stage_table(overlap: int, rows: Sequence[VariantResult]) -> Table:
    fm = next(r for r in rows if r.variant == "flowmesh")
    oracle = next(r for r in rows if r.variant == "oracle")
    title = f"overlap {overlap}%: where the busy time goes, flowmesh vs oracle"
    table = Table(title=title, title_justify="left")
    headings = ("stage", "executed", "oracle items", "batches", "mean batch", "oracle B",
                "busy s", "oracle s", "busy/oracle", "busy ms/item", "oracle ms/item")  # fmt: skip
    for i, heading in enumerate(headings):
        table.add_column(heading, justify="left" if i == 0 else "right")
    for node in NODES:
        f, o = fm.stages.get(node), oracle.stages.get(node)
        if f is None or o is None:
            continue
        table.add_row(
            node, str(f.executed), str(o.executed), str(f.batches),
            _cell(_div(f.executed, f.batches), "{:.1f}"), str(oracle.oracle_sizes.get(node, "")),
            f"{f.busy_s:.3f}", f"{o.busy_s:.3f}", _cell(_div(f.busy_s, o.busy_s), "{:.2f}"),
            _cell(_div(1000 * f.busy_s, f.executed), "{:.2f}"),
            _cell(_div(1000 * o.busy_s, o.executed), "{:.2f}"),
        )  # fmt: skip
    return table


def _gap_line(rows: Sequence[VariantResult]) -> str:
    fm = next(r for r in rows if r.variant == "flowmesh").counters
    oracle = next(r for r in rows if r.variant == "oracle")

    def per_item(c: Counters, name: str) -> str:
        return _cell(_div(1000 * getattr(c, name), c.executed), "{:.2f}")

    notes = oracle.notes
    return (
        f"flowmesh over the oracle, per executed item: CPU {per_item(fm, 'worker_cpu_s')} vs "
        f"{per_item(oracle.counters, 'worker_cpu_s')} ms, busy {per_item(fm, 'busy_s')} vs "
        f"{per_item(oracle.counters, 'busy_s')} ms; one result write to the CAS (canonical "
        f"JSON, sha256, file + 2 fsyncs), measured here: {notes.get('write_cpu_ms', 0):.2f} ms "
        f"CPU, {notes.get('write_wall_ms', 0):.2f} ms wall. flowmesh busy/CPU "
        f"{_cell(_div(fm.busy_s, fm.worker_cpu_s), '{:.2f}')} (above 1: batches waited for a "
        f"core or an fsync). Not in any $: control plane + driver CPU {fm.plane_cpu_s:.2f} s "
        f"(this process), Redis server CPU {fm.redis_cpu_s:.2f} s"
    )


def _training_lines(rows: Sequence[VariantResult]) -> str:
    """Per variant: training runs executed of requested, each train.* node's examples per
    busy second (examples x epochs over the executed runs' seconds), and where the busy
    time went."""
    lines = []
    for row in rows:
        runs = training_runs(row)
        if runs is None:
            continue
        rates = []
        for node in (n for n in TRAINING_NODES if n in row.stages):
            f = row.stages[node]
            rate = _cell(_div(f.examples, f.busy_s), "{:.1f}")
            rates.append(
                f"{node} {f.executed} run(s), {f.examples} examples in {f.busy_s:.2f} s "
                f"({rate} examples/s)"
            )
        busy = ", ".join(
            f"{node} {row.stages[node].busy_s:.2f}"
            for node in TRAINING_STAGE_NODES
            if node in row.stages
        )
        lines.append(
            f"{row.variant}: training runs executed {runs[1]} of {runs[0]} requested; "
            f"{'; '.join(rates)}; busy s by node: {busy}"
        )
    return "\n".join(lines)


def _summary_table(results: Sequence[VariantResult], p: Pricing) -> Table:
    table = Table(title="summary over overlaps", title_justify="left")
    headings = ("overlap %", "$ busy isolated", "$ busy flowmesh", "$ busy oracle",
                "iso/fm $ busy", "iso/fm $ CPU", "iso/fm CPU-s", "iso/fm Wh",
                "fm/oracle $ busy", "fm/oracle $ CPU", "p95 fm s", "p95 iso s")  # fmt: skip
    for heading in headings:
        table.add_column(heading, justify="right")
    for overlap in dict.fromkeys(r.overlap for r in results):
        rows = [r for r in results if r.overlap == overlap]
        money = [_cell(_value(rows, v, "$ busy", p), "{:.6f}")
                 for v in ("isolated", "flowmesh", "oracle")]  # fmt: skip
        ratios = [_ratio(rows, "isolated", "flowmesh", f, p) for f in ("$ busy", "$ CPU", "CPU-s")]
        ratios += [_ratio(rows, "isolated", "flowmesh", "Wh", p)]
        ratios += [_ratio(rows, "flowmesh", "oracle", f, p) for f in ("$ busy", "$ CPU")]
        p95 = [_cell(_value(rows, v, "p95 s", p), "{:.2f}") for v in ("flowmesh", "isolated")]
        table.add_row(str(overlap), *money, *ratios, *p95)
    return table


def write_csv(
    path: Path, header: dict[str, str], results: Sequence[VariantResult], p: Pricing
) -> None:
    """One row per (overlap, variant); ``header`` as ``# key: value`` lines first."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        for key, text in header.items():
            fh.write(f"# {key}: {text}\n")
        writer = csv.writer(fh)
        writer.writerow(["stage", "overlap_pct", "variant", *(f[1] for f in FIGURES),
                         *(name for name, _, _ in EXTRA_CSV), "makespan_note"])  # fmt: skip
        for r in results:
            cells = [_cell(get(r, p), fmt, "") for _, _, get, fmt in FIGURES]
            extra = [_cell(get(r), fmt, "") for _, get, fmt in EXTRA_CSV]
            writer.writerow([r.stage, r.overlap, r.variant, *cells, *extra, r.makespan_note])


def write_png(path: Path, results: Sequence[VariantResult], p: Pricing, title: str) -> None:
    """Cost against overlap, one line per variant: $ from busy time and $ from CPU-s
    (the data stage's rows: the training stage runs at one overlap)."""
    results = [r for r in results if r.stage == "data"]
    if not results:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), constrained_layout=True)
    panels = (("$ busy", "$ = price x busy seconds"), ("$ CPU", "$ = price x worker CPU-s"))
    for ax, (figure, label) in zip(axes, panels, strict=True):
        for variant in dict.fromkeys(r.variant for r in results):
            points = [(r.overlap, _value([r], variant, figure, p)) for r in results
                      if r.variant == variant]  # fmt: skip
            xs = [x for x, y in points if y is not None]
            ys = [1e6 * y for x, y in points if y is not None]
            ax.plot(xs, ys, marker="o", label=variant)
        ax.set_xlabel("overlap between tenants (%)")
        ax.set_ylabel("micro-dollars per run of every tenant")
        ax.set_title(label)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.suptitle(title, fontsize=10)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
