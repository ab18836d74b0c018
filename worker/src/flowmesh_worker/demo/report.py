"""What the demo prints: the set-up before the runs, and the figures after them.

Every number comes from a ``DemoResult`` (the control plane's own stats, the workflows'
timestamps, the workers' counters); this module only computes ratios and formats, and
says plainly which figures are derived rather than measured. It never runs anything.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from rich import box
from rich.console import Console
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from flowmesh_worker.demo.fabric import WorkerSpec
from flowmesh_worker.demo.results import DemoResult, LateArrival, RunResult
from flowmesh_worker.demo.warmup import Warmup
from flowmesh_worker.demo.workload import (
    EMBED_MODEL,
    GENERATE_MODEL,
    SCORE_MODEL,
    TOP_K,
    TenantPlan,
    load_records,
)

__all__ = ["print_intro", "print_summary"]


def print_intro(
    console: Console,
    warmup: Warmup,
    plans: Sequence[TenantPlan],
    specs: Sequence[WorkerSpec],
    threads: int | None,
) -> None:
    """The set-up: models, tenants and their overlap, workers."""
    distinct = len({i for p in plans for i in p.indices})
    asked = sum(len(p.indices) for p in plans)
    built = f", built {' and '.join(warmup.built)}" if warmup.built else ""
    share = f", {threads} CPU thread(s) each" if threads else ""
    lines = [
        f"Each tenant's workflow: template -> generate ({GENERATE_MODEL}, greedy) -> score "
        f"({SCORE_MODEL}) -> top {TOP_K} -> embed them ({EMBED_MODEL}).",
        f"The generate and score models are tiny random-weight models (real loading and "
        f"batching code, meaningless text); {EMBED_MODEL} is the real encoder. "
        f"Models: {warmup.model_dir}",
        f"Tenants take overlapping windows of the {len(load_records())} prompts shipped with "
        "the demo: "
        + ", ".join(f"{p.name} {p.window}" for p in plans)
        + f": {asked} asked for, {distinct} distinct.",
        f"Workers, in this process on {warmup.hardware.accelerator} ({os.cpu_count()} cores"
        f"{share}): "
        + ", ".join(f"{s.worker_id} at ${s.price_per_hour:g}/h, {s.watts:g} W" for s in specs)
        + " (the second declared dearer, to show the scheduler weighing price).",
        f"Warm-up: {warmup.seconds:.1f}s (imports, each model loaded once{built}).",
    ]
    console.print(
        Panel(
            "\n".join(lines),
            title="FlowMesh demo: embedded store (no Redis server, no S3)",
            title_align="left",
        )
    )


def print_summary(console: Console, result: DemoResult) -> None:
    """The figures: how items were satisfied, what the fabric did, shared vs alone."""
    shared = result.shared
    console.print(_tenant_table(shared))
    console.print(_fabric_line(shared))
    console.print(_worker_table(shared))
    if result.late is not None:
        console.print(_late_line(result.late))
    if result.isolated:
        console.print(_comparison_table(shared, result.isolated))
    console.print(_notes(result))
    if result.sample is not None:
        s = result.sample
        console.print(
            Text.assemble(
                (f"{s.tenant}'s best generation, read back and verified: ", "bold"),
                f"{s.prompt!r} -> {s.completion!r}; its embedding: {s.vector_dims} "
                f"dimensions, norm {s.vector_norm:.3f}",
            )
        )
    if result.options.keep_blobs is not None:
        console.print(f"The shared run's blobs are kept in {result.options.keep_blobs}")


def _table(title: str, headers: Sequence[str]) -> Table:
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, padding=(0, 1))
    for i, header in enumerate(headers):
        table.add_column(header, justify="left" if i == 0 else "right")
    return table


def _tenant_table(run: RunResult) -> Table:
    headers = ("tenant", "asked", "cache hits", "joined", "created", "worker-s", "latency")
    table = _table("Shared run: how each tenant's items were satisfied", headers)
    for t in run.tenants:
        own = t.stats
        latency = f"{t.latency_s:.1f}s" if t.error is None else "[red]failed[/red]"
        table.add_row(t.plan.name, str(own.requested), str(own.cache_hits), str(own.joins),
                      str(own.created), f"{own.worker_seconds:.2f}", latency)  # fmt: skip
    s = run.stats
    table.add_section()
    table.add_row("all", str(s.requested), str(s.cache_hits), str(s.joins), str(s.executed),
                  f"{s.worker_seconds:.2f}", f"{run.wall_s:.1f}s")  # fmt: skip
    for t in run.failed:
        table.caption = f"[red]{t.plan.name} failed: {t.error}[/red]"
    return table


def _fabric_line(run: RunResult) -> Text:
    s = run.stats
    saved = 1 - s.executed / s.requested if s.requested else 0.0
    return Text.assemble(
        ("The fabric executed ", "bold"),
        (f"{s.executed} of {s.requested} items", "bold green"),
        f" ({saved:.0%} never ran) in {s.batches} batches, ",
        (f"mean batch size {s.mean_batch_size:.1f}", "bold green"),
        f"; {s.worker_seconds:.2f} worker-seconds, {_usd(s.cost_usd)}, {s.energy_wh:.4f} Wh.",
    )


def _worker_table(run: RunResult) -> Table:
    table = _table("Workers (shared run)", ("worker", "$/h", "W", "batches", "items"))
    for w in run.workers:
        table.add_row(w.spec.worker_id, f"{w.spec.price_per_hour:g}", f"{w.spec.watts:g}",
                      str(w.batches), str(w.items))  # fmt: skip
    return table


def _late_line(late: LateArrival) -> Text:
    s = late.run.stats
    return Text.assemble(
        ("Later, ", "bold"),
        f"{late.tenant} submits {late.copy_of}'s workflow again: {s.requested} items, ",
        (f"{s.cache_hits} cache hits", "bold green"),
        f", {late.executed} executed, done in {late.run.latency_s:.2f}s.\n",
    )


def _comparison_table(shared: RunResult, alone: Sequence[RunResult]) -> Table:
    headers = ("same work", "shared", "alone x3", "alone/shared")
    table = _table("Shared fabric vs each tenant alone (both measured)", headers)
    s = shared.stats
    a_batches = sum(r.stats.batches for r in alone)
    a_mean = sum(r.stats.mean_batch_size * r.stats.batches for r in alone) / max(a_batches, 1)
    rows: list[tuple[str, float, float, str]] = [
        ("items executed", s.executed, sum(r.stats.executed for r in alone), "{:.0f}"),
        ("batches", s.batches, a_batches, "{:.0f}"),
        ("mean batch size", s.mean_batch_size, a_mean, "{:.1f}"),
        ("CPU-seconds", shared.cpu_s, sum(r.cpu_s for r in alone), "{:.2f}"),
        ("worker-seconds", s.worker_seconds, sum(r.stats.worker_seconds for r in alone), "{:.2f}"),
        ("$ (derived)", s.cost_usd, sum(r.stats.cost_usd for r in alone), "{:.6f}"),
        ("Wh (derived)", s.energy_wh, sum(r.stats.energy_wh for r in alone), "{:.4f}"),
    ]
    for label, x, y, fmt in rows:
        table.add_row(label, fmt.format(x), fmt.format(y), _ratio(y, x))
    table.add_section()
    for t, r in zip(shared.tenants, alone, strict=True):
        lone = r.tenants[0].latency_s
        table.add_row(f"latency {t.plan.name}", f"{t.latency_s:.1f}s", f"{lone:.1f}s",
                      _ratio(lone, t.latency_s))  # fmt: skip
    back_to_back = sum(r.wall_s for r in alone)
    table.add_row("wall time", f"{shared.wall_s:.1f}s", f"{back_to_back:.1f}s",
                  _ratio(back_to_back, shared.wall_s))  # fmt: skip
    return table


def _notes(result: DemoResult) -> Text:
    workers = result.shared.workers
    dearer = f" ({workers[-1].spec.worker_id} declared 1.5x)" if len(workers) > 1 else ""
    lines = [
        "created: items this tenant asked for first, which ran for it; joined: attached to "
        "identical work already in flight; cache hit: answered from the action cache.",
        "worker-seconds: time workers were busy with batches, model loads included (every "
        "run starts with cold workers; Python's one-time imports were paid in the warm-up). "
        "$ and Wh are derived, not metered: each worker's busy seconds x its declared $/h "
        f"and W{dearer}.",
    ]
    if result.isolated:
        lines += [
            "alone x3: each tenant on a fresh store and blob dir with one cold worker priced "
            "like the cheaper shared one, one after another; wall time adds the three runs.",
            "CPU-seconds: CPU time this process used during the run, every thread (measured "
            "with time.process_time). In one process the two shared workers take turns on "
            "Python's GIL and this machine's cores, so when their batches overlap each counts "
            "its full wait as busy time: worker-seconds, $ and Wh overstate the shared run "
            "here (on separate machines they would not); CPU-seconds do not.",
            "Latency: a shared tenant waits for a fabric doing all three tenants' work at "
            "once; alone, a tenant has the machine to itself. Timings on a busy machine are "
            "noisy: compare items and batches first, seconds second.",
        ]
    if result.cpu_threads:
        lines.append(
            f"Every worker computes with {result.cpu_threads} CPU thread(s): the cores split "
            "between the two shared workers, and a lone worker gets the same share."
        )
    return Text("\n".join(lines), style="dim")


def _ratio(numerator: float, denominator: float) -> str:
    return f"{numerator / denominator:.2f}x" if denominator > 0 else "-"


def _usd(value: float) -> str:
    return f"${value:.6f}" if value < 0.01 else f"${value:.4f}"
