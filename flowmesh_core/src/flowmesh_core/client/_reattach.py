"""Submitting once per orchestrator task, and re-attaching on its retries: one policy.

An orchestrator task (an Airflow task instance, a Prefect task run, a Dagster step)
sends the same idempotency key on every try, so a retry gets its earlier submission
back (``replayed``) instead of creating a second one. An earlier submission that
*failed*, or was cancelled (an orchestrator's kill calls ``cancel_workflow``), is not
what a retry is for: the retry then submits afresh under a key derived
from the failed workflow's id (``KEY:after:ID``). Each failed link of that chain was made
by an earlier try, so every later try walks the same chain and re-attaches to the same
tail, and each try creates at most one workflow.

This module must never keep state between tries: everything is derived from the key.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from flowmesh_core.client._async import AsyncClient
from flowmesh_core.client._sync import Client
from flowmesh_core.errors import ConflictError
from flowmesh_core.models.api import NodeState, SubmitResult, WorkflowStatus

__all__ = ["Attached", "attach", "attach_async"]

Document = Mapping[str, Any] | str
_MAX_LINKS = 1000  # a chain this long means something submits in a loop


@dataclass(frozen=True)
class Attached:
    """The workflow a task's try is attached to: its submission, its status (without
    lineage), the key it is under, and the failed workflows the chain went past."""

    result: SubmitResult
    status: WorkflowStatus
    key: str
    failed_before: tuple[str, ...] = ()


def _after(key: str, failed_workflow_id: str) -> str:
    return f"{key}:after:{failed_workflow_id}"


def _endless(key: str) -> ConflictError:
    return ConflictError(
        f"more than {_MAX_LINKS} failed submissions under idempotency key {key!r}: "
        "fix what makes the work fail, or use a new key"
    )


def _past(result: SubmitResult, status: WorkflowStatus) -> bool:
    return result.replayed and status.state in (NodeState.FAILED, NodeState.CANCELLED)


def attach(client: Client, document: Document, *, key: str, workflow: bool) -> Attached:
    """Submit ``document`` (a workflow if ``workflow``, else an operator) under ``key``, or
    re-attach to what an earlier try submitted, following the chain past failed ones."""
    current, failed = key, list[str]()
    for _ in range(_MAX_LINKS):
        if workflow:
            result = client.submit_workflow(document, idempotency_key=current)
        else:
            result = client.submit_operator(document, idempotency_key=current)
        status = client.status(result.workflow_id, lineage=False)
        if not _past(result, status):
            return Attached(result, status, current, tuple(failed))
        failed.append(result.workflow_id)
        current = _after(key, result.workflow_id)
    raise _endless(key)


async def attach_async(
    client: AsyncClient, document: Document, *, key: str, workflow: bool
) -> Attached:
    """``attach`` for an AsyncClient."""
    current, failed = key, list[str]()
    for _ in range(_MAX_LINKS):
        if workflow:
            result = await client.submit_workflow(document, idempotency_key=current)
        else:
            result = await client.submit_operator(document, idempotency_key=current)
        status = await client.status(result.workflow_id, lineage=False)
        if not _past(result, status):
            return Attached(result, status, current, tuple(failed))
        failed.append(result.workflow_id)
        current = _after(key, result.workflow_id)
    raise _endless(key)
