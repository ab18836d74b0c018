"""What a finished (or abandoned) FlowMesh workflow becomes on the Airflow side.

``outcome(status, node)`` is the one event both waiting paths produce (the trigger's
``TriggerEvent`` payload, and the blocking mode's return): a small JSON dict with
``status`` (``done``, ``failed``, ``cancelled``, ``timeout`` or ``error``), the workflow
id, and either the XCom ``reference`` or FlowMesh's ``message``. ``finish(event)`` turns it into the
task's return value or its exception.

A reference names the result (its digest, op key, and how its items were satisfied);
it never carries the result's bytes, however small: XCom rows live in Airflow's database.
This module must stay pure (no I/O), so both paths share it unchanged.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

from airflow.sdk.exceptions import AirflowException

from flowmesh_core.client import progress_summary as summary
from flowmesh_core.models import Satisfaction

if TYPE_CHECKING:  # the client's return types; never imported at run time
    from flowmesh_core.models.api import NodeStatus, WorkflowStatus

__all__ = ["TERMINAL", "error_event", "finish", "outcome", "summary", "timeout_event"]

TERMINAL = frozenset({"done", "failed", "cancelled"})
MIXED = "mixed"


def _node_reference(node: NodeStatus) -> dict[str, Any]:
    counts = Counter(str(record.satisfied_by) for record in node.lineage)
    kinds = [kind for kind in counts if counts[kind]]
    return {
        "op_key": node.op_key,
        "result_digest": node.result_digest,
        "satisfied_by": kinds[0] if len(kinds) == 1 else (MIXED if kinds else None),
        "items": {"total": node.items_total, **{str(s): counts[str(s)] for s in Satisfaction}},
    }


def reference(status: WorkflowStatus, node: str) -> dict[str, Any]:
    """The XCom value of a done workflow: ``node``'s result by reference.

    ``satisfied_by`` is ``executed``, ``cache_hit`` or ``joined`` when every item was
    satisfied the same way, else ``mixed`` (``items`` has the counts). A workflow of
    several nodes also lists each node's reference under ``nodes``.
    """
    nodes = {n.node: n for n in status.nodes}
    ref: dict[str, Any] = {
        "workflow_id": status.workflow_id,
        "node": node,
        **_node_reference(nodes[node]),
    }
    if len(nodes) > 1:
        ref["nodes"] = {name: _node_reference(n) for name, n in nodes.items()}
    return ref


def failure_message(status: WorkflowStatus) -> str:
    """FlowMesh's own words for why a workflow failed, node by node."""
    reasons = []
    for node in status.nodes:
        if node.state != "failed":
            continue
        errors = [node.error] if node.error else []
        for record in node.lineage:  # items' own errors, unless the node's already says it
            if record.error and not any(record.error in known for known in errors):
                errors.append(record.error)
        reasons.append(f"node {node.node!r}: {'; '.join(errors[:3]) or 'failed (no message)'}")
    detail = "; ".join(reasons) or "no node reports an error"
    return f"FlowMesh workflow {status.workflow_id} failed: {detail}"


def outcome(status: WorkflowStatus, node: str) -> dict[str, Any]:
    """The event for a workflow in a terminal state (``status`` fetched with lineage)."""
    if status.state == "done":
        return {
            "status": "done",
            "workflow_id": status.workflow_id,
            "reference": reference(status, node),
        }
    if status.state == "cancelled":
        return {
            "status": "cancelled",
            "workflow_id": status.workflow_id,
            "message": (
                f"FlowMesh workflow {status.workflow_id} was cancelled "
                "(DELETE /v1/workflows/ID, flowmesh cancel, or this task's kill); "
                "a retry of this task submits afresh"
            ),
        }
    return {
        "status": "failed",
        "workflow_id": status.workflow_id,
        "message": failure_message(status),
    }


def timeout_event(
    workflow_id: str, timeout_s: float, status: WorkflowStatus | None
) -> dict[str, Any]:
    """The event for a workflow that was not finished by the task's deadline."""
    where = f" ({summary(status)})" if status is not None else ""
    return {
        "status": "timeout",
        "workflow_id": workflow_id,
        "message": (
            f"FlowMesh workflow {workflow_id} did not finish within the task's timeout of "
            f"{timeout_s:g} s{where}; it keeps running in FlowMesh, and a retry of this "
            "task re-attaches to it"
        ),
    }


def error_event(workflow_id: str, message: str) -> dict[str, Any]:
    """The event for a wait that FlowMesh's client gave up on (unreachable, refused...)."""
    return {"status": "error", "workflow_id": workflow_id, "message": message}


def finish(event: dict[str, Any]) -> dict[str, Any]:
    """The task's return value (the XCom reference) for a ``done`` event.

    Raises AirflowException with FlowMesh's message for any other event.
    """
    if event.get("status") == "done":
        ref: dict[str, Any] = event["reference"]
        return ref
    message = event.get("message") or f"unexpected FlowMesh event {event!r}"
    raise AirflowException(message)
