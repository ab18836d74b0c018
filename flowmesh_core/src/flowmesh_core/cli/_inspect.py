"""``flowmesh status|lineage|stats``: what the control plane knows, as tables or JSON.

These commands only read, through the client SDK (``open_client`` is the one place the CLI
makes a client, so tests can replace it). The tables here are also the summary that
``flowmesh submit --wait`` ends with. Nothing here may talk HTTP itself or change state.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping

import click
from rich.table import Table
from rich.text import Text

from flowmesh_core.cli._common import CliContext, console, pass_cli, reports_errors
from flowmesh_core.client import Client
from flowmesh_core.errors import AuthenticationError
from flowmesh_core.models import LineageRecord, Satisfaction
from flowmesh_core.models.api import NodeState, StatsReport, WorkflowStatus

__all__ = [
    "lineage_command",
    "open_client",
    "print_status",
    "short_digest",
    "short_key",
    "state_text",
    "stats_command",
    "status_command",
    "status_table",
]

_STATE_STYLE = {
    NodeState.DONE: "green",
    NodeState.FAILED: "bold red",
    NodeState.RUNNING: "yellow",
    NodeState.PENDING: "cyan",
    NodeState.WAITING: "dim",
    NodeState.CANCELLED: "magenta",
}


def open_client(cli: CliContext) -> Client:
    """A client for the server the settings name; AuthenticationError if there is no token."""
    settings = cli.settings
    if settings.token is None:
        raise AuthenticationError(
            'no FlowMesh token: set FLOWMESH_TOKEN, put `token = "..."` in flowmesh.toml, '
            "or pass --token (`flowmesh tenant create` issues one)"
        )
    return Client(settings.server_url, settings.token.get_secret_value())


def short_key(key: str | None) -> str:
    """The first 12 hex digits of an op key, enough to tell keys apart in a table."""
    return "" if key is None else key[:12]


def short_digest(digest: str | None) -> str:
    """``sha256:`` and the first 12 hex digits of a digest."""
    return "" if digest is None else digest[: len("sha256:") + 12]


def state_text(state: NodeState | str) -> Text:
    """A state, coloured the same way in every table."""
    return Text(str(state), style=_STATE_STYLE.get(NodeState(state), ""))


def _counts(records: Iterable[LineageRecord]) -> Counter[Satisfaction]:
    return Counter(record.satisfied_by for record in records)


def _progress_text(progress: Mapping[str, object]) -> str:
    """A running training item's progress: ``step 12/64, loss 9.81, ETA 3s``; a cold
    worker's model load: ``loading flowmesh/tiny-gpt on gpu-1``."""
    if progress.get("phase") == "loading":
        return f"loading {progress.get('model')} on {progress.get('worker')}"
    step, steps, loss, eta = (progress.get(k) for k in ("step", "steps", "loss", "eta_s"))
    if (
        isinstance(step, int)
        and isinstance(steps, int)
        and isinstance(loss, int | float)
        and isinstance(eta, int | float)
    ):
        return f"step {step}/{steps}, loss {loss:.3g}, ETA {eta:.0f}s"
    return "running"


def status_table(status: WorkflowStatus) -> Table:
    """Per node: state, items, how they were satisfied (from lineage), result; then totals."""
    table = Table("node", "state", "items", "executed", "cached", "joined", "result")
    for column in table.columns[2:6]:
        column.justify = "right"
    totals: Counter[Satisfaction] = Counter()
    done = total = 0
    for node in status.nodes:
        counts = _counts(node.lineage)
        totals += counts
        done, total = done + node.items_done, total + node.items_total
        table.add_row(
            node.node,
            state_text(node.state),
            f"{node.items_done}/{node.items_total}",
            str(counts[Satisfaction.EXECUTED]),
            str(counts[Satisfaction.CACHE_HIT]),
            str(counts[Satisfaction.JOINED]),
            _progress_text(node.progress) if node.progress else short_digest(node.result_digest),
        )
    table.add_section()
    table.add_row(
        "total",
        state_text(status.state),
        f"{done}/{total}",
        str(totals[Satisfaction.EXECUTED]),
        str(totals[Satisfaction.CACHE_HIT]),
        str(totals[Satisfaction.JOINED]),
        "",
    )
    return table


def print_status(status: WorkflowStatus, *, errors: bool = True) -> None:
    """The workflow's header line, its status table, full result digests (and node errors)."""
    header = Text.assemble(("workflow ", "bold"), status.workflow_id, "  ")
    header.append_text(state_text(status.state))
    if status.name:
        header.append(f"  ({status.name})")
    if status.finished_at is not None:
        header.append(f"  in {status.finished_at - status.created_at:.1f} s")
    console.print(header, highlight=False)
    console.print(status_table(status))
    for node in status.nodes:
        if node.result_digest is not None:
            console.print(f"result {node.node}: {node.result_digest}", soft_wrap=True)
    for node in status.nodes if errors else ():
        if node.error is not None:
            console.print(
                Text.assemble((f"error {node.node}: ", "bold red"), node.error), soft_wrap=True
            )


