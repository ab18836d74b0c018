"""The progress line every adapter logs while a workflow runs: what it waits on.

``flowmesh_core.client.progress_summary`` is pure, so it is checked here on statuses
shaped as the control plane answers them (parsed by the client's own models from JSON).
The adapters' tests (tests/adapters/test_progress.py) see it in each orchestrator's log.
"""

from __future__ import annotations

from typing import Any

from flowmesh_core.client import progress_summary as summary
from flowmesh_core.models.api import WorkflowStatus

NOW = 1_000.0


def _status(
    records: list[dict[str, Any]],
    state: str = "running",
    progress: dict[str, Any] | None = None,
) -> WorkflowStatus:
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
                    "progress": progress,
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
    assert "3 running on gpu-1 for 67 s)" in line


def test_a_model_load_names_the_model_the_worker_and_how_long() -> None:
    running = {"status": "running", "worker": "gpu-1", "started_at": NOW - 12}
    loading = {"phase": "loading", "model": "flowmesh/tiny-gpt", "worker": "gpu-1", "at": NOW - 9}
    line = summary(_status([running] * 2, progress=loading), now=NOW)
    assert line == (
        "running: generate running 0/2 (2 running on gpu-1 for 12 s; "
        "loading model flowmesh/tiny-gpt on gpu-1 for 9 s)"
    )
    after = {"phase": "running", "worker": "gpu-1", "at": NOW - 1}
    assert "loading" not in summary(_status([running] * 2, progress=after), now=NOW)


def test_a_training_run_says_its_step() -> None:
    running = {"status": "running", "worker": "cpu-1", "started_at": NOW - 30}
    step = {"step": 40, "steps": 160, "loss": 0.7, "worker": "cpu-1", "at": NOW - 1}
    line = summary(_status([running], progress=step), now=NOW)
    assert line.endswith("(1 running on cpu-1 for 30 s; step 40/160 on cpu-1)")


def test_a_finished_node_says_nothing_more() -> None:
    line = summary(_status([{"status": "done"}] * 2, state="done"), now=NOW)
    assert line == "done: generate done 2/2"
