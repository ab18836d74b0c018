"""The live view while the demo's workflows run: one row per tenant, one cell per node.

A cell shows ``done/total`` items of that node as the control plane reports them
(``NodeStatus.items_done`` / ``items_total``); a node that waits for its inputs shows a
dot, a finished one a check mark. It only renders what it is given: it never asks the
control plane anything itself.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from rich import box
from rich.table import Table
from rich.text import Text

from flowmesh_core.control import NodeState, NodeStatus, WorkflowStatus
from flowmesh_worker.demo.workload import NODES, TenantPlan

__all__ = ["ProgressBoard"]

_STATE_STYLE = {
    NodeState.DONE: "green",
    NodeState.FAILED: "bold red",
    NodeState.CANCELLED: "magenta",
    NodeState.RUNNING: "yellow",
    NodeState.PENDING: "yellow",
    NodeState.WAITING: "dim",
}


class ProgressBoard:
    """Per-tenant, per-node progress of one run; ``rich`` renders it on each refresh."""

    def __init__(self, title: str, plans: Sequence[TenantPlan]) -> None:
        self.title = title
        self.plans = list(plans)
        self.started = time.monotonic()
        self._status: dict[str, WorkflowStatus] = {}

    def update(self, team: str, status: WorkflowStatus) -> None:
        self._status[team] = status

    def __rich__(self) -> Table:
        elapsed = time.monotonic() - self.started
        table = Table(
            title=f"{self.title}  [dim]{elapsed:.1f}s[/dim]",
            title_justify="left",
            box=box.SIMPLE_HEAD,
            padding=(0, 1),
        )
        table.add_column("tenant", no_wrap=True)
        for node in NODES:
            table.add_column(node, justify="right", no_wrap=True)
        table.add_column("workflow", no_wrap=True)
        for plan in self.plans:
            status = self._status.get(plan.name)
            nodes = {n.node: n for n in status.nodes} if status else {}
            cells = [_cell(nodes.get(node)) for node in NODES]
            table.add_row(plan.name, *cells, _overall(status))
        return table


def _cell(node: NodeStatus | None) -> Text:
    if node is None or node.state is NodeState.WAITING:
        return Text("·", style="dim")
    style = _STATE_STYLE.get(node.state, "")
    if node.state is NodeState.DONE:
        return Text(f"{node.items_total} ✓", style=style)
    if node.state is NodeState.FAILED:
        return Text("failed", style=style)
    if node.state is NodeState.CANCELLED:
        return Text("cancelled", style=style)
    return Text(f"{node.items_done}/{node.items_total}", style=style)


def _overall(status: WorkflowStatus | None) -> Text:
    if status is None:
        return Text("submitting", style="dim")
    if status.state is NodeState.DONE and status.finished_at is not None:
        return Text(f"done {status.finished_at - status.created_at:.1f}s", style="green")
    return Text(status.state.value, style=_STATE_STYLE.get(status.state, ""))
