"""What the demo prints: the set-up before the runs, and the figures after them.

Every number comes from a ``DemoResult`` (the control planes' own stats, the workflows'
timestamps and lineage, each worker process's CPU time); this module only computes
ratios and formats. It never runs anything.
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
        f"Shared fabric: a control plane and two worker processes on "
        f"{warmup.hardware.accelerator} ({os.cpu_count()} cores{share}): "
        + ", ".join(f"{s.worker_id} at ${s.price_per_hour:g}/h, {s.watts:g} W" for s in specs)
        + " (the second declared dearer, to show the scheduler weighing price). Alone: "
        f"each tenant gets a control plane and one worker process like {specs[0].worker_id}.",
        f"Ready in {warmup.seconds:.1f}s{built}.",
    ]
    console.print(
        Panel(
            "\n".join(lines),
            title="FlowMesh demo: separate processes on the embedded store (no Redis, no S3)",
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
    headers = ("worker", "pid", "$/h", "W", "batches", "items", "CPU-s")
    table = _table("Worker processes (shared run)", headers)
    for w in run.workers:
        table.add_row(w.spec.worker_id, str(w.pid), f"{w.spec.price_per_hour:g}",
                      f"{w.spec.watts:g}", str(w.batches), str(w.items),
                      f"{w.cpu_s:.2f}")  # fmt: skip
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
        ("worker CPU-seconds", shared.cpu_s, sum(r.cpu_s for r in alone), "{:.2f}"),
        ("worker busy seconds", s.worker_seconds, sum(r.stats.worker_seconds for r in alone),
         "{:.2f}"),
        ("$", s.cost_usd, sum(r.stats.cost_usd for r in alone), "{:.6f}"),
        ("Wh", s.energy_wh, sum(r.stats.energy_wh for r in alone), "{:.4f}"),
        ("control-plane CPU-s", shared.plane_cpu_s, sum(r.plane_cpu_s for r in alone), "{:.2f}"),
    ]  # fmt: skip
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
    shared = result.shared
    workers = shared.workers
    pids = ", ".join(f"{w.spec.worker_id} pid {w.pid}" for w in workers)
    lines = [
        "created: items this tenant asked for first, which ran for it; joined: attached to "
        "identical work already in flight; cache hit: answered from the action cache. A "
        "tenant's worker-s is what it is charged (each executed or joined item's whole batch "
        "share, so that no charge reveals a joiner: docs/isolation.md); the all row is the "
        "fleet's.",
        f"worker CPU-seconds: each worker process's own CPU time, as the OS counts it ({pids}; "
        f"this demo is pid {result.demo_pid}). Busy seconds: time a worker held a batch, "
        "model loads included (every worker starts cold); $ and Wh: busy seconds x the "
        "worker's declared $/h and W.",
    ]
    if result.isolated:
        lines.append(
            "alone x3: each tenant on a control plane and worker process of its own, priced "
            "like the cheaper shared worker, one after another; wall time adds the three runs."
        )
        slower = [
            (t, r.tenants[0]) for t, r in zip(shared.tenants, result.isolated, strict=True)
            if t.latency_s > r.tenants[0].latency_s
        ]  # fmt: skip
        if slower:
            alone_items = sum(r.stats.executed for r in result.isolated) / len(result.isolated)
            lines.append(
                f"Latency: shared, each tenant waits for all {shared.stats.executed} items of "
                f"the three tenants on the same {os.cpu_count()} cores; alone, for its own "
                f"{alone_items:.0f}, with the machine to itself."
            )
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
