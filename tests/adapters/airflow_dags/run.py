"""Run DAGs from ``dags/`` with ``dag.test()`` in one process; write what happened as JSON.

    python tests/adapters/airflow_dags/run.py OUT.json DAG_ID...

test_airflow.py starts this in a subprocess with its own AIRFLOW_HOME (Airflow reads its
configuration at import, so the test process never imports it). It initialises the
metadata DB, runs each DAG (dag.test() runs deferred tasks' triggers in line), and records
per DAG: the run's state, each task instance's state, tries, XCom return value and extra
link (from the DB), the asset events the run emitted, and every event FlowMeshTrigger
fired and every resume of FlowMeshOperator (the classes are wrapped here, calling through
to the real methods). It also records what
Airflow's ProvidersManager found through the entry point, and what FlowMeshHook makes of
the connections in ``$FM_HOOK_CASES`` (JSON: name -> Connection fields), and how the
example DAGs in ``$FM_EXAMPLE_DAGS`` parse. ``$FM_DAG_CONF`` (JSON: DAG id -> conf) gives
a DAG's run its ``dag_run.conf``; ``$FM_POLL_SLICE_S`` shortens the trigger's long-poll
(and so the interval of its progress lines).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import AsyncIterator
from typing import Any


def _install_recorders(calls: list[dict[str, Any]]) -> None:
    """Wrap the trigger's run and the operator's resume so each call is recorded."""
    from flowmesh_airflow import FlowMeshOperator, FlowMeshTrigger

    real_run = FlowMeshTrigger.run
    real_complete = FlowMeshOperator.execute_complete

    async def run(self: FlowMeshTrigger) -> AsyncIterator[Any]:
        async for event in real_run(self):
            calls.append({"what": "trigger", "trigger": self.serialize(), "event": event.payload})
            yield event

    def execute_complete(self: FlowMeshOperator, context: Any, event: dict[str, Any]) -> Any:
        ti = context["ti"]
        calls.append(
            {"what": "resume", "task_id": ti.task_id, "try": ti.try_number, "event": event}
        )
        return real_complete(self, context, event)

    FlowMeshTrigger.run = run  # type: ignore[method-assign]
    FlowMeshOperator.execute_complete = execute_complete  # type: ignore[method-assign]


def _provider_facts() -> dict[str, Any]:
    from airflow.providers_manager import ProvidersManager

    import flowmesh_airflow

    manager = ProvidersManager()
    hook = manager.hooks.get("flowmesh")
    return {
        "packages": sorted(manager.providers),
        "hook": hook.hook_class_name if hook else None,
        "decorators": sorted(manager.taskflow_decorators),
        "field_behaviour": manager.field_behaviours.get("flowmesh"),
        "exports": {
            name: f"{obj.__module__}.{obj.__qualname__}"
            for name in flowmesh_airflow.__all__
            if (obj := getattr(flowmesh_airflow, name))
        },
    }


def _hook_facts(cases: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """What FlowMeshHook makes of each connection (keyword fields, or ``uri``)."""
    from airflow.sdk import Connection

    from flowmesh_airflow.hooks import server_settings

    facts: dict[str, Any] = {}
    for name, fields in cases.items():
        conn = Connection(conn_id=name, **fields)
        try:
            settings = server_settings(conn, conn.extra_dejson)
        except Exception as exc:
            facts[name] = {"error": str(exc)}
        else:
            facts[name] = {
                "url": settings.url,
                "token": settings.token,
                "timeout": settings.timeout,
            }
    return facts


def _example_facts(folder: str) -> dict[str, Any]:
    """The example DAGs as Airflow parses them: import errors and each task's upstreams."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=folder)
    return {
        "import_errors": dict(bag.import_errors),
        "dags": {
            dag_id: {t.task_id: sorted(t.upstream_task_ids) for t in dag.tasks}
            for dag_id, dag in bag.dags.items()
        },
    }


def _run_record(dag_id: str, run: Any) -> dict[str, Any]:
    from airflow.models.asset import AssetEvent
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.taskinstancehistory import TaskInstanceHistory
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        tis = session.scalars(
            select(TaskInstance).where(
                TaskInstance.dag_id == dag_id, TaskInstance.run_id == run.run_id
            )
        ).all()
        tasks = {}
        for ti in tis:
            xcom = session.scalars(
                select(XComModel).where(
                    XComModel.dag_id == dag_id,
                    XComModel.run_id == run.run_id,
                    XComModel.task_id == ti.task_id,
                    XComModel.key == "return_value",
                )
            ).first()
            history = session.scalars(
                select(TaskInstanceHistory.state).where(
                    TaskInstanceHistory.dag_id == dag_id,
                    TaskInstanceHistory.run_id == run.run_id,
                    TaskInstanceHistory.task_id == ti.task_id,
                )
            ).all()
            link = session.scalars(
                select(XComModel).where(
                    XComModel.dag_id == dag_id,
                    XComModel.run_id == run.run_id,
                    XComModel.task_id == ti.task_id,
                    XComModel.key == "_link_FlowMeshWorkflowLink",
                )
            ).first()
            tasks[ti.task_id] = {
                "link": XComModel.deserialize_value(link) if link is not None else None,
                "state": str(ti.state),
                "try_number": ti.try_number,
                "earlier_tries": [str(s) for s in history],
                "xcom": XComModel.deserialize_value(xcom) if xcom is not None else None,
            }
        events = session.scalars(
            select(AssetEvent).where(
                AssetEvent.source_dag_id == dag_id, AssetEvent.source_run_id == run.run_id
            )
        ).all()
        assets = [
            {"uri": e.asset.uri, "name": e.asset.name, "task": e.source_task_id, "extra": e.extra}
            for e in events
        ]
    return {"state": str(run.state), "run_id": run.run_id, "tasks": tasks, "assets": assets}


def main(out: str, dag_ids: list[str]) -> None:
    import os

    from airflow.dag_processing.dagbag import DagBag
    from airflow.settings import DAGS_FOLDER
    from airflow.utils import db

    started = time.monotonic()
    db.initdb()
    if os.environ.get("FM_POLL_SLICE_S"):  # progress lines sooner than every 30 s
        from flowmesh_airflow import triggers

        triggers.POLL_SLICE_S = float(os.environ["FM_POLL_SLICE_S"])
    calls: list[dict[str, Any]] = []
    _install_recorders(calls)
    bag = DagBag(dag_folder=DAGS_FOLDER)
    report: dict[str, Any] = {"import_errors": dict(bag.import_errors), "dags": {}}
    confs = json.loads(os.environ.get("FM_DAG_CONF", "{}"))
    for dag_id in dag_ids:
        calls.clear()
        t0 = time.monotonic()
        run = bag.dags[dag_id].test(run_conf=confs.get(dag_id))
        record = _run_record(dag_id, run)
        record.update(calls=list(calls), seconds=round(time.monotonic() - t0, 2))
        report["dags"][dag_id] = record
    report["provider"] = _provider_facts()
    report["hook"] = _hook_facts(json.loads(os.environ.get("FM_HOOK_CASES", "{}")))
    if os.environ.get("FM_EXAMPLE_DAGS"):
        report["example"] = _example_facts(os.environ["FM_EXAMPLE_DAGS"])
    report["seconds"] = round(time.monotonic() - started, 2)
    with open(out, "w") as fh:
        json.dump(report, fh, indent=2, default=str)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
