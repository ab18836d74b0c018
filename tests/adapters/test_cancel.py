"""Cancelling from the orchestrators: a killed task, a cancelled async task and a
terminated run tell FlowMesh, and a workflow cancelled elsewhere fails the task with
FlowMesh's words instead of being waited on for ever (docs/isolation.md, "Cancelling").

One live control plane and worker (``live``); the Airflow operator's ``on_kill`` runs in
its own process, as Airflow runs it, with the connection from the environment.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import dagster as dg
import pytest

from flowmesh_core.client import AsyncClient, Client, python_operator
from flowmesh_core.models import Operator
from flowmesh_dagster import FlowMeshResource
from flowmesh_prefect import OperatorFailedError
from flowmesh_prefect._run import Attempt, arun_operator, run_operator
from tests.adapters.conftest import Live
from tests.integration.procs import ROOT
from tests.worker import ops

pytestmark = [pytest.mark.redis, pytest.mark.timeout(180)]

SLOW_S = 60.0  # longer than any test here waits: only a cancel ends these workflows early


def _slow(tag: str) -> Operator:
    """An operator no other test asks for, that would keep the worker busy for SLOW_S."""
    return python_operator(ops.slow_echo, {"x": f"{tag}-{uuid.uuid4().hex}"}, delay=SLOW_S)


def test_a_cancelled_async_prefect_wait_cancels_the_workflow(live: Live) -> None:
    _name, token = live.tenant("prefect-cancel")
    seen: list[str] = []

    async def scenario() -> str:
        submitted = asyncio.Event()
        async with AsyncClient(live.url, token) as client:

            def log(line: str) -> None:
                seen.append(line)
                if line.startswith("submitted FlowMesh workflow"):
                    submitted.set()

            task = asyncio.create_task(
                arun_operator(
                    client,
                    _slow("prefect"),
                    Attempt(uuid.uuid4().hex),
                    None,
                    log,
                )
            )
            await asyncio.wait_for(submitted.wait(), 60)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            workflow_id = seen[0].split()[3]
            return (await client.status(workflow_id, lineage=False)).state

    assert asyncio.run(scenario()) == "cancelled"
    assert any(line.startswith("cancelled FlowMesh workflow") for line in seen), seen


def test_a_workflow_cancelled_elsewhere_fails_the_prefect_task_with_a_clear_message(
    live: Live,
) -> None:
    _name, token = live.tenant("prefect-elsewhere")
    run = Attempt(uuid.uuid4().hex)
    op = _slow("elsewhere")
    with Client(live.url, token) as client:
        # The task's first try submitted under its key; someone cancelled the workflow.
        submitted = client.submit_operator(op, idempotency_key=run.keys()[0])
        client.cancel_workflow(submitted.workflow_id)
        # The task re-attaches to it and is answered at once, not left waiting.
        with pytest.raises(OperatorFailedError, match="was cancelled"):
            run_operator(client, op, run, 30.0, lambda _line: None)


def test_the_airflow_operators_on_kill_cancels_its_workflow(live: Live, tmp_path: Path) -> None:
    _name, token = live.tenant("airflow-kill")
    with Client(live.url, token) as client:
        workflow_id = client.submit_operator(_slow("airflow")).workflow_id
        script = (
            "from flowmesh_airflow import FlowMeshOperator\n"
            "op = FlowMeshOperator(task_id='t', operator={'kind': 'data.template'})\n"
            f"op._workflow_id = {workflow_id!r}  # what execute() keeps while it waits\n"
            "op.on_kill()\n"
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith(("FLOWMESH_", "AIRFLOW"))}
        env.update(
            PYTHONPATH=str(ROOT),
            AIRFLOW_HOME=str(tmp_path / "airflow"),
            AIRFLOW__CORE__LOAD_EXAMPLES="False",
            AIRFLOW_CONN_FLOWMESH_DEFAULT=json.dumps(
                {"conn_type": "flowmesh", "host": live.url, "password": token}
            ),
        )
        done = subprocess.run(
            [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=150
        )
        assert done.returncode == 0, done.stderr
        assert client.status(workflow_id, lineage=False).state == "cancelled"


def test_a_dagster_wait_on_a_cancelled_workflow_is_a_failure_without_retries(
    live: Live,
) -> None:
    _name, token = live.tenant("dagster-cancel")
    resource = FlowMeshResource(server_url=live.url, token=token)
    context = dg.build_op_context()
    submission = resource.submit(context, _slow("dagster"))
    with Client(live.url, token) as client:
        client.cancel_workflow(submission.workflow_id)
    with pytest.raises(dg.Failure, match="was cancelled") as failure:
        resource.wait(context, submission)
    assert failure.value.allow_retries is False


def test_terminating_a_dagster_run_cancels_its_workflow(live: Live, tmp_path: Path) -> None:
    """A real materialization, interrupted while its asset waits on FlowMesh (SIGINT, as
    Dagster terminates a step process, once the wait has logged its first progress line):
    the resource tells FlowMesh before it stops."""
    _name, token = live.tenant("dagster-terminate")
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "FM_URL": live.url,
        "FM_TOKEN": token,
        "FM_TAG": f"terminate-{uuid.uuid4().hex}",
    }
    log = tmp_path / "run.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, str(ROOT / "tests" / "adapters" / "dagster_terminate.py")],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 120
        while not (found := re.search(r"FlowMesh workflow (\w+) running", log.read_text())):
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        workflow_id = found.group(1)
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    with Client(live.url, token) as client:
        assert client.status(workflow_id, lineage=False).state == "cancelled", log.read_text()
    assert f"cancelled FlowMesh workflow {workflow_id}" in log.read_text()
