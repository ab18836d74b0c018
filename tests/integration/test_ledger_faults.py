"""The ledger under faults: each finding of the ledger issue, pinned.

Node and workflow transitions are announced on the outbox by the same atomic step that
makes them, and the control plane acknowledges an entry only after acting on it. So a
Redis error, a blob-store blip or a killed control plane anywhere in between leaves the
entry pending, and acting again (the same plane later, or another) finishes the work.
These tests drive the parts by hand (no worker, no loops) so that each fault lands
exactly where it is meant to.
"""

from __future__ import annotations

from typing import Any

import pytest

from flowmesh_core.control import ControlPlane, NodeState, Tenant
from flowmesh_core.errors import BlobStoreUnavailableError, StoreUnavailableError
from flowmesh_core.hashing import digest_bytes
from flowmesh_core.models import Workflow
from flowmesh_core.models.parse import parse_workflow
from tests.integration.conftest import Fabric

DIGEST = digest_bytes(b"a result")


def two_nodes() -> Workflow:
    """One item in ``gen``; ``more`` reads gen's output (a manifest of one)."""
    return parse_workflow(
        {
            "nodes": {
                "gen": {"kind": "llm.generate", "model": "tiny", "inputs": {"prompts": ["p"]}},
                "more": {
                    "kind": "llm.generate",
                    "model": "tiny",
                    "inputs": {"prompts": {"ref": "gen"}},
                },
            }
        }
    )


def one_node(prompts: list[str]) -> Workflow:
    return parse_workflow(
        {
            "nodes": {
                "gen": {"kind": "llm.generate", "model": "tiny", "inputs": {"prompts": prompts}}
            }
        }
    )


async def complete_everything(plane: ControlPlane) -> int:
    """Record a result for every op in flight, as workers would; how many."""
    ops = await plane.store.inflight()
    for domain, op_key in ops:
        await plane.store.complete(domain, op_key, DIGEST)
    return len(ops)


async def pending_entries(plane: ControlPlane) -> int:
    reply: Any = await plane.store.redis.xpending(plane.store.keys.outbox(), "control")
    return int(reply["pending"])


async def drain(plane: ControlPlane, rounds: int = 5) -> None:
    """Act on every outbox entry there is, as the plane's consumer would."""
    await plane.store.ensure_outbox_group()
    for _ in range(rounds):
        await plane.outbox.read_once(pending=True)
        if await plane.outbox.read_once(block_ms=10) == 0 and not await pending_entries(plane):
            return


async def state(plane: ControlPlane, tenant: Tenant, wf_id: str) -> NodeState:
    return (await plane.status(tenant, wf_id, with_lineage=False)).state


async def test_a_redis_error_while_finishing_a_node_leaves_it_to_be_finished(
    fabric: Fabric,
) -> None:
    plane = fabric.idle_plane()
    acme = await fabric.tenant("acme")
    sub = await plane.submit_workflow(acme, one_node(["a", "b"]))
    assert await complete_everything(plane) == 2
    real = plane.store.finish_node
    calls = 0

    async def drops_the_reply(wf_id: str, node: str, *args: Any) -> tuple[bool, bool]:
        nonlocal calls
        calls += 1
        if calls == 1:  # the step ran, then the connection dropped before its reply
            await real(wf_id, node, *args)
            raise StoreUnavailableError("connection reset")
        return await real(wf_id, node, *args)

    plane.store.finish_node = drops_the_reply  # type: ignore[method-assign]
    await plane.store.ensure_outbox_group()
    await plane.outbox.read_once(block_ms=10)
    assert await pending_entries(plane) >= 1  # not acknowledged: it is acted on again
    await drain(plane)
    assert await state(plane, acme, sub.workflow_id) is NodeState.DONE
    assert await pending_entries(plane) == 0


