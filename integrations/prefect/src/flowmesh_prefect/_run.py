"""Submitting one operator for one Prefect task run, and waiting for it: sync and async.

Retries re-attach. Every submission carries an idempotency key made from the Prefect task
run's id, which stays the same across the retries of one task run, so a retry gets back
the workflow its earlier attempt created (running or finished) instead of a new one.
A workflow that *failed* is not worth re-attaching to (its answer would not change), so
attempt n walks the keys ``<run>``, ``<run>-attempt-2``, ... ``<run>-attempt-n`` and
stays on the first one whose workflow has not failed; the last key is submitted afresh.
Each attempt thus creates at most one workflow, and only after the previous one failed.

This module must never load results (``results`` does) nor talk to Prefect beyond
reading the task run's id.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from prefect.context import TaskRunContext

from flowmesh_core.client import AsyncClient, Client, WorkflowStatus, progress_summary
from flowmesh_core.errors import FlowMeshError
from flowmesh_core.models import Operator, Workflow
from flowmesh_prefect.errors import OperatorFailedError, OperatorTimeoutError
from flowmesh_prefect.results import FlowMeshRef, make_ref

__all__ = ["Attempt", "arun_operator", "current_attempt", "run_operator"]

Log = Callable[[str], None]
Announce = Callable[[Any], None]
"""Told of each submission's answer (a ``SubmitResult``): the Prefect event is sent there."""


def _quiet(_result: Any) -> None:
    return None


@dataclass(frozen=True)
class Attempt:
    """Which task run this is and which of its tries (``number`` counts from 1)."""

    task_run_id: str | None
    number: int = 1

    def keys(self) -> list[str | None]:
        """The idempotency keys to walk, oldest first (see the module docstring)."""
        if self.task_run_id is None:
            return [None]
        base = f"prefect-task-run-{self.task_run_id}"
        retries: list[str | None] = [f"{base}-attempt-{n}" for n in range(2, self.number + 1)]
        return [base, *retries]


def current_attempt() -> Attempt:
    """The running Prefect task run's id and try number; no id outside a task run."""
    context = TaskRunContext.get()
    if context is None:
        return Attempt(None)
    return Attempt(str(context.task_run.id), max(1, context.task_run.run_count))


def _submitted(log: Log, key: str | None, result: Any, announce: Announce) -> str:
    """Log and announce what a submission did; its workflow id."""
    announce(result)
    plans = result.nodes
    if result.replayed:
        log(f"re-attached to FlowMesh workflow {result.workflow_id} (idempotency key {key})")
    else:
        keys = ", ".join(f"{p.node} {p.op_key}" for p in plans) if len(plans) > 1 else None
        log(
            f"submitted FlowMesh workflow {result.workflow_id} "
            f"({'nodes: ' + keys if keys else 'op key ' + plans[0].op_key}): "
            f"{sum(p.items for p in plans)} item(s), {sum(p.cache_hits for p in plans)} "
            f"cached, {sum(p.joined for p in plans)} joined, "
            f"{sum(p.created for p in plans)} new"
        )
    return str(result.workflow_id)


# An earlier try whose workflow ended like this is not re-attached to: a retry submits afresh.
_ENDED_BADLY = ("failed", "cancelled")


def _check(status: Any, wait_s: float | None) -> None:
    """Raise unless the workflow is done: FlowMesh's own message when it failed."""
    if status.state == "done":
        return
    failed = [n for n in status.nodes if n.state == "failed"]
    node = failed[0] if failed else (status.nodes[0] if status.nodes else None)
    if status.state == "failed":
        raise OperatorFailedError(
            _failure_message(status.workflow_id, node),
            status.workflow_id,
            getattr(node, "op_key", None),
        )
    if status.state == "cancelled":
        raise OperatorFailedError(
            f"FlowMesh workflow {status.workflow_id} was cancelled (flowmesh cancel, the "
            "SDK's cancel_workflow, or this task's cancellation); a retry submits afresh",
            status.workflow_id,
            getattr(node, "op_key", None),
        )
    waited = "" if wait_s is None else f" after {wait_s:g} s"
    raise OperatorTimeoutError(
        f"FlowMesh workflow {status.workflow_id} is still {status.state}{waited}; the work "
        "goes on, and a retry of this task re-attaches to it",
        status.workflow_id,
    )


