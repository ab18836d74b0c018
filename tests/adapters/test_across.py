"""One operator, three orchestrators, three tenants: it executes once.

An Airflow DAG (tenant A), a Prefect flow (tenant B) and a Dagster asset (tenant C)
submit the same operator to one live FlowMesh (real ``flowmesh serve`` and ``flowmesh
worker`` processes on the real Redis). The work runs once; all three get the result;
each tenant's lineage records its own request and how it was satisfied.
"""

import uuid
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from dagster import AssetExecutionContext
from prefect import flow

from flowmesh_core.client import Client
from flowmesh_dagster import FlowMeshResource
from flowmesh_prefect import FlowMeshCredentials, FlowMeshRef, flowmesh_task
from tests.adapters.airflow_run import run_across
from tests.adapters.conftest import Live

ROOT = Path(__file__).resolve().parents[2]
DAGS = Path(__file__).with_name("airflow_dags")


@pytest.fixture(scope="module")
def operator() -> dict[str, Any]:
    """Work nobody asked for before: a template with a fresh tag, over two records."""
    tag = uuid.uuid4().hex[:8]
    return {
        "kind": "data.template",
        "params": {"template": f"[{tag}] {{text}}"},
        "inputs": {"records": ["shared by three", "orchestrators"]},
    }


def run_airflow(live: Live, token: str, spec: dict[str, Any], tmp: Path) -> dict[str, Any]:
    """The DAG run in its own process and AIRFLOW_HOME; the shared task's XCom."""
    dag, _output = run_across(live, token, spec, tmp)
    assert dag["state"] == "success", dag
    xcom: dict[str, Any] = dag["tasks"]["shared"]["xcom"]
    return xcom


def run_prefect(live: Live, token: str, spec: dict[str, Any]) -> FlowMeshRef:
    credentials = FlowMeshCredentials(server_url=live.url, token=token)

    @flowmesh_task(
        kind=spec["kind"], credentials=credentials, returns="reference", **spec["params"]
    )
    def render(records: list[str]) -> Any:
        """The shared operator, as a Prefect task."""

    @flow
    def pipeline() -> FlowMeshRef:
        ref: FlowMeshRef = render(spec["inputs"]["records"])
        return ref

    return pipeline()


def run_dagster(live: Live, token: str, spec: dict[str, Any]) -> dict[str, Any]:
    seen: dict[str, Any] = {}

    @dg.asset
    def shared(context: AssetExecutionContext, flowmesh: FlowMeshResource) -> Any:
        result = flowmesh.run(context, spec)
        seen.update(workflow_id=result.workflow_id, value=result.value)
        return result.value

    outcome = dg.materialize(
        [shared],
        resources={"flowmesh": FlowMeshResource(server_url=live.url, token=token)},
        instance=dg.DagsterInstance.ephemeral(),
    )
    assert outcome.success
    return seen


@pytest.mark.timeout(300)
def test_one_operator_from_three_orchestrators_executes_once(
    live: Live, operator: dict[str, Any], prefect_server: None, tmp_path: Path
) -> None:
    (a, token_a), (b, token_b), (c, token_c) = (live.tenant(n) for n in "abc")
    xcom = run_airflow(live, token_a, operator, tmp_path)
    ref = run_prefect(live, token_b, operator)
    seen = run_dagster(live, token_c, operator)

    expected = [
        f"{operator['params']['template'].split()[0]} {r}"
        for r in ("shared by three", "orchestrators")
    ]
    with Client(live.url, token=token_a) as client:
        assert [
            client.result_json(d) for d in client.result_json(xcom["result_digest"])["manifest"]
        ] == expected
    assert seen["value"] == expected
    assert ref.digest == xcom["result_digest"]  # the same result, by content

    ways = {}
    for name, token, wf_id in (
        (a, token_a, xcom["workflow_id"]),
        (b, token_b, ref.workflow_id),
        (c, token_c, seen["workflow_id"]),
    ):
        with Client(live.url, token=token) as client:
            records = client.lineage(wf_id)
            assert {r.tenant for r in records} == {name}  # each sees only its own request
            ways[name] = sorted(r.satisfied_by.value for r in records)
    assert ways == {
        a: ["executed", "executed"],
        b: ["cache_hit", "cache_hit"],
        c: ["cache_hit", "cache_hit"],
    }
    _admin, admin_token = live.tenant("ops", admin=True)
    with Client(live.url, token=admin_token) as client:
        assert client.stats().executed == 2  # two items, run once for three tenants
