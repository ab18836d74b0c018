"""A property of the whole ledger, on the real Redis: whatever the DAGs, the overlaps
between tenants, the cache, and wherever a control plane is killed, every workflow ends,
every requester's lineage is complete and consistent, and every op key has one digest.

Workers are stood in for by recording a result for every op in flight (the digest of its
op key, as a deterministic executor would give); the control planes are real, driven by
hand, and the first one dies at a random ledger step (before or after the step ran).
"""

from __future__ import annotations

import asyncio
import tempfile
import uuid
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowmesh_core.control import ControlPlane, NodeState, Tenant, create_tenant
from flowmesh_core.hashing import digest_bytes
from flowmesh_core.models import Workflow
from flowmesh_core.models.parse import parse_workflow
from flowmesh_core.settings import load_settings
from flowmesh_core.store import Store

PROMPTS = ["a", "b", "c", "d", "e"]


class Died(Exception):
    """The control plane's process ends here."""


@st.composite
def dags(draw: st.DrawFn) -> dict[str, Any]:
    """A random DAG of 1-4 llm.generate nodes; each reads literals or an earlier node."""
    nodes: dict[str, Any] = {}
    for i in range(draw(st.integers(1, 4))):
        if i and draw(st.booleans()):
            source: Any = {"ref": f"n{draw(st.integers(0, i - 1))}"}
        else:
            source = draw(st.lists(st.sampled_from(PROMPTS), min_size=1, max_size=3))
        nodes[f"n{i}"] = {"kind": "llm.generate", "model": "tiny", "inputs": {"prompts": source}}
    return {"nodes": nodes}


def dies_at(store: Store, step: int, after: bool) -> None:
    """Make ``store``'s ``step``-th script round trip kill the process (once)."""
    real = store.run_scripts
    count = 0

    async def run_scripts(calls: Any) -> list[Any]:
        nonlocal count
        count += 1
        if count != step:
            return await real(calls)
        if after:
            await real(calls)
        raise Died

    store.run_scripts = run_scripts  # type: ignore[method-assign]


async def work(plane: ControlPlane) -> None:
    """What the workers would do: a result for every op in flight."""
    for domain, op_key in await plane.store.inflight():
        await plane.store.complete(domain, op_key, digest_bytes(op_key.encode()))


async def drive(plane: ControlPlane, rounds: int = 40) -> None:
    """Act on the outbox (adopting whatever a dead plane left) and work, until quiet."""
    await plane.store.ensure_outbox_group()
    plane.outbox.adopt_after_s = 0.0
    for _ in range(rounds):
        await plane.outbox.adopt()
        await plane.outbox.read_once(pending=True)
        await plane.outbox.read_once(block_ms=5)
        await work(plane)
        if not await plane.store.inflight() and not await plane.store.redis.xlen(
            plane.store.keys.outbox()
        ):
            return


async def scenario(
    url: str, specs: list[dict[str, Any]], warm: list[str], step: int, after: bool
) -> None:
    prefix = f"fmprop-{uuid.uuid4().hex[:12]}"
    with tempfile.TemporaryDirectory() as blobs:
        config = load_settings(redis_url=url, key_prefix=prefix, blob_url=f"file://{blobs}")
        first, second = ControlPlane(config), ControlPlane(config)
        try:
            tenants: list[Tenant] = []
            for name in ("acme", "globex", "initech"):
                tenants.append((await create_tenant(first.store, name))[0])
            if warm:  # some items are in the cache already
                await first.submit_workflow(tenants[0], _flat(warm))
                await work(first)
            dies_at(first.store, step, after)
            submitted: list[tuple[Tenant, str, Workflow]] = []
            try:
                for i, spec in enumerate(specs):
                    tenant = tenants[i % len(tenants)]
                    workflow = parse_workflow(spec)
                    sub = await first.submit_workflow(tenant, workflow)
                    submitted.append((tenant, sub.workflow_id, workflow))
                await drive(first)
            except Died:
                pass
            # A submission the dying plane was answering may or may not have been stored;
            # the client would retry it. Every stored one must end.
            for tenant in tenants:
                for wf_id in await second.store.tenant_workflows(tenant.name):
                    if all(wf_id != s[1] for s in submitted):
                        state = await second.store.workflow(wf_id)
                        assert state is not None
                        submitted.append((tenant, wf_id, Workflow.model_validate_json(state.spec)))
            await drive(second)
            await check(second, submitted)
        finally:
            await first.store.purge()
            await first.aclose()
            await second.aclose()


async def check(plane: ControlPlane, submitted: list[tuple[Tenant, str, Workflow]]) -> None:
    digests: dict[str, str] = {}
    for tenant, wf_id, workflow in submitted:
        status = await plane.status(tenant, wf_id)
        assert status.state is NodeState.DONE, status
        for node in status.nodes:
            assert node.state is NodeState.DONE
            assert node.result_digest is not None
            assert len(node.lineage) == node.items_total
            assert sorted(r.index for r in node.lineage) == list(range(node.items_total))
            for record in node.lineage:
                assert record.status == "done"
                assert record.result_digest is not None
                assert digests.setdefault(record.op_key, record.result_digest) == (
                    record.result_digest
                ), f"op {record.op_key} has two digests"
            assert await plane.store.may_read(tenant.name, node.result_digest)
        assert set(n.node for n in status.nodes) == set(workflow.nodes)


def _flat(prompts: list[str]) -> Workflow:
    return parse_workflow(
        {"nodes": {"w": {"kind": "llm.generate", "model": "tiny", "inputs": {"prompts": prompts}}}}
    )


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    specs=st.lists(dags(), min_size=1, max_size=4),
    warm=st.lists(st.sampled_from(PROMPTS), max_size=3, unique=True),
    step=st.integers(1, 12),
    after=st.booleans(),
)
def test_every_workflow_ends_with_complete_consistent_lineage(
    redis_url: str, specs: list[dict[str, Any]], warm: list[str], step: int, after: bool
) -> None:
    asyncio.run(scenario(redis_url, specs, warm, step, after))
