"""What a FlowMesh task shows in Prefect beyond its name and tags: logs, artifacts, events.

Every task run logs its FlowMesh workflow id, op key and how the work was satisfied, and
(unless ``artifact=False``) publishes a small markdown artifact with the same facts and
the attributed cost, so a person can go from a Prefect run to ``flowmesh status <id>``.
The artifact is keyed (``flowmesh-<task name>`` by default), so each run adds a version
to one artifact the UI tracks over time.

Events, for automations: ``flowmesh.workflow.submitted`` (or ``.reattached``, a retry's)
when a workflow is submitted, ``flowmesh.workflow.done`` or ``.failed`` when it ends. The
resource is ``flowmesh.workflow.<id>``; Prefect relates each event to the task and flow
run that sent it. Payloads hold ids, digests and counts, never a token or a value.

This module must never fail a task whose FlowMesh work succeeded for a reason of its own:
it only reports.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from prefect.artifacts import acreate_markdown_artifact, create_markdown_artifact
from prefect.events import emit_event
from prefect.logging import get_run_logger

from flowmesh_prefect.results import FlowMeshRef

__all__ = ["announcer", "areport", "artifact_key", "emit_failed", "report", "run_log"]


def artifact_key(name: str) -> str:
    """A Prefect artifact key (lowercase letters, digits, dashes) for task ``name``."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    return f"flowmesh-{slug or 'task'}"


def _resource(workflow_id: str, kind: str) -> dict[str, str]:
    return {
        "prefect.resource.id": f"flowmesh.workflow.{workflow_id}",
        "prefect.resource.name": f"FlowMesh {kind} workflow {workflow_id}",
        "flowmesh.kind": kind,
    }


def announcer(kind: str) -> Callable[[Any], None]:
    """What ``run_operator`` calls with each submission's answer: the submitted event."""

    def announce(result: Any) -> None:
        plans = result.nodes
        what = "reattached" if result.replayed else "submitted"
        emit_event(
            event=f"flowmesh.workflow.{what}",
            resource=_resource(str(result.workflow_id), kind),
            payload={
                "op_keys": {p.node: p.op_key for p in plans},
                "items": sum(p.items for p in plans),
                "cache_hits": sum(p.cache_hits for p in plans),
                "joined": sum(p.joined for p in plans),
                "created": sum(p.created for p in plans),
            },
        )

    return announce


def _emit_done(kind: str, ref: FlowMeshRef) -> None:
    emit_event(
        event="flowmesh.workflow.done",
        resource=_resource(ref.workflow_id, kind),
        payload={
            "op_key": ref.op_key,
            "result_digest": ref.digest,
            "satisfied_by": ref.satisfied_by,
            "items": ref.items,
            "executed": ref.executed,
            "cache_hits": ref.cache_hits,
            "joined": ref.joined,
            "cost_usd": ref.cost_usd,
        },
    )


def emit_failed(kind: str, workflow_id: str, op_key: str | None, message: str) -> None:
    """The failed event of a workflow that ended in failure (the task then fails)."""
    emit_event(
        event="flowmesh.workflow.failed",
        resource=_resource(workflow_id, kind),
        payload={"op_key": op_key, "message": message},
    )


def run_log() -> Callable[[str], None]:
    """``info`` of the current task run's logger (shown under the run in the UI)."""
    logger = get_run_logger()
    return lambda message: logger.info(message)


def _summary(ref: FlowMeshRef) -> str:
    return (
        f"{ref.items} item(s): {ref.executed} executed, {ref.cache_hits} from the action "
        f"cache, {ref.joined} joined work in flight"
    )


def _markdown(kind: str, ref: FlowMeshRef) -> str:
    rows = [
        ("kind", f"`{kind}`"),
        ("workflow", f"`{ref.workflow_id}`"),
        ("op key", f"`{ref.op_key}`"),
        ("result", f"`{ref.digest}`"),
        ("satisfied by", f"{ref.satisfied_by} ({_summary(ref)})"),
        ("attributed cost", f"${ref.cost_usd:.6f}"),
    ]
    table = "\n".join(f"| {name} | {value} |" for name, value in rows)
    return f"### FlowMesh operator\n\n| | |\n|---|---|\n{table}\n"


def _description(kind: str, ref: FlowMeshRef) -> str:
    return f"FlowMesh {kind}: {ref.satisfied_by}, workflow {ref.workflow_id}"


def _artifact_failed(exc: Exception) -> None:
    # The FlowMesh work is done and its result is in hand: a hiccup of Prefect's API
    # while publishing a summary must not fail (and so re-run) the task.
    get_run_logger().warning(f"could not publish the FlowMesh artifact: {exc!r}")


def report(kind: str, ref: FlowMeshRef, artifact: str | None) -> None:
    """Log the outcome, send the done event, and publish the artifact under the key
    ``artifact`` unless it is None (blocking)."""
    run_log()(f"FlowMesh {kind} done: result {ref.digest}, {_summary(ref)}")
    _emit_done(kind, ref)
    if artifact is None:
        return
    try:
        create_markdown_artifact(
            key=artifact,
            markdown=_markdown(kind, ref),
            description=_description(kind, ref),
            _sync=True,  # type: ignore[call-arg]
        )
    except Exception as exc:
        _artifact_failed(exc)


async def areport(kind: str, ref: FlowMeshRef, artifact: str | None) -> None:
    """Like ``report``, for async tasks."""
    run_log()(f"FlowMesh {kind} done: result {ref.digest}, {_summary(ref)}")
    _emit_done(kind, ref)
    if artifact is None:
        return
    try:
        await acreate_markdown_artifact(
            key=artifact, markdown=_markdown(kind, ref), description=_description(kind, ref)
        )
    except Exception as exc:
        _artifact_failed(exc)
