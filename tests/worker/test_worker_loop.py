"""The real worker loop over the real protocol: batches executed, results in the CAS,
reports applied, per-item failures kept per item, drains that lose nothing.

Each test runs a control plane and real ``Worker``s (the same loop ``flowmesh worker``
runs) in one process, on the real Redis and, where marked, on the embedded store too.
Executors are the cheap ones (data.*, python from ``tests.worker.ops``); the ML kinds
have their own tests.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from flowmesh_core.client import python_operator
from flowmesh_core.control import ControlPlane, NodeState, Tenant, WorkflowStatus
from flowmesh_core.models import ItemStatus, Satisfaction
from flowmesh_core.models.parse import parse_workflow
from tests.integration.conftest import Fabric
from tests.worker import ops
from tests.worker.conftest import Workers

both_stores = pytest.mark.parametrize("fabric_url", ["redis", "embedded"], indirect=True)


async def run(plane: ControlPlane, tenant: Tenant, nodes: dict[str, Any]) -> WorkflowStatus:
    submitted = await plane.submit_workflow(tenant, parse_workflow({"nodes": nodes}))
    return await plane.wait(tenant, submitted.workflow_id, 20, with_lineage=True)


async def until(check: Callable[[], Awaitable[bool]], what: str, within_s: float = 15) -> None:
    """Poll ``check`` until it holds; fail naming ``what`` after ``within_s``."""
    deadline = time.monotonic() + within_s
    while not await check():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not happen within {within_s}s")
        await asyncio.sleep(0.05)


async def result(plane: ControlPlane, digest: str | None) -> Any:
    """A result as its tenant would read it: inline in Redis when small, else the CAS."""
    assert digest is not None
    return json.loads(await plane.results.read(digest))


def python_node(fn: Any, inputs: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    return python_operator(fn, inputs, **kwargs).model_dump(mode="json", exclude_none=True)


@both_stores
async def test_a_workflow_runs_on_a_real_worker(fabric: Fabric, workers: Workers) -> None:
    plane = await fabric.plane()
    tenant = await fabric.tenant("team-a")
    await workers.start("w-1")
    records = [{"topic": t} for t in ("tides", "rust", "bees")]
    status = await run(
        plane,
        tenant,
        {
            "prompts": {
                "kind": "data.template",
                "params": {"template": "Write about {topic}."},
                "inputs": {"records": records},
            },
            "unique": {"kind": "data.dedup", "inputs": {"items": {"ref": "prompts"}}},
        },
    )
    assert status.state == NodeState.DONE, status
    unique = next(n for n in status.nodes if n.node == "unique")
    assert await result(plane, unique.result_digest) == [
        "Write about tides.",
        "Write about rust.",
        "Write about bees.",
    ]
    prompts = next(n for n in status.nodes if n.node == "prompts")
    assert {r.worker for r in prompts.lineage} == {"w-1"}
    assert len({r.batch_id for r in prompts.lineage}) == 1  # one batch of three


async def test_one_bad_item_fails_alone_and_is_retried_a_bounded_number_of_times(
    fabric: Fabric, workers: Workers, caplog: pytest.LogCaptureFixture
) -> None:
    plane = await fabric.plane(max_attempts=2)
    tenant = await fabric.tenant("team-a")
    await workers.start("w-1")
    submitted = [
        await plane.submit_operator(tenant, python_operator(ops.fail_on, {"x": x}, bad="b"))
        for x in ("a", "b", "c")
    ]
    states = [await plane.wait(tenant, s.workflow_id, 20, with_lineage=True) for s in submitted]
    assert [s.state for s in states] == [NodeState.DONE, NodeState.FAILED, NodeState.DONE]
    failed = states[1].nodes[0].lineage[0]
    assert failed.status == ItemStatus.FAILED
    assert failed.error is not None
    assert "ValueError: refusing 'b'" in failed.error
    assert f"item {failed.op_key} failed after 2 attempts" in caplog.text  # then no more
    assert await result(plane, states[0].nodes[0].lineage[0].result_digest) == "a"


async def test_an_item_its_executor_rejects_fails_on_its_first_attempt(
    fabric: Fabric, workers: Workers, caplog: pytest.LogCaptureFixture
) -> None:
    plane = await fabric.plane(max_attempts=3)
    tenant = await fabric.tenant("team-a")
    await workers.start("w-1")
    records = [{"topic": "tides"}, {"subject": "rust"}, {"topic": "bees"}]
    status = await run(
        plane,
        tenant,
        {
            "prompts": {
                "kind": "data.template",
                "params": {"template": "Write about {topic}."},
                "inputs": {"records": records},
            }
        },
    )
    assert status.state == NodeState.FAILED, status
    lineage = status.nodes[0].lineage
    assert [r.status for r in lineage] == [ItemStatus.DONE, ItemStatus.FAILED, ItemStatus.DONE]
    bad = lineage[1]
    assert bad.error is not None
    assert "no field 'topic'" in bad.error, bad
    assert f"item {bad.op_key} failed on attempt 1, not retried (deterministic)" in caplog.text
    assert "retrying" not in caplog.text
    # One batch in all: the rejected item was never handed back for a second run.
    await until(lambda: _batches_are(plane, 1), "the batch to be accounted")
    await asyncio.sleep(1.0)  # time for a retry, were there one, to show itself
    assert (await plane.store.cluster_stats()).get("batches") == 1


async def test_a_failure_that_may_pass_elsewhere_is_still_retried(
    fabric: Fabric, workers: Workers, caplog: pytest.LogCaptureFixture
) -> None:
    """A function that raises is not the executor rejecting its input: it keeps its tries."""
    plane = await fabric.plane(max_attempts=2)
    tenant = await fabric.tenant("team-a")
    await workers.start("w-1")
    submitted = await plane.submit_operator(tenant, python_operator(ops.fail_on, {"x": 1}, bad=1))
    state = await plane.wait(tenant, submitted.workflow_id, 20, with_lineage=True)
    assert state.state == NodeState.FAILED
    assert "not retried" not in caplog.text
    assert "failed after 2 attempts" in caplog.text


async def _batches_are(plane: ControlPlane, n: int) -> bool:
    return (await plane.store.cluster_stats()).get("batches") == n


@both_stores
async def test_stop_drains_the_batch_in_hand_and_reexecutes_nothing(
    fabric: Fabric, workers: Workers
) -> None:
    plane = await fabric.plane(worker_ttl_s=3.0)
    tenant = await fabric.tenant("team-a")
    worker = await workers.start("w-1", max_batch=8)
    submitted = [
        await plane.submit_operator(tenant, python_operator(ops.slow_echo, {"x": i}, delay=0.3))
        for i in range(4)
    ]

    async def busy() -> bool:
        return worker.batches_done > 0 or bool(worker._running)

    await until(busy, "w-1 taking a batch")
    await workers.stop(worker)  # drains: the batch in hand finishes and is reported
    assert worker.items_done >= 1
    second = await workers.start("w-2", max_batch=8)
    for s in submitted:
        status = await plane.wait(tenant, s.workflow_id, 20, with_lineage=True)
        assert status.state == NodeState.DONE
    assert worker.items_done + second.items_done == 4  # each item ran exactly once
    records = [(await plane.status(tenant, s.workflow_id)).nodes[0].lineage[0] for s in submitted]
    assert all(r.satisfied_by == Satisfaction.EXECUTED for r in records)

    async def left() -> bool:  # a retired worker is forgotten once its heartbeat expires
        return not [w for w in await plane.store.workers() if w.profile.worker_id == "w-1"]

    await until(left, "w-1 leaving the fleet")


async def test_the_worker_reports_its_profile_and_leaves_the_fleet(
    fabric: Fabric, workers: Workers
) -> None:
    plane = await fabric.plane(worker_ttl_s=3.0)
    worker = await workers.start("w-1", price_per_hour=0.5, watts=20.0, slots=2)

    async def registered() -> bool:
        return await plane.store.worker_profile("w-1") is not None

    await until(registered, "w-1 registering")
    profile = await plane.store.worker_profile("w-1")
    assert profile is not None
    assert (profile.price_per_hour, profile.watts, profile.slots) == (0.5, 20.0, 2)
    await workers.stop(worker)

    async def gone() -> bool:
        return not await registered()

    await until(gone, "w-1 leaving the fleet")