@click.command("status")
@click.argument("workflow_id")
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
@pass_cli
@reports_errors
def status_command(cli: CliContext, workflow_id: str, as_json: bool) -> None:
    """Show workflow WORKFLOW_ID: each node's state, items, how they were satisfied, result."""
    with open_client(cli) as client:
        status = client.status(workflow_id, lineage=True)
    if as_json:
        click.echo(status.model_dump_json(indent=2))
    else:
        print_status(status)


def lineage_table(records: list[LineageRecord]) -> Table:
    """One row per (node, item): key, status, how satisfied, batch, worker, seconds, cost.

    Borderless so that nine columns fit 80 characters; only the worker name may wrap.
    """
    table = Table(box=None, pad_edge=False)
    for header in ("node", "#", "op key", "status", "satisfied by", "batch"):
        table.add_column(header, no_wrap=True, justify="right" if header == "#" else "left")
    table.add_column("worker", overflow="fold")
    table.add_column("secs", justify="right", no_wrap=True)
    table.add_column("$", justify="right", no_wrap=True)
    for r in records:
        seconds = (
            f"{r.finished_at - r.started_at:.2f}"
            if r.finished_at is not None and r.started_at is not None
            else ""
        )
        table.add_row(
            r.node,
            str(r.index),
            short_key(r.op_key),
            state_text(r.status),
            str(r.satisfied_by),
            (r.batch_id or "")[:8],
            r.worker or "",
            seconds,
            f"{r.cost_usd:.4f}",
        )
    return table


@click.command("lineage")
@click.argument("workflow_id")
@click.option("--json", "as_json", is_flag=True, help="Print the records as JSON.")
@pass_cli
@reports_errors
def lineage_command(cli: CliContext, workflow_id: str, as_json: bool) -> None:
    """Show how every item of workflow WORKFLOW_ID was satisfied, where it ran, what it cost."""
    with open_client(cli) as client:
        records = client.lineage(workflow_id)
    if as_json:
        click.echo(json.dumps([r.model_dump(mode="json") for r in records], indent=2))
        return
    console.print(lineage_table(records))
    counts = _counts(records)
    console.print(
        f"{len(records)} items: {counts[Satisfaction.EXECUTED]} executed, "
        f"{counts[Satisfaction.CACHE_HIT]} cache hits, {counts[Satisfaction.JOINED]} joined; "
        f"${sum(r.cost_usd for r in records):.4f}, {sum(r.energy_wh for r in records):.2f} Wh",
        highlight=False,
    )


def _totals_table(report: StatsReport) -> Table:
    reused = report.cache_hits + report.joins
    share = f" ({reused / report.requested:.0%} of requested)" if report.requested else ""
    table = Table("", "", show_header=False, box=None)
    table.add_row("requested items", str(report.requested))
    table.add_row("executed items", str(report.executed))
    table.add_row("served without a run", f"{reused}{share}")
    table.add_row("cache hits", str(report.cache_hits))
    table.add_row("joined in flight", str(report.joins))
    table.add_row("failed", str(report.failed))
    table.add_row("batches", f"{report.batches} (mean size {report.mean_batch_size:.1f})")
    table.add_row("worker-seconds", f"{report.worker_seconds:.1f}")
    table.add_row("cost", f"${report.cost_usd:.4f}")
    table.add_row("energy", f"{report.energy_wh:.2f} Wh")
    return table


def _tenants_table(report: StatsReport) -> Table:
    table = Table("tenant", "requested", "created", "cache hits", "joins", "worker-s", "$", "Wh")
    for column in table.columns[1:]:
        column.justify = "right"
    for t in report.tenants:
        table.add_row(
            t.tenant,
            str(t.requested),
            str(t.created),
            str(t.cache_hits),
            str(t.joins),
            f"{t.worker_seconds:.1f}",
            f"{t.cost_usd:.4f}",
            f"{t.energy_wh:.2f}",
        )
    return table


def _quotas_table(report: StatsReport) -> Table:
    """What each tenant holds against its upload and grant quotas (docs/isolation.md)."""
    table = Table("tenant", "uploaded bytes (for ever)", "grants held")
    for column in table.columns[1:]:
        column.justify = "right"
    for t in report.tenants:
        table.add_row(
            t.tenant,
            _of_limit(t.upload_bytes, t.max_upload_bytes),
            _of_limit(t.grants, t.max_grants),
        )
    return table


def _of_limit(used: int, limit: int) -> str:
    """``used`` against a quota's ``limit`` (0: none)."""
    return f"{used:,} / {limit:,}" if limit else f"{used:,} (no limit)"


@click.command("stats")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@pass_cli
@reports_errors
def stats_command(cli: CliContext, as_json: bool) -> None:
    """Requested vs executed work, batching and cost: in total and per tenant you may see."""
    with open_client(cli) as client:
        report = client.stats()
    if as_json:
        click.echo(report.model_dump_json(indent=2))
        return
    console.print(_totals_table(report))
    if report.tenants:
        console.print(_tenants_table(report))
        console.print(_quotas_table(report))
