"""``workflow_task``: a multi-node FlowMesh workflow as one Prefect task.

    run = workflow_task(credentials="team-a")
    scores = run(WORKFLOW_YAML, node="score")   # in a flow: one task run, one workflow

The workflow (a ``Workflow``, a mapping with ``nodes``, or YAML/JSON text) is submitted
whole, so FlowMesh plans, batches and dedups across its nodes and their data never pass
through Prefect; the task returns one node's result (default: the workflow's only final
node) as a value, or a ``FlowMeshRef``. Retries re-attach, failures, events and the
artifact behave as for ``flowmesh_task`` (they share ``_run`` and ``_ui``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, get_args

from prefect import Task
from prefect.tasks import TaskOptions

from flowmesh_core.errors import ConfigError, InvalidInputError
from flowmesh_core.models import Workflow
from flowmesh_core.models.parse import parse_document, parse_workflow
from flowmesh_prefect._run import current_attempt, run_operator
from flowmesh_prefect._ui import announcer, artifact_key, report, run_log
from flowmesh_prefect.credentials import CredentialsSource, resolve_credentials
from flowmesh_prefect.results import load_value
from flowmesh_prefect.tasks import FlowMeshTask, Returns, _as_flowmesh_task, _failures, _options

__all__ = ["WorkflowLike", "workflow_task"]

WorkflowLike = Workflow | Mapping[str, Any] | str
KIND = "workflow"


def parse(workflow: WorkflowLike) -> Workflow:
    """``workflow`` as a ``Workflow``: FlowMesh's own validation message when it is not."""
    if isinstance(workflow, Workflow):
        return workflow
    data: Any = workflow
    if isinstance(workflow, str):
        data = parse_document(workflow, "the FlowMesh workflow")
    if not isinstance(data, Mapping) or "nodes" not in data:
        raise InvalidInputError("a FlowMesh workflow is a mapping with 'nodes'")
    return parse_workflow(dict(data))


def result_node(workflow: Workflow, node: str | None) -> str:
    """``node`` if the workflow has it; by default its only final node (none reads it)."""
    return workflow.result_node(node, who="the task")


def workflow_task(
    *,
    credentials: CredentialsSource = None,
    returns: Returns = "value",
    timeout: float | None = None,
    artifact: bool | str = True,
    name: str = "flowmesh-workflow",
    task_options: TaskOptions | None = None,
) -> FlowMeshTask[[WorkflowLike, str | None], Any]:
    """A Prefect task that runs a whole FlowMesh workflow and returns one node's result.

    Call it with the workflow and, optionally, ``node``. ``credentials``, ``returns``,
    ``timeout``, ``artifact`` and ``task_options`` mean what they mean for
    ``flowmesh_task``; ``name`` is the task's name (and its artifact key's).
    """
    if returns not in get_args(Returns):
        raise ConfigError(f"returns must be 'value' or 'reference', not {returns!r}")
    key = None if artifact is False else (artifact_key(name) if artifact is True else artifact)

    def run(workflow: WorkflowLike, node: str | None = None) -> Any:
        parsed = parse(workflow)
        wanted = result_node(parsed, node)
        creds = resolve_credentials(credentials)
        with _failures(KIND, credentials), creds.get_client() as client:
            ref = run_operator(
                client, parsed, current_attempt(), timeout, run_log(), announcer(KIND), wanted
            )
            report(KIND, ref, key)
            return ref if returns == "reference" else load_value(client, ref.digest)

    run.__name__ = run.__qualname__ = name.replace("-", "_")
    options = _options(KIND, {"name": name, **(task_options or {})}, credentials)
    return _as_flowmesh_task(Task(run, **options), credentials)
