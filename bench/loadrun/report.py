"""What the run prints and writes: the figures from the outcomes and the CPU clocks.

``summarise`` turns the clients' outcomes and the processes' CPU seconds over the timed
phase into a ``Summary``; ``show`` prints it as tables, ``write_json`` writes it. This
module only counts, derives percentiles and formats; it never runs anything.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from rich.console import Console
from rich.table import Table

from bench.loadrun.clients import Outcome

__all__ = ["Measured", "Summary", "percentile", "show", "summarise", "write_json"]

PCTS = (50, 95, 99)
DASH = "—"


def percentile(values: Sequence[float], pct: float) -> float | None:
    """Linear interpolation between the closest ranks (numpy's default); None if empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * pct / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def _ms(values: Sequence[float]) -> dict[str, float | None]:
    out = {}
    for pct in PCTS:
        value = percentile(values, pct)
        out[f"p{pct}"] = None if value is None else round(value * 1000, 2)
    return out


@dataclass(frozen=True)
class Measured:
    """What the timed phase left: the outcomes, the CPU seconds each process used over
    ``wall_s``, and the differences of the fabric's ``/v1/stats`` totals and of Redis'
    calls per command across it (empty when the run has no access to Redis)."""

    outcomes: list[Outcome]
    cpu_s: dict[str, float | None]
    wall_s: float
    fabric: dict[str, float]
    redis_calls: dict[str, float]
    replicas: int = 1  # client i was sent to replica i % replicas (1-based in the figures)


@dataclass
class Summary:
    """Every figure of one run (the JSON holds exactly this)."""

    setup: dict[str, object]
    submitted: int
    accepted: int
    rejected: int
    finished: int
    failed: int
    lost: int
    wall_s: float
    workflows_per_s: float
    submit_ms: dict[str, float | None]
    submit_to_done_ms: dict[str, float | None]
    server_ms: dict[str, float | None]
    items: dict[str, int]
    fabric: dict[str, float] = field(default_factory=dict)
    cpu_cores: dict[str, float | None] = field(default_factory=dict)
    cpu_ms_per_workflow: dict[str, float | None] = field(default_factory=dict)
    redis_calls_per_workflow: dict[str, float] = field(default_factory=dict)
    by_replica: dict[str, dict[str, dict[str, float | None]]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    @property
    def all_finished(self) -> bool:
        return self.failed == 0 and self.lost == 0 and self.finished == self.accepted


def summarise(measured: Measured, setup: dict[str, object]) -> Summary:
    """The figures of one run."""
    outcomes, fabric = measured.outcomes, measured.fabric
    accepted = [o for o in outcomes if o.workflow_id is not None]
    done = [o for o in accepted if o.state == "done"]
    ends = [o.finished_at for o in done if o.finished_at is not None]
    start = min((o.sent_at for o in outcomes), default=0.0)
    wall = (max(ends) - start) if ends else 0.0
    errors = sorted({f"{o.state}: {o.error}" for o in outcomes if o.error and o.state != "done"})
    return Summary(
        setup=setup,
        submitted=len(outcomes),
        accepted=len(accepted),
        rejected=len(outcomes) - len(accepted),
        finished=len(done),
        failed=sum(1 for o in accepted if o.state == "failed"),
        lost=sum(1 for o in accepted if o.state == "lost"),
        wall_s=round(wall, 3),
        workflows_per_s=round(len(done) / wall, 2) if wall > 0 else 0.0,
        submit_ms=_ms([o.answered_at - o.sent_at for o in accepted]),
        submit_to_done_ms=_ms([o.finished_at - o.sent_at for o in done if o.finished_at]),
        server_ms=_ms([o.server_s for o in done if o.server_s is not None]),
        items={
            "created": sum(o.created for o in accepted),
            "cache_hits": sum(o.cache_hits for o in accepted),
            "joined": sum(o.joined for o in accepted),
        },
        fabric={
            **{name: round(value, 3) for name, value in fabric.items()},
            "mean_batch": round(fabric["executed"] / fabric["batches"], 2)
            if fabric.get("batches")
            else 0.0,
            "worker_seconds_per_s": round(fabric["worker_seconds"] / measured.wall_s, 3)
            if measured.wall_s > 0
            else 0.0,
        },
        cpu_cores={
            name: None if s is None or measured.wall_s <= 0 else round(s / measured.wall_s, 3)
            for name, s in measured.cpu_s.items()
        },
        cpu_ms_per_workflow={
            name: None if s is None or not done else round(1000 * s / len(done), 2)
            for name, s in measured.cpu_s.items()
        },
        redis_calls_per_workflow=_per_workflow(measured.redis_calls, len(done)),
        by_replica=_by_replica(done, measured.replicas),
        errors=errors[:20],
    )


def _by_replica(
    done: list[Outcome], replicas: int
) -> dict[str, dict[str, dict[str, float | None]]]:
    """Submit and submit->done percentiles of the workflows each replica took (K > 1 only)."""
    if replicas < 2:
        return {}
    out = {}
    for index in range(replicas):
        mine = [o for o in done if o.client % replicas == index and o.finished_at is not None]
        out[f"serve {index + 1}"] = {
            "submit_ms": _ms([o.answered_at - o.sent_at for o in mine]),
            "submit_to_done_ms": _ms([o.finished_at - o.sent_at for o in mine if o.finished_at]),
        }
    return out


def _per_workflow(calls: dict[str, float], workflows: int) -> dict[str, float]:
    """Redis calls per finished workflow: the total, then each command, busiest first."""
    if not calls or not workflows:
        return {}
    busiest = sorted(((n, name) for name, n in calls.items() if n > 0), reverse=True)
    per = {"total": round(sum(calls.values()) / workflows, 1)}
    per.update({name: round(n / workflows, 1) for n, name in busiest})
    return per


def _cell(value: float | None, spec: str = "{:.1f}") -> str:
    return DASH if value is None else spec.format(value)


def show(console: Console, summary: Summary) -> None:
    """The run as two tables: workflows and latency, then CPU per process."""
    setup = ", ".join(f"{k}: {v}" for k, v in summary.setup.items())
    console.print(setup, highlight=False, markup=False, soft_wrap=True)
    table = Table("figure", "value", "p50", "p95", "p99", title="load run")
    counts = ("submitted", "accepted", "rejected", "finished", "failed", "lost")
    for name in counts:
        table.add_row(name, str(getattr(summary, name)), "", "", "")
    table.add_row("wall s", f"{summary.wall_s:.1f}", "", "", "")
    table.add_row("workflows/s", f"{summary.workflows_per_s:.1f}", "", "", "")
    for label, figures in (
        ("submit ms", summary.submit_ms),
        ("submit->done ms", summary.submit_to_done_ms),
        ("server ms (created->finished)", summary.server_ms),
    ):
        table.add_row(label, "", *(_cell(figures[f"p{p}"]) for p in PCTS))
    for replica, figures_of in summary.by_replica.items():
        for label, key in (("submit ms", "submit_ms"), ("submit->done ms", "submit_to_done_ms")):
            row = (_cell(figures_of[key][f"p{p}"]) for p in PCTS)
            table.add_row(f"  {label}, via {replica}", "", *row)
    items = summary.items
    table.add_row(
        "first node's items",
        f"{items['created']} created, {items['cache_hits']} cache hits, {items['joined']} joined",
        "", "", "",
    )  # fmt: skip
    fabric = summary.fabric
    table.add_row("items executed (all nodes)", f"{fabric['executed']:.0f}", "", "", "")
    table.add_row(
        "batches, mean size", f"{fabric['batches']:.0f}, {fabric['mean_batch']:.1f}", "", "", ""
    )
    table.add_row("worker busy (worker-s / s)", f"{fabric['worker_seconds_per_s']:.2f}", "", "", "")
    console.print(table)
    cpu = Table("process", "cores (CPU s / wall s)", "CPU ms / workflow", title="CPU, timed phase")
    for name, cores in summary.cpu_cores.items():
        per = summary.cpu_ms_per_workflow.get(name)
        cpu.add_row(name, _cell(cores, "{:.2f}"), _cell(per))
    console.print(cpu)
    if summary.redis_calls_per_workflow:
        calls = summary.redis_calls_per_workflow
        top = ", ".join(f"{name} {n:.1f}" for name, n in list(calls.items())[1:9])
        line = (
            f"Redis commands / workflow (those Lua scripts run included; every client of the "
            f"server): {calls['total']:.1f}; {top}"
        )
        console.print(line, highlight=False, markup=False, soft_wrap=True)
    for error in summary.errors:
        console.print(f"  {error}", highlight=False, markup=False, soft_wrap=True)
    verdict = "every accepted workflow finished" if summary.all_finished else (
        f"NOT every accepted workflow finished: {summary.failed} failed, {summary.lost} lost"
    )  # fmt: skip
    console.print(verdict, highlight=False)


def write_json(path: Path, summary: Summary) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(asdict(summary), indent=2) + "\n")
