"""``flowmesh submit FILE [--wait]``: send a workflow or operator, and optionally follow it;
``flowmesh cancel ID``: cancel one.

The file is sent as written (YAML or JSON); the server validates it. With ``--wait`` a
progress bar per node follows the run, then the status table sums it up; the exit status
says how it ended (0 done, 1 failed or cancelled, 3 still running at --timeout, 130
interrupted; 2 is a user error as for every command). This module must never talk HTTP
itself (the client SDK does) nor draw progress bars when stdout is not a terminal.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn
from rich.table import Table
from rich.text import Text

from flowmesh_core.cli import _inspect
from flowmesh_core.cli._common import CliContext, console, err_console, pass_cli, reports_errors
from flowmesh_core.client import Client
from flowmesh_core.errors import InvalidInputError
from flowmesh_core.models.api import NodeState, SubmitResult, WorkflowStatus
from flowmesh_core.models.parse import parse_document

__all__ = [
    "EXIT_DONE",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_TIMEOUT",
    "POLL_INTERVAL_S",
    "cancel",
    "follow",
    "plan_table",
    "submit",
]

EXIT_DONE = 0
EXIT_FAILED = 1
EXIT_TIMEOUT = 3
EXIT_INTERRUPTED = 130  # the shell's convention for Ctrl-C
POLL_INTERVAL_S = 0.5
_TERMINAL = frozenset({NodeState.DONE, NodeState.FAILED, NodeState.CANCELLED})


def _read(file: Path) -> tuple[str, bool]:
    """The file's text, and whether it is a workflow (has ``nodes:``) or one operator."""
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise InvalidInputError(f"cannot read {file}: {reason or exc}") from exc
    data = parse_document(text, str(file))
    return text, isinstance(data, dict) and "nodes" in data


def plan_table(result: SubmitResult) -> Table:
    """Per node: op key, state, and how its items were placed at submission."""
    table = Table("node", "op key", "state", "items", "cache hits", "joined", "created")
    for column in table.columns[3:]:
        column.justify = "right"
    for plan in result.nodes:
        table.add_row(
            plan.node,
            _inspect.short_key(plan.op_key)
            or Text(f"after {', '.join(plan.waits_for)}", style="dim"),
            _inspect.state_text(plan.state),
            str(plan.items),
            str(plan.cache_hits),
            str(plan.joined),
            str(plan.created),
        )
    return table


def _update(progress: Progress, tasks: dict[str, TaskID], status: WorkflowStatus) -> None:
    for node in status.nodes:
        if node.node not in tasks:
            tasks[node.node] = progress.add_task(node.node, total=None, state="")
        progress.update(
            tasks[node.node],
            total=node.items_total or None,
            completed=node.items_done,
            state=str(node.state),
        )


