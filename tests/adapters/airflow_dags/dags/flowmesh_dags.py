"""DAGs that test_airflow.py runs with ``dag.test()`` against the live FlowMesh fixture.

Each DAG exercises one behaviour of the provider; ``FM_AIRFLOW_OUT`` is a directory the
test reads afterwards (what a downstream task received, what a failure callback saw), and
``FM_EXEC_LOG`` is the file ``logged_echo`` appends one line to per execution.
Connections come from the environment: ``flowmesh_default`` (a live tenant) and
``flowmesh_nowhere`` (a port nobody listens on).
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from airflow.sdk import DAG, Asset, AssetAlias, task

from flowmesh_airflow import FlowMeshHook, FlowMeshOperator, FlowMeshWorkflowSensor
from flowmesh_core.client import python_operator
from flowmesh_core.hashing import function_version
from tests.worker import ops

START = datetime(2026, 1, 1)
OUT = Path(os.environ.get("FM_AIRFLOW_OUT", "/nonexistent"))
EXEC_LOG = os.environ.get("FM_EXEC_LOG", "/nonexistent")


def _record_failure(context: Any) -> None:
    """Write down the exception Airflow failed (or retried) the task with, per try."""
    ti = context["ti"]
    path = OUT / f"failure-{ti.dag_id}-{ti.task_id}-{ti.try_number}.json"
    path.write_text(json.dumps({"error": str(context.get("exception"))}))


@task
def record(first: Any, second: Any, third: Any, flow: Any) -> None:
    """What downstream tasks receive from the FlowMesh tasks' XComs, and the values the
    hook reads from them (docs/airflow.md, "Results")."""
    hook = FlowMeshHook()
    values = {"first": hook.read(first), "flow": hook.read(flow["result_digest"])}
    received = {"first": first, "second": second, "third": third, "flow": flow, "values": values}
    (OUT / "received.json").write_text(json.dumps(received))


@task.flowmesh
def third(ref: dict[str, Any]) -> Any:
    """The decorator: the function builds the operator from the upstream reference."""
    return python_operator(ops.echo, {"x": {"blob": ref["result_digest"]}})


with DAG("fm_pipeline", schedule=None, start_date=START, catchup=False):
    first = FlowMeshOperator(
        task_id="first",
        # Jinja inside the spec; slow enough that the task must defer.
        operator=python_operator(
            ops.slow_echo, {"x": "{{ dag.dag_id }}/{{ task.task_id }}"}, delay=1.0
        ),
    )
    second = FlowMeshOperator(
        task_id="second",
        # A plain mapping: its input is the first task's result, by digest, via XCom.
        operator={
            "kind": "python",
            "version": function_version(ops.slow_echo),
            "params": {"function": "tests.worker.ops:slow_echo", "kwargs": {"delay": 0.5}},
            "inputs": {"x": {"blob": "{{ ti.xcom_pull(task_ids='first')['result_digest'] }}"}},
        },
    )
    # The same work as "first" once it has run: an action-cache hit, done at submission.
    cached = FlowMeshOperator(
        task_id="cached",
        operator=python_operator(ops.slow_echo, {"x": "fm_pipeline/first"}, delay=1.0),
    )
    flow = FlowMeshOperator(
        task_id="flow",
        workflow={
            "name": "sum-then-echo",
            "nodes": {
                "sum": python_operator(ops.add, {"a": 2, "b": 3}).model_dump(mode="json"),
                "again": {
                    "kind": "python",
                    "version": function_version(ops.echo),
                    "params": {"function": "tests.worker.ops:echo"},
                    "inputs": {"x": {"ref": "sum"}},
                },
            },
        },
    )
    first >> [second, cached]
    record(first.output, second.output, third(second.output), flow.output)


with DAG("fm_blocking", schedule=None, start_date=START, catchup=False):
    FlowMeshOperator(
        task_id="blocking",
        deferrable=False,
        flowmesh_conn_id="{{ 'flowmesh_' ~ 'default' }}",  # templated
        operator=python_operator(ops.slow_echo, {"x": "blocking"}, delay=1.0),
    )


with DAG("fm_failure", schedule=None, start_date=START, catchup=False):
    FlowMeshOperator(
        task_id="fails",
        operator=python_operator(ops.logged_echo, {"x": "bad"}, log=EXEC_LOG, bad="bad"),
        retries=1,
        retry_delay=timedelta(0),
        on_retry_callback=_record_failure,
        on_failure_callback=_record_failure,
    )
    # Work FlowMesh rejects at submission (a param of the wrong type): not a connection issue.
    FlowMeshOperator(
        task_id="rejected",
        operator={
            "kind": "data.template",
            "params": {"template": 42},
            "inputs": {"records": ["a"]},
        },
        on_failure_callback=_record_failure,
    )


with DAG("fm_unreachable", schedule=None, start_date=START, catchup=False):
    FlowMeshOperator(
        task_id="unreachable",
        flowmesh_conn_id="flowmesh_nowhere",
        operator=python_operator(ops.echo, {"x": "never sent"}),
        on_failure_callback=_record_failure,
    )


class FirstTryTimesOut(FlowMeshOperator):
    """A FlowMeshOperator whose first try gives up waiting after one second."""

    def execute(self, context: Any) -> Any:
        self.timeout = 1.0 if context["ti"].try_number == 1 else 60.0
        return super().execute(context)


with DAG("fm_retry", schedule=None, start_date=START, catchup=False):
    FirstTryTimesOut(
        task_id="retried",
        retries=1,
        retry_delay=timedelta(0),
        operator=python_operator(
            ops.logged_echo,
            {"x": "retried-item"},
            log=EXEC_LOG,
            delay=3.0,
        ),
    )


@task
def submit_elsewhere() -> str:
    """Stands in for another system submitting a workflow: the sensor is told its id."""
    with FlowMeshHook().get_conn() as client:
        submitted = client.submit_operator(
            # Slow enough that the deferrable sensor finds it running and defers.
            python_operator(ops.slow_echo, {"x": "submitted elsewhere"}, delay=5.0)
        )
    return submitted.workflow_id


@task
def read_sensed(ref: dict[str, Any]) -> None:
    """The sensor's reference reads like the operator's."""
    (OUT / "sensed.json").write_text(json.dumps(FlowMeshHook().read(ref)))


with DAG("fm_lineage", schedule=None, start_date=START, catchup=False):
    source = FlowMeshOperator(
        task_id="source",
        operator=python_operator(ops.echo, {"x": "lineage source"}),
    )
    derived = FlowMeshOperator(
        task_id="derived",
        # slow_echo, not echo: echo of the source's blob is echo of its value, which
        # FlowMesh has already computed (the op key holds input digests), a cache hit.
        operator={
            "kind": "python",
            "version": function_version(ops.slow_echo),
            "params": {"function": "tests.worker.ops:slow_echo", "kwargs": {"delay": 0.1}},
            "inputs": {"x": {"blob": "{{ ti.xcom_pull(task_ids='source')['result_digest'] }}"}},
        },
        outlets=[Asset("fm_lineage_result"), AssetAlias("flowmesh-results")],
    )
    workflow_id = submit_elsewhere()
    watched = FlowMeshWorkflowSensor(task_id="watched", workflow_id=workflow_id)
    poked = FlowMeshWorkflowSensor(
        task_id="poked", workflow_id=workflow_id, deferrable=False, poke_interval=0.5
    )
    # One line, so that "watched" runs right after the submission (and finds it running)
    # and "poked" after it; dag.test() runs one task at a time.
    workflow_id >> watched >> poked >> source >> derived
    read_sensed(watched.output)
