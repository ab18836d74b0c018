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
its version being the function's source hash.
"""

from flowmesh_core.client._async import AsyncClient
from flowmesh_core.client._python import python_operator
from flowmesh_core.client._sync import Client

__all__ = ["AsyncClient", "Client", "python_operator"]