def follow(client: Client, workflow_id: str, timeout: float | None) -> WorkflowStatus:
    """Poll the status every POLL_INTERVAL_S until done, failed or ``timeout``; the last one.

    The bars are drawn only on a terminal: piped output gets the final table alone.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[state]}"),
        console=console,
        auto_refresh=False,  # redrawn once per poll: no thread, nothing between polls
        disable=not console.is_terminal,
    )
    tasks: dict[str, TaskID] = {}
    with progress:
        while True:
            status = client.status(workflow_id, lineage=False)
            _update(progress, tasks, status)
            progress.refresh()
            remaining = None if deadline is None else deadline - time.monotonic()
            if status.state in _TERMINAL or (remaining is not None and remaining <= 0):
                return status
            time.sleep(POLL_INTERVAL_S if remaining is None else min(POLL_INTERVAL_S, remaining))


def _outcome(status: WorkflowStatus, timeout: float | None) -> int:
    """Say on stderr how the run ended unless it is done; the exit status."""
    if status.state == NodeState.DONE:
        return EXIT_DONE
    if status.state == NodeState.FAILED:
        failed = [n for n in status.nodes if n.state == NodeState.FAILED]
        for node in failed:
            message = f"workflow {status.workflow_id}, node {node.node}: {node.error or 'failed'}"
            err_console.print(Text.assemble(("failed: ", "bold red"), message))
        if not failed:
            err_console.print(Text.assemble(("failed: ", "bold red"), status.workflow_id))
        return EXIT_FAILED
    if status.state == NodeState.CANCELLED:
        err_console.print(Text.assemble(("cancelled: ", "bold yellow"), status.workflow_id))
        return EXIT_FAILED
    waited = f" after {timeout:g} s" if timeout is not None else ""
    err_console.print(
        f"timeout: workflow {status.workflow_id} is still {status.state}{waited}; "
        f"follow it with `flowmesh status {status.workflow_id}`",
        highlight=False,
    )
    return EXIT_TIMEOUT


@click.command()
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--wait", is_flag=True, help="Follow the run until it ends, then sum it up.")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0),
    default=None,
    help="With --wait: stop waiting after this many seconds (exit status 3).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (with --wait: the final status).")
@pass_cli
@reports_errors
def submit(cli: CliContext, file: Path, wait: bool, timeout: float | None, as_json: bool) -> None:
    """Submit the workflow (it has `nodes:`) or the single operator in FILE.

    Prints the workflow id and how each node will be satisfied (cache hits, work joined
    in flight, new work). With --wait, exits 0 when the workflow is done, 1 when it
    failed, 3 when --timeout passed first.
    """
    if timeout is not None and not wait:
        raise click.UsageError("--timeout applies only with --wait")
    text, is_workflow = _read(file)
    with _inspect.open_client(cli) as client:
        result = client.submit_workflow(text) if is_workflow else client.submit_operator(text)
        if not (wait and as_json):
            _print_submitted(result, as_json)
        if not wait:
            return
        status = _wait_for(client, result.workflow_id, timeout, bars=not as_json)
    if as_json:
        click.echo(status.model_dump_json(indent=2))
    else:
        _inspect.print_status(status, errors=False)
    code = _outcome(status, timeout)
    if code != EXIT_DONE:
        sys.exit(code)


def _wait_for(
    client: Client, workflow_id: str, timeout: float | None, bars: bool
) -> WorkflowStatus:
    """Wait (with bars, or on the long poll), then the final status with lineage.

    Ctrl-C stops the waiting, not the workflow: say so, and how to pick it up again.
    """
    try:
        if bars:
            follow(client, workflow_id, timeout)
        else:
            client.wait(workflow_id, timeout=timeout)
    except KeyboardInterrupt:
        err_console.print(
            f"stopped waiting; workflow {workflow_id} goes on running: "
            f"follow it with `flowmesh status {workflow_id}`",
            highlight=False,
        )
        sys.exit(EXIT_INTERRUPTED)
    return client.status(workflow_id, lineage=True)


def _print_submitted(result: SubmitResult, as_json: bool) -> None:
    if as_json:
        click.echo(result.model_dump_json(indent=2))
        return
    console.print(Text.assemble(("workflow ", "bold"), result.workflow_id), highlight=False)
    console.print(plan_table(result))


@click.command()
@click.argument("workflow_id")
@click.option("--json", "as_json", is_flag=True, help="Print the status after as JSON.")
@pass_cli
@reports_errors
def cancel(cli: CliContext, workflow_id: str, as_json: bool) -> None:
    """Cancel workflow WORKFLOW_ID: its unfinished work stops (work another workflow or
    tenant also asked for goes on for them). A finished workflow is left as it was."""
    with _inspect.open_client(cli) as client:
        status = client.cancel_workflow(workflow_id)
    if as_json:
        click.echo(status.model_dump_json(indent=2))
        return
    if status.state != NodeState.CANCELLED:
        err_console.print(
            f"workflow {workflow_id} had finished already ({status.state}); nothing changed",
            highlight=False,
        )
    _inspect.print_status(status)