async def test_a_fully_cached_workflow_finishes_though_its_submitter_died(
    fabric: Fabric,
) -> None:
    first = fabric.idle_plane()
    acme = await fabric.tenant("acme")
    warm = await first.submit_workflow(acme, one_node(["a", "b"]))
    await complete_everything(first)
    await drain(first)
    assert await state(first, acme, warm.workflow_id) is NodeState.DONE

    # Every item is a cache hit now; the submitting plane dies once the submission is
    # stored, before it records the cached node's result (the old engine did that in
    # process, with nothing to bring it back).
    globex = await fabric.tenant("globex")

    class Died(Exception):
        pass

    async def dies(wf_id: str) -> None:
        raise Died

    first.engine.advance = dies  # type: ignore[method-assign]
    with pytest.raises(Died):
        await first.submit_workflow(globex, one_node(["a", "b"]))
    (wf_id,) = await first.store.tenant_workflows("globex")
    assert (await first.store.workflow(wf_id)).status != "done"  # type: ignore[union-attr]

    second = fabric.idle_plane()
    await drain(second)
    done = await second.status(globex, wf_id)
    assert done.state is NodeState.DONE
    assert done.nodes[0].result_digest is not None


async def test_a_blob_store_blip_while_starting_a_dependent_does_not_fail_the_workflow(
    fabric: Fabric,
) -> None:
    plane = fabric.idle_plane(inline_result_bytes=0)  # the manifest goes to the CAS
    acme = await fabric.tenant("acme")
    sub = await plane.submit_workflow(acme, two_nodes())
    await complete_everything(plane)
    real = plane.blobs.get_bytes
    blips = 0

    def flaky(digest: str) -> bytes:
        nonlocal blips
        blips += 1
        if blips == 1:
            raise BlobStoreUnavailableError("disk went away for a moment")
        return real(digest)

    plane.blobs.get_bytes = flaky  # type: ignore[method-assign]
    await drain(plane, rounds=1)
    assert blips == 1
    assert await state(plane, acme, sub.workflow_id) is not NodeState.FAILED
    assert await pending_entries(plane) >= 1

    await drain(plane)
    status = await plane.status(acme, sub.workflow_id, with_lineage=False)
    assert status.nodes[1].op_key is not None, "the dependent started on the retry"
    await complete_everything(plane)
    await drain(plane)
    assert await state(plane, acme, sub.workflow_id) is NodeState.DONE


@pytest.mark.parametrize("where", ["before", "after"])
async def test_a_plane_killed_around_starting_a_dependent_leaves_nothing_stranded(
    fabric: Fabric, where: str
) -> None:
    # The old engine marked a dependent "claimed" (no owner, no expiry) before starting
    # it; dying in between skipped the node forever. Now starting is one ledger step, and
    # the outbox entry that asked for it is acknowledged only afterwards.
    first = fabric.idle_plane()
    acme = await fabric.tenant("acme")
    sub = await first.submit_workflow(acme, two_nodes())
    await complete_everything(first)
    real = first.store.run_script

    class Died(Exception):
        pass

    async def dies(script: str, keys: Any, args: Any) -> Any:
        if script != "start_node":
            return await real(script, keys, args)
        if where == "after":
            await real(script, keys, args)
        raise Died  # the process ends here

    first.store.run_script = dies  # type: ignore[method-assign]
    await first.store.ensure_outbox_group()
    with pytest.raises(Died):
        await first.outbox.read_once(block_ms=10)

    second = fabric.idle_plane()
    second.outbox.adopt_after_s = 0.0
    await second.outbox.adopt()
    await drain(second)
    status = await second.status(acme, sub.workflow_id, with_lineage=False)
    assert status.nodes[1].op_key is not None
    assert status.nodes[1].items_total == 1
    await complete_everything(second)
    await drain(second)
    assert await state(second, acme, sub.workflow_id) is NodeState.DONE


async def test_a_failed_item_fails_its_node_downstream_and_workflow_once(fabric: Fabric) -> None:
    plane = fabric.idle_plane()
    acme = await fabric.tenant("acme")
    sub = await plane.submit_workflow(acme, two_nodes())
    ((domain, op_key),) = await plane.store.inflight()
    assert await plane.store.fail(domain, op_key, "CUDA out of memory") == 1
    await drain(plane)
    status = await plane.status(acme, sub.workflow_id, with_lineage=False)
    assert status.state is NodeState.FAILED
    assert [n.state for n in status.nodes] == [NodeState.FAILED, NodeState.FAILED]
    assert "CUDA out of memory" in (status.nodes[0].error or "")
    assert "upstream node 'gen' failed" in (status.nodes[1].error or "")
    entries = await plane.store.redis.xrange(plane.store.keys.workflow_events(sub.workflow_id))
    assert [f["event"] for _, f in entries].count("workflow.failed") == 1
