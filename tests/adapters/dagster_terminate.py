"""Materialize one asset that waits on slow FlowMesh work, until this process is
interrupted (test_cancel.py sends SIGINT, as terminating a run does to its step process).
The wait logs its progress every half second, so the test can interrupt it mid-wait.

    FM_URL=... FM_TOKEN=... FM_TAG=... python tests/adapters/dagster_terminate.py
"""

# No `from __future__ import annotations`: Dagster reads the asset's annotations as types.

import os
from typing import Any

import dagster as dg

from flowmesh_core.client import _shared, python_operator
from flowmesh_dagster import FlowMeshResource
from tests.worker import ops


@dg.asset
def slow(context: dg.AssetExecutionContext, flowmesh: FlowMeshResource) -> Any:
    work = python_operator(ops.slow_echo, {"x": os.environ["FM_TAG"]}, delay=60.0)
    return flowmesh.run(context, work).value


if __name__ == "__main__":
    _shared.PROGRESS_EVERY_S = 0.5
    resource = FlowMeshResource(server_url=os.environ["FM_URL"], token=os.environ["FM_TOKEN"])
    with dg.DagsterInstance.ephemeral() as instance:
        dg.materialize([slow], instance=instance, resources={"flowmesh": resource})
