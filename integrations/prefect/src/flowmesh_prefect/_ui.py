"""What a FlowMesh task shows in the Prefect UI beyond its name and tags: logs, an artifact.

Every task run logs its FlowMesh workflow id, op key and how the work was satisfied, and
(unless ``artifact=False``) publishes a small markdown artifact with the same facts and
the attributed cost, so a person can go from a Prefect run to ``flowmesh status <id>``.

This module must never fail a task whose FlowMesh work succeeded for a reason of its own:
it only reports.
"""

from __future__ import annotations

from collections.abc import Callable

from prefect.artifacts import acreate_markdown_artifact, create_markdown_artifact
from prefect.logging import get_run_logger

from flowmesh_prefect.results import FlowMeshRef

__all__ = ["areport", "report", "run_log"]


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


def report(kind: str, ref: FlowMeshRef, artifact: bool) -> None:
    """Log the outcome, and publish it as an artifact when asked (blocking)."""
    run_log()(f"FlowMesh {kind} done: result {ref.digest}, {_summary(ref)}")
    if not artifact:
        return
    try:
        create_markdown_artifact(
            markdown=_markdown(kind, ref),
            description=_description(kind, ref),
            _sync=True,  # type: ignore[call-arg]
        )
    except Exception as exc:
        _artifact_failed(exc)


async def areport(kind: str, ref: FlowMeshRef, artifact: bool) -> None:
    """Like ``report``, for async tasks."""
    run_log()(f"FlowMesh {kind} done: result {ref.digest}, {_summary(ref)}")
    if not artifact:
        return
    try:
        await acreate_markdown_artifact(
            markdown=_markdown(kind, ref), description=_description(kind, ref)
        )
    except Exception as exc:
        _artifact_failed(exc)
