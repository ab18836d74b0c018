"""Submitting once per task instance: idempotency keys, and re-attaching on retry.

A task instance (dag, run, task, map index) sends the same idempotency key on every
try, so a retry gets its earlier submission back instead of creating a second one. The
try number is deliberately not in the key. One exception: an earlier submission that
*failed* in FlowMesh is not what a retry is for, so the retry submits afresh under a key
derived from the failed workflow's id. Each failed link of that chain was made by an
earlier try, so every later try walks the same chain and re-attaches to the same tail.

This module must never hold a workflow in memory between tries: everything a retry
needs is derived again from the task instance's identity.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from flowmesh_core.client import Client

if TYPE_CHECKING:  # the client's return types; never imported at run time
    from flowmesh_core.models.api import SubmitResult, WorkflowStatus

__all__ = ["Submission", "idempotency_key", "submit"]

KEY_PREFIX = "airflow:"


def idempotency_key(dag_id: str, run_id: str, task_id: str, map_index: int) -> str:
    """The key of one task instance: the same on every try (no try number in it)."""
    identity = json.dumps([dag_id, run_id, task_id, map_index], separators=(",", ":"))
    return KEY_PREFIX + hashlib.sha256(identity.encode("utf-8")).hexdigest()


def _after(key: str, failed_workflow_id: str) -> str:
    return f"{key}:after:{failed_workflow_id}"


@dataclass(frozen=True)
class Submission:
    """Where a task's work stands right after submitting: its workflow and its status."""

    result: SubmitResult
    status: WorkflowStatus
    key: str


def submit(
    client: Client,
    document: Mapping[str, Any] | str,
    *,
    workflow: bool,
    key: str,
    log: Callable[..., None],
) -> Submission:
    """Submit ``document`` under ``key``, or re-attach to what an earlier try submitted.

    Follows the chain past earlier submissions that failed (see the module docstring);
    the answer is never a replayed failure, only a fresh submission's.
    """
    base = key
    while True:
        if workflow:
            result = client.submit_workflow(document, idempotency_key=key)
        else:
            result = client.submit_operator(document, idempotency_key=key)
        status = client.status(result.workflow_id, lineage=False)
        if not (result.replayed and status.state in ("failed", "cancelled")):
            return Submission(result=result, status=status, key=key)
        log(
            "An earlier try's FlowMesh workflow %s failed or was cancelled; submitting afresh",
            result.workflow_id,
        )
        key = _after(base, result.workflow_id)
