"""The FlowMesh client SDK: submit work, wait for it, read lineage and verified results.

``Client`` blocks, ``AsyncClient`` is for asyncio; both take the same arguments and have
the same methods, and raise only FlowMeshError subclasses. Orchestrator adapters build on
these and never talk HTTP themselves.

    with Client() as fm:                       # FLOWMESH_SERVER_URL, FLOWMESH_TOKEN
        run = fm.submit_workflow(open("flow.yaml").read())
        status = fm.wait(run.workflow_id, timeout=600)
        if status.state == "done":
            data = fm.result_json(status.nodes[-1].result_digest)

``python_operator(fn, inputs, **kwargs)`` builds a ``python`` operator from a function,
its version being the function's source hash. ``attach(client, doc, key=..., workflow=...)``
(``attach_async`` for an AsyncClient) is the one re-attach policy for orchestrator tasks:
a retry re-attaches to its earlier try's workflow unless that one failed or was cancelled.
``progress_summary(status)`` is the one line saying what unfinished work waits on
(queued, loading a model on a worker, running); ``wait(..., progress=fn)`` calls ``fn``
with each status seen while waiting, every ``PROGRESS_EVERY_S`` seconds.
The value types the methods return are re-exported here. Importing this package never imports the
control plane or Redis.
"""

from flowmesh_core.client._async import AsyncClient
from flowmesh_core.client._progress import progress_summary
from flowmesh_core.client._python import python_operator
from flowmesh_core.client._reattach import Attached, attach, attach_async
from flowmesh_core.client._sync import Client
from flowmesh_core.models.api import (
    NodePlan,
    NodeState,
    NodeStatus,
    StatsReport,
    SubmitResult,
    WorkflowStatus,
)

__all__ = [
    "AsyncClient",
    "Attached",
    "Client",
    "NodePlan",
    "NodeState",
    "NodeStatus",
    "StatsReport",
    "SubmitResult",
    "WorkflowStatus",
    "attach",
    "attach_async",
    "progress_summary",
    "python_operator",
]
