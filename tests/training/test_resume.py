"""A training run survives kill -9 of its worker (docs/training.md): real ``flowmesh
worker`` processes on the real Redis, a control plane in this process. The run writes an
intermediate checkpoint every few steps; its worker is killed after one; the reclaimed
item resumes on another worker from that step (> 0), finishes once, and its lineage and
result say so.
"""

from __future__ import annotations

import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from flowmesh_core.checkpoint import read_tree
from flowmesh_core.control import NodeState
from flowmesh_core.models import ItemStatus
from flowmesh_core.models.parse import parse_workflow
from flowmesh_worker.weights import TINY_GPT
from tests.integration.procs import until
from tests.integration.test_worker_failures import TTL_S, Harness

ROWS = [{"prompt": f"q{i} :", "completion": " the answer is blue ."} for i in range(8)]


@pytest.fixture
async def harness(redis_url: str, key_prefix: str, tmp_path: Path) -> AsyncIterator[Harness]:
    h = Harness(redis_url, key_prefix, tmp_path, ttl_s=TTL_S)
    h.procs.env["FLOWMESH_WORKER_MODEL_DIR"] = str(tmp_path / "models")
    try:
        yield h
    finally:
        await h.aclose()


@pytest.mark.timeout(300)
async def test_kill_9_mid_training_resumes_on_another_worker_from_its_checkpoint(
    harness: Harness,
) -> None:
    h = harness
    plane = await h.start_plane()
    tenant = await h.tenant()
    nodes = {
        "sft": {
            "kind": "train.sft",
            "model": TINY_GPT,
            # 8 examples, one per step, 20 epochs: 160 steps, a checkpoint every 10.
            "params": {"epochs": 20, "batch_size": 1, "checkpoint_every": 10, "seed": 3},
            "inputs": {"dataset": ROWS},
        }
    }
    submitted = await plane.submit_workflow(tenant, parse_workflow({"nodes": nodes}))
    op_key = str(submitted.nodes[0].op_key)
    domain = plane.engine.domain(tenant.name)
    doomed = h.procs.worker("w-1")

    async def saved() -> bool:
        point = await h.store.resume_point(domain, op_key)
        return point is not None and int(point["step"]) >= 10

    await until(saved, 180, "an intermediate checkpoint", h.procs.logs)
    doomed.signal(signal.SIGKILL)
    assert await doomed.exited(10) == -signal.SIGKILL
    point = await h.store.resume_point(domain, op_key)
    assert point is not None
    h.procs.worker("w-2")

    status = await plane.wait(tenant, submitted.workflow_id, 200, with_lineage=True)
    assert status.state == NodeState.DONE, h.procs.logs()
    (record,) = status.nodes[0].lineage
    assert record.status == ItemStatus.DONE
    assert record.worker == "w-2"  # the lineage names the worker that finished it
    tree = read_tree(await plane.results.read(str(record.result_digest)))
    assert tree.metrics["resumed_from_step"] >= int(point["step"]) > 0
    assert tree.metrics["steps"] == 160
    stats = await h.store.cluster_stats()
    assert stats.get("executed") == 1, stats  # finished once