async def _cancel(client: AsyncClient, workflow_id: str, log: Log) -> None:
    try:
        status = await client.cancel_workflow(workflow_id)
    except FlowMeshError as exc:
        log(f"could not cancel FlowMesh workflow {workflow_id}: {exc}")
        return
    log(f"cancelled FlowMesh workflow {workflow_id} (now {status.state})")


def _failure_message(workflow_id: str, node: Any) -> str:
    """FlowMesh's own words: the node's error, else its items' distinct errors."""
    if node is None:
        reason = "the workflow has no node"
    else:
        errors = [node.error] if node.error else [r.error for r in node.lineage if r.error]
        reason = "; ".join(dict.fromkeys(errors)) or "no error message was recorded"
    where = f"op key {node.op_key}, " if node is not None and node.op_key else ""
    return f"FlowMesh operator failed ({where}workflow {workflow_id}): {reason}"


def _submit(client: Any, op: Operator | Workflow, key: str | None) -> Any:
    """The client's submit call for ``op`` (sync client: the answer; async: an awaitable)."""
    if isinstance(op, Workflow):
        return client.submit_workflow(op, idempotency_key=key)
    return client.submit_operator(op, idempotency_key=key)


def _progress(log: Log, workflow_id: str) -> Callable[[WorkflowStatus], None]:
    """A task log line per long-poll saying what the work waits on (the SDK's summary)."""
    return lambda status: log(f"FlowMesh workflow {workflow_id} {progress_summary(status)}")


def run_operator(
    client: Client,
    op: Operator | Workflow,
    attempt: Attempt,
    wait_s: float | None,
    log: Log,
    announce: Announce = _quiet,
    node: str | None = None,
) -> FlowMeshRef:
    """Submit (or re-attach), wait, and return a reference to the finished result (of
    ``node``, for a workflow of several).

    OperatorFailedError with FlowMesh's message when it failed, OperatorTimeoutError when
    ``wait_s`` seconds passed first; the client's own errors pass through unchanged.
    """
    *earlier, last = attempt.keys()
    workflow_id: str | None = None
    for key in earlier:
        candidate = _submitted(log, key, _submit(client, op, key), announce)
        if client.status(candidate, lineage=False).state not in _ENDED_BADLY:
            workflow_id = candidate
            break
    if workflow_id is None:
        workflow_id = _submitted(log, last, _submit(client, op, last), announce)
    status = client.wait(
        workflow_id, timeout=wait_s, lineage=True, progress=_progress(log, workflow_id)
    )
    _check(status, wait_s)
    return make_ref(status, node)


async def arun_operator(
    client: AsyncClient,
    op: Operator | Workflow,
    attempt: Attempt,
    wait_s: float | None,
    log: Log,
    announce: Announce = _quiet,
    node: str | None = None,
) -> FlowMeshRef:
    """Like ``run_operator``, for async tasks."""
    *earlier, last = attempt.keys()
    workflow_id: str | None = None
    for key in earlier:
        candidate = _submitted(log, key, await _submit(client, op, key), announce)
        if (await client.status(candidate, lineage=False)).state not in _ENDED_BADLY:
            workflow_id = candidate
            break
    if workflow_id is None:
        workflow_id = _submitted(log, last, await _submit(client, op, last), announce)
    try:
        status = await client.wait(
            workflow_id, timeout=wait_s, lineage=True, progress=_progress(log, workflow_id)
        )
    except asyncio.CancelledError:
        # Prefect cancelled the task: tell FlowMesh this request is gone (items others
        # also wait for go on for them), then let the cancellation proceed.
        await asyncio.shield(_cancel(client, workflow_id, log))
        raise
    _check(status, wait_s)
    return make_ref(status, node)
