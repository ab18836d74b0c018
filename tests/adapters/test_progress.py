"""While a worker loads a model, each orchestrator's log says so, naming model and worker.

The fabric here has one real worker whose model loads take FM_SLOW_LOAD_S seconds longer
(``slow_load.py``): a cold start that lasts long enough to be seen. Each orchestrator
runs work on a model no other test here uses (so its load is cold), with the progress
interval cut to a second, and its own log (Prefect's task log, Dagster's run log,
Airflow's trigger log) must carry the SDK's progress line: ``loading model <model> on
adapter-worker``. The line itself is unit-tested in tests/unit/test_progress_summary.py.
"""

# No `from __future__ import annotations`: Dagster reads the asset's annotations as types.

import logging
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from prefect import flow

from flowmesh_core.client import _shared
from flowmesh_dagster import FlowMeshResource
from flowmesh_prefect import FlowMeshCredentials, computed_on_flowmesh, flowmesh_task
from tests.adapters.airflow_run import run_across
from tests.adapters.conftest import Live, running, temporary_prefect_server

pytestmark = [pytest.mark.redis, pytest.mark.timeout(400)]

SLOW_LOAD_S = 6
HERE = Path(__file__).parent


@pytest.fixture(scope="module")
def slow(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    prefix = [sys.executable, str(HERE / "slow_load.py")]
    directory = tmp_path_factory.mktemp("slow")
    with running(redis_url, directory, prefix, FM_SLOW_LOAD_S=str(SLOW_LOAD_S)) as fabric:
        yield fabric


@pytest.fixture
def every_second(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_shared, "PROGRESS_EVERY_S", 1.0)


def _loading(lines: list[str], model: str) -> list[str]:
    return [line for line in lines if f"loading model {model} on adapter-worker" in line]


def test_prefect_logs_the_model_load(
    slow: Live, every_second: None, caplog: pytest.LogCaptureFixture
) -> None:
    creds = FlowMeshCredentials(server_url=slow.url, token=slow.tenant("prefect")[1])

    @flowmesh_task(kind="embed", model="all-MiniLM-L6-v2", credentials=creds)
    def embed(texts: list[str]) -> list[list[float]]:
        """Embeddings, on a worker that has never loaded the model."""
        return computed_on_flowmesh()

    @flow
    def index() -> int:
        return len(embed([f"cold start {uuid.uuid4().hex[:8]}"]))

    with temporary_prefect_server(), caplog.at_level(logging.INFO):
        assert index() == 1
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("prefect.task_runs")]
    # The worker names the model as it resolved it (the name's canonical form).
    assert _loading(lines, "sentence-transformers/all-MiniLM-L6-v2"), "\n".join(lines)


def test_dagster_logs_the_model_load(slow: Live, every_second: None) -> None:
    token = slow.tenant("dagster")[1]
    pair = {"prompt": "Name a river.", "completion": f"The {uuid.uuid4().hex[:6]}."}

    @dg.asset
    def scores(context: dg.AssetExecutionContext, flowmesh: FlowMeshResource) -> Any:
        operator = {"kind": "score", "model": "flowmesh/tiny-reward", "inputs": {"pairs": [pair]}}
        return flowmesh.run(context, operator).value

    with dg.DagsterInstance.ephemeral() as instance:
        result = dg.materialize(
            [scores],
            instance=instance,
            resources={"flowmesh": FlowMeshResource(server_url=slow.url, token=token)},
        )
        assert result.success
        lines = [e.user_message for e in instance.all_logs(result.run_id)]
    assert _loading(lines, "flowmesh/tiny-reward"), "\n".join(lines)


def test_airflow_logs_the_model_load(slow: Live, tmp_path: Path) -> None:
    """The trigger's progress line, from a DAG run in Airflow (``airflow_dags/run.py``,
    with the trigger's poll cut to a second); it logs to the runner's output."""
    token = slow.tenant("airflow")[1]
    spec = {
        "kind": "llm.generate",
        "model": "flowmesh/tiny-gpt",
        "params": {"max_new_tokens": 4},
        "inputs": {"prompts": [f"A cold start {uuid.uuid4().hex[:6]}"]},
    }
    dag, output = run_across(slow, token, spec, tmp_path, FM_POLL_SLICE_S="1")
    assert dag["state"] == "success", dag
    assert _loading(output.splitlines(), "flowmesh/tiny-gpt"), output[-6000:]
