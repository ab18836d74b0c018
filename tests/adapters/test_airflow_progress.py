"""The progress line the Airflow trigger logs while a workflow runs: what it waits on.

``flowmesh_airflow._progress`` is pure and imports no Airflow, so it is checked here in
the test process, on statuses shaped as the control plane answers them (parsed by the
client's own models from JSON).
"""

from __future__ import annotations

from typing import Any

from flowmesh_airflow._progress import summary
from flowmesh_core.models.api import WorkflowStatus

NOW = 1_000.0


def _status(records: list[dict[str, Any]], state: str = "running") -> WorkflowStatus:
    lineage = [
        {
            "tenant": "t",
            "workflow": "w1",
            "node": "generate",
            "index": i,
            "op_key": f"k{i}",
            "satisfied_by": "executed",
            "requested_at": 900.0,
            **record,
        }
        for i, record in enumerate(records)
    ]
    return WorkflowStatus.model_validate(
        {
            "workflow_id": "w1",
            "name": "w",
            "state": state,
            "created_at": 900.0,
            "nodes": [
                {
                    "node": "generate",
                    "state": state,
                    "items_total": len(records),
                    "items_done": sum(r["status"] == "done" for r in records),
                    "lineage": lineage,
                }
            ],
        }
    )


def test_queued_items_say_they_wait_for_a_worker() -> None:
    line = summary(_status([{"status": "pending"}] * 8), now=NOW)
    assert line == "running: generate running 0/8 (8 queued, waiting for a worker)"


def test_running_items_name_their_worker_and_for_how_long() -> None:
    running = {"status": "running", "worker": "gpu-1", "started_at": NOW - 67}
    line = summary(_status([running] * 3 + [{"status": "done"}, {"status": "pending"}]), now=NOW)
    assert "generate running 1/5" in line
    assert "1 queued, waiting for a worker" in line
    assert "3 running on gpu-1 for 67 s (a worker's first batch loads its model)" in line


def test_a_finished_node_says_nothing_more() -> None:
    line = summary(_status([{"status": "done"}] * 2, state="done"), now=NOW)
    assert line == "done: generate done 2/2"
