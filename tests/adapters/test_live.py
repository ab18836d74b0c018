"""The live fixture itself: a tenant's operator runs on the real worker over HTTP."""

from __future__ import annotations

from flowmesh_core.client import Client, python_operator
from tests.adapters.conftest import Live
from tests.worker import ops


def test_an_operator_runs_on_the_live_fabric(live: Live) -> None:
    _name, token = live.tenant("smoke")
    with Client(live.url, token=token) as client:
        submitted = client.submit_operator(python_operator(ops.add, {"a": 2, "b": 3}))
        status = client.wait(submitted.workflow_id, timeout=30)
        assert status.state == "done", live.logs()
        assert client.result_json(status.nodes[0].result_digest) == 5
