"""The control plane end to end: real loops, a real store, play workers over the real protocol.

Every test runs a ``ControlPlane`` (scheduler and completion applier) against the real
Redis under a fresh prefix (some on the embedded store too) with ``PlayWorker``s that
execute items with a plain function, so every result digest is predictable. What they
check is what the design promises: identical work runs once across tenants and workflows,
compatible work shares batches, provenance survives both, a restart loses nothing, and a
tenant sees only its own.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from flowmesh_core.control import ControlPlane, NodeState, StatsReport, Tenant, WorkflowStatus
from flowmesh_core.errors import NotFoundError
from flowmesh_core.hashing import canonical_json, digest_bytes
from flowmesh_core.models import (
    Item,
    ItemBlob,
    ItemLiteral,
    ItemStatus,
    LineageRecord,
    Satisfaction,
    WorkerProfile,
    Workflow,
)
from flowmesh_core.models.parse import parse_workflow
from flowmesh_core.protocol import Completion, ItemResult
from flowmesh_core.store.fleet import EVENTS_GROUP
from tests.integration.conftest import Fabric
from tests.playworker import PlayWorker, echo

both_stores = pytest.mark.parametrize("fabric_url", ["redis", "embedded"], indirect=True)

WAIT_S = 8.0


async def cluster_stats(cp: ControlPlane) -> StatsReport:
    """The fabric-wide figures, as an admin sees them (a tenant sees its own only)."""
    return await cp.stats(Tenant(name="ops-admin", admin=True))


# -- helpers ----------------------------------------------------------------------------


def generate(prompts: Any, model: str = "tiny-gpt", **params: Any) -> dict[str, Any]:
    return {
        "kind": "llm.generate",
        "model": model,
        "params": params,
        "inputs": {"prompts": prompts},
    }


def workflow(**nodes: dict[str, Any]) -> Workflow:
    return parse_workflow({"nodes": nodes})


def echo_digest(kind: str, inputs: dict[str, Any]) -> str:
    """The digest PlayWorker's default executor gives an item with these inputs."""
    return digest_bytes(canonical_json({"kind": kind, "inputs": inputs, "sample": None}))


def prompt_digest(prompt: str) -> str:
    return echo_digest("llm.generate", {"prompts": prompt})


def executed(*workers: PlayWorker) -> list[Item]:
    """Every item the workers were asked to run, in the order they got them."""
    return [a.spec for w in workers for b in w.batches for a in b.items]


def by_index(records: list[LineageRecord], node: str) -> list[LineageRecord]:
    return sorted((r for r in records if r.node == node), key=lambda r: r.index)


async def eventually(
    check: Callable[[], Awaitable[bool]], *, within_s: float = 5.0, what: str = "it"
) -> None:
    """Poll ``check`` until it holds; fail naming ``what`` after ``within_s`` seconds."""
    deadline = time.monotonic() + within_s
    while not await check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {within_s} s waiting for {what}")
        await asyncio.sleep(0.02)


async def finished(cp: ControlPlane, tenant: Tenant, wf_id: str) -> WorkflowStatus:
    """Wait for the workflow to finish and return its status with lineage; fail on timeout."""
    status = await cp.wait(tenant, wf_id, WAIT_S, with_lineage=True)
    assert status.state in (NodeState.DONE, NodeState.FAILED), (
        f"workflow {wf_id} still {status.state} after {WAIT_S} s: "
        + ", ".join(f"{n.node}={n.state} ({n.items_done}/{n.items_total})" for n in status.nodes)
    )
    return status


async def running(cp: ControlPlane, tenant: Tenant, wf_id: str) -> bool:
    status = await cp.status(tenant, wf_id)
    return any(r.status is ItemStatus.RUNNING for n in status.nodes for r in n.lineage)


def assert_each_ran_once(items: list[Item]) -> None:
    counts = collections.Counter(i.op_key for i in items)
    twice = {k: n for k, n in counts.items() if n > 1}
    assert not twice, f"ops executed more than once: {twice}"


# -- de-duplication -----------------------------------------------------------------------


@both_stores
async def test_overlapping_work_of_two_tenants_runs_once_with_exact_lineage(
    fabric: Fabric,
) -> None:
    cp = await fabric.plane()
    acme, globex, initech = [await fabric.tenant(n) for n in ("acme", "globex", "initech")]
    acme_prompts = [f"p{i}" for i in range(6)]
    globex_prompts = [f"p{i}" for i in range(3, 9)]

    # Both submit before any worker exists: globex's overlap joins acme's pending items.
    sub_a = await cp.submit_workflow(acme, workflow(gen=generate(acme_prompts)))
    sub_g = await cp.submit_workflow(globex, workflow(gen=generate(globex_prompts)))
    assert (sub_a.nodes[0].created, sub_a.nodes[0].joined) == (6, 0)
    assert (sub_g.nodes[0].created, sub_g.nodes[0].joined) == (3, 3)
    worker = await fabric.worker()
    done_a = await finished(cp, acme, sub_a.workflow_id)
    done_g = await finished(cp, globex, sub_g.workflow_id)

    assert (done_a.state, done_g.state) == (NodeState.DONE, NodeState.DONE)
    ran = executed(worker)
    assert_each_ran_once(ran)
    assert sorted(i.inputs["prompts"].value for i in ran) == [f"p{i}" for i in range(9)]
    assert (await cluster_stats(cp)).executed == 9

    a_records = by_index(done_a.nodes[0].lineage, "gen")
    g_records = by_index(done_g.nodes[0].lineage, "gen")
    assert [r.satisfied_by for r in a_records] == [Satisfaction.EXECUTED] * 6
    assert [r.satisfied_by for r in g_records] == [Satisfaction.JOINED] * 3 + [
        Satisfaction.EXECUTED
    ] * 3
    for records, prompts, tenant in (
        (a_records, acme_prompts, "acme"),
        (g_records, globex_prompts, "globex"),
    ):
        assert [r.result_digest for r in records] == [prompt_digest(p) for p in prompts]
        assert all(r.status is ItemStatus.DONE and r.tenant == tenant for r in records)
        assert all(r.batch_id and r.worker == "play-1" for r in records)
    # The shared items carry the same batch and result for both requesters.
    for a, g in zip(a_records[3:], g_records[:3], strict=True):
        assert (a.op_key, a.batch_id, a.result_digest) == (g.op_key, g.batch_id, g.result_digest)

    # A third tenant asking for globex's list later runs nothing at all.
    batches_before = len(worker.batches)
    sub_i = await cp.submit_workflow(initech, workflow(gen=generate(globex_prompts)))
    assert (sub_i.nodes[0].state, sub_i.nodes[0].cache_hits) == (NodeState.DONE, 6)
    done_i = await finished(cp, initech, sub_i.workflow_id)
    assert done_i.state is NodeState.DONE
    i_records = by_index(done_i.nodes[0].lineage, "gen")
    assert [r.satisfied_by for r in i_records] == [Satisfaction.CACHE_HIT] * 6
    assert [r.result_digest for r in i_records] == [r.result_digest for r in g_records]
    assert done_i.nodes[0].result_digest == done_g.nodes[0].result_digest
    assert all(r.batch_id is None and r.worker is None for r in i_records)
    await asyncio.sleep(0.3)
    assert len(worker.batches) == batches_before

    stats = await cp.stats(initech)
    assert [t.tenant for t in stats.tenants] == ["initech"]
    assert (stats.tenants[0].requested, stats.tenants[0].cache_hits) == (6, 6)
    everyone = await cluster_stats(cp)
    assert (everyone.requested, everyone.executed, everyone.cache_hits, everyone.joins) == (
        18,
        9,
        6,
        3,
    )
    a_stats = (await cp.stats(acme)).tenants[0]
    g_stats = (await cp.stats(globex)).tenants[0]
    assert (a_stats.created, a_stats.joins) == (6, 0)
    assert (g_stats.created, g_stats.joins) == (3, 3)


@both_stores
async def test_second_tenant_joins_work_that_is_running(fabric: Fabric) -> None:
    cp = await fabric.plane()
    acme, globex = await fabric.tenant("acme"), await fabric.tenant("globex")
    worker = await fabric.worker(delay_s=1.0)
    prompts = ["a", "b", "c", "d"]

    sub_a = await cp.submit_workflow(acme, workflow(gen=generate(prompts)))
    await eventually(lambda: running(cp, acme, sub_a.workflow_id), what="acme's items to run")
    sub_g = await cp.submit_workflow(globex, workflow(gen=generate(prompts)))

    assert (sub_g.nodes[0].joined, sub_g.nodes[0].created) == (4, 0)
    status_g = await cp.status(globex, sub_g.workflow_id)
    assert status_g.state is NodeState.RUNNING
    joined = by_index(status_g.nodes[0].lineage, "gen")
    assert all(r.satisfied_by is Satisfaction.JOINED for r in joined)
    assert all(r.status is ItemStatus.RUNNING for r in joined)
    done_a = await finished(cp, acme, sub_a.workflow_id)
    done_g = await finished(cp, globex, sub_g.workflow_id)
    assert (done_a.state, done_g.state) == (NodeState.DONE, NodeState.DONE)
    assert done_a.nodes[0].result_digest == done_g.nodes[0].result_digest
    a_records = by_index(done_a.nodes[0].lineage, "gen")
    g_records = by_index(done_g.nodes[0].lineage, "gen")
    assert [r.result_digest for r in a_records] == [r.result_digest for r in g_records]
    assert [r.result_digest for r in g_records] == [prompt_digest(p) for p in prompts]
    assert {r.batch_id for r in a_records} == {r.batch_id for r in g_records}
    assert len(worker.batches) == 1
    assert len(executed(worker)) == 4
    stats = await cluster_stats(cp)
    assert stats.executed == 4
    # Each requester of each item is charged its whole share of the batch, as if it had
    # asked alone: no charge reveals a joiner (docs/isolation.md).
    a_cost = (await cp.stats(acme)).tenants[0].cost_usd
    g_cost = (await cp.stats(globex)).tenants[0].cost_usd
    assert stats.cost_usd > 0
    assert a_cost == pytest.approx(g_cost)
    assert a_cost == pytest.approx(stats.cost_usd)
    assert sum(r.cost_usd for r in a_records) == pytest.approx(a_cost)


async def test_an_item_asked_twice_and_by_two_nodes_runs_once(fabric: Fabric) -> None:
    cp = await fabric.plane()
    acme = await fabric.tenant("acme")
    wf = workflow(left=generate(["x", "x", "y"]), right=generate(["y", "z"]))
    sub = await cp.submit_workflow(acme, wf)
    worker = await fabric.worker()
    done = await finished(cp, acme, sub.workflow_id)

    assert done.state is NodeState.DONE
    ran = executed(worker)
    assert_each_ran_once(ran)
    assert sorted(i.inputs["prompts"].value for i in ran) == ["x", "y", "z"]
    left, right = by_index(done.nodes[0].lineage, "left"), by_index(done.nodes[1].lineage, "right")
    # Within a node, the first request for x runs it and the second joins it. Between the
    # nodes (started in no promised order), y runs for exactly one and the other joins.
    assert [r.satisfied_by for r in left[:2]] == [Satisfaction.EXECUTED, Satisfaction.JOINED]
    assert right[1].satisfied_by is Satisfaction.EXECUTED
    assert {left[2].satisfied_by, right[0].satisfied_by} == {
        Satisfaction.EXECUTED,
        Satisfaction.JOINED,
    }
    assert left[2].op_key == right[0].op_key
    assert left[2].batch_id == right[0].batch_id
    assert [r.result_digest for r in left] == [prompt_digest(p) for p in ("x", "x", "y")]
    assert [r.result_digest for r in right] == [prompt_digest(p) for p in ("y", "z")]
    assert (done.nodes[0].items_done, done.nodes[1].items_done) == (3, 2)
    manifest = canonical_json({"manifest": [prompt_digest(p) for p in ("x", "x", "y")]})
    assert done.nodes[0].result_digest == digest_bytes(manifest)
    assert (await cluster_stats(cp)).executed == 3


@both_stores
async def test_dedup_domain_tenant_keeps_identical_work_apart(fabric: Fabric) -> None:
    cp = await fabric.plane(dedup_domain="tenant")
    acme, globex = await fabric.tenant("acme"), await fabric.tenant("globex")
    prompts = ["same-1", "same-2", "same-3"]
    sub_a = await cp.submit_workflow(acme, workflow(gen=generate(prompts)))
    sub_g = await cp.submit_workflow(globex, workflow(gen=generate(prompts)))
    assert (sub_g.nodes[0].created, sub_g.nodes[0].joined) == (3, 0)
    worker = await fabric.worker()
    done_a = await finished(cp, acme, sub_a.workflow_id)
    done_g = await finished(cp, globex, sub_g.workflow_id)

    assert (done_a.state, done_g.state) == (NodeState.DONE, NodeState.DONE)
    ran = executed(worker)
    assert len(ran) == 6
    assert collections.Counter(i.inputs["prompts"].value for i in ran) == {p: 2 for p in prompts}
    domains = collections.Counter(a.domain for b in worker.batches for a in b.items)
    assert domains == {"tenant:acme": 3, "tenant:globex": 3}
    for done in (done_a, done_g):
        records = by_index(done.nodes[0].lineage, "gen")
        assert [r.satisfied_by for r in records] == [Satisfaction.EXECUTED] * 3
    assert (await cluster_stats(cp)).executed == 6
    # A later request by acme hits acme's cache only.
    again = await cp.submit_workflow(acme, workflow(gen=generate(prompts)))
    assert again.nodes[0].cache_hits == 3


# -- batching and dependencies ------------------------------------------------------------


async def test_compatible_items_share_a_batch_and_incompatible_ones_never_do(
    fabric: Fabric,
) -> None:
    cp = await fabric.plane()
    acme, globex = await fabric.tenant("acme"), await fabric.tenant("globex")
    worker = await fabric.worker(delay_s=0.5)
    blocker = await cp.submit_workflow(acme, workflow(gen=generate(["block"], model="other")))
    await eventually(lambda: running(cp, acme, blocker.workflow_id), what="the blocker to run")

    # Submitted while the only worker is busy.
    subs = [
        (acme, workflow(gen=generate(["a1", "a2"], max_new_tokens=16))),
        (globex, workflow(gen=generate(["g1", "g2", "g3"], max_new_tokens=16))),
        (acme, workflow(gen=generate(["m1", "m2"], model="tiny-llama", max_new_tokens=16))),
        (globex, workflow(gen=generate(["t1", "t2"], max_new_tokens=32))),
        # Sampling: the seed is a per-item param, so different seeds may share a batch.
        (acme, workflow(gen=generate(["s1"], temperature=0.7, seed=1, max_new_tokens=16))),
        (globex, workflow(gen=generate(["s2"], temperature=0.7, seed=2, max_new_tokens=16))),
    ]
    ids = [(t, (await cp.submit_workflow(t, wf)).workflow_id) for t, wf in subs]
    for tenant, wf_id in ids:
        assert (await finished(cp, tenant, wf_id)).state is NodeState.DONE

    batches = [sorted(str(a.spec.inputs["prompts"].value) for a in b.items) for b in worker.batches]
    assert sorted(batches) == sorted(
        [["block"], ["a1", "a2", "g1", "g2", "g3"], ["m1", "m2"], ["t1", "t2"], ["s1", "s2"]]
    )
    for batch in worker.batches:
        shapes = {
            (
                a.spec.model.name if a.spec.model else None,
                a.spec.params["max_new_tokens"],
                a.spec.params["temperature"],
            )
            for a in batch.items
        }
        assert len(shapes) == 1, f"batch {batch.batch_id} mixes {shapes}"
        assert {a.spec.signature for a in batch.items} == {batch.signature}
    stats = await cluster_stats(cp)
    assert (stats.batches, stats.executed) == (5, 12)
    assert stats.mean_batch_size == pytest.approx(12 / 5)


async def test_scheduler_max_batch_caps_every_batch_below_the_workers_own_limit(
    fabric: Fabric,
) -> None:
    cp = await fabric.plane(scheduler_max_batch=2)
    acme = await fabric.tenant("acme")
    worker = await fabric.worker(delay_s=0.05, max_batch=64)
    sub = await cp.submit_workflow(acme, workflow(gen=generate([f"c{i}" for i in range(5)])))
    assert (await finished(cp, acme, sub.workflow_id)).state is NodeState.DONE
    assert sorted(len(b.items) for b in worker.batches) == [1, 2, 2]


@both_stores
async def test_a_dependent_node_starts_when_its_input_is_done_with_its_digests(
    fabric: Fabric,
) -> None:
    cp = await fabric.plane()
    acme = await fabric.tenant("acme")
    worker = await fabric.worker(delay_s=0.3)
    prompts = ["q1", "q2", "q3"]
    wf = workflow(
        gen=generate(prompts),
        emb={"kind": "embed", "model": "mini-lm", "inputs": {"texts": {"ref": "gen"}}},
    )
    sub = await cp.submit_workflow(acme, wf)
    assert [n.state for n in sub.nodes] == [NodeState.PENDING, NodeState.WAITING]
    assert sub.nodes[1].waits_for == ["gen"]
    status = await cp.status(acme, sub.workflow_id)
    assert status.nodes[1].state is NodeState.WAITING
    assert status.nodes[1].lineage == []
    done = await finished(cp, acme, sub.workflow_id)

    assert done.state is NodeState.DONE
    assert [b.kind for b in worker.batches] == ["llm.generate", "embed"]
    gen_records = by_index(done.nodes[0].lineage, "gen")
    emb_records = by_index(done.nodes[1].lineage, "emb")
    gen_digests = [prompt_digest(p) for p in prompts]
    assert [r.result_digest for r in gen_records] == gen_digests
    embed_items = [a.spec for a in worker.batches[1].items]
    assert [i.inputs["texts"] for i in embed_items] == [ItemBlob(digest=d) for d in gen_digests]
    assert [i.input_digests["texts"] for i in embed_items] == gen_digests
    last_gen = max(r.finished_at or 0 for r in gen_records)
    assert min(r.requested_at for r in emb_records) >= last_gen
    assert [r.result_digest for r in emb_records] == [
        echo_digest("embed", {"texts": {"blob": d}}) for d in gen_digests
    ]
    manifest = canonical_json({"manifest": [r.result_digest for r in emb_records]})
    assert done.nodes[1].result_digest == digest_bytes(manifest)
    info, chunks = await cp.open_result(acme, done.nodes[1].result_digest)
    assert b"".join(chunks) == manifest
    assert info.size == len(manifest)


# -- the loops themselves ------------------------------------------------------------------


@both_stores
async def test_an_idle_control_plane_blocks_instead_of_spinning(fabric: Fabric) -> None:
    # The applier reads the events stream with XREADGROUP ... BLOCK 500: idle, it should
    # wake about twice a second, on the embedded store as on any Redis: it must not spin.
    cp = await fabric.plane()
    limit = 10
    reads = 0
    read_once = cp.applier.read_once

    async def counted(*args: Any, **kw: Any) -> int:
        nonlocal reads
        reads += 1
        return await read_once(*args, **kw)

    cp.applier.read_once = counted  # type: ignore[method-assign]
    cpu = time.process_time()
    await asyncio.sleep(1.0)
    cpu = time.process_time() - cpu
    assert reads <= limit, f"the idle applier read the events stream {reads} times in 1 s"
    assert cpu < 0.5, f"an idle control plane used {cpu:.2f} s of CPU in 1 s"


async def test_a_workflow_whose_every_item_is_cached_finishes_at_submission(
    fabric: Fabric,
) -> None:
    cp = await fabric.plane()
    acme, globex = await fabric.tenant("acme"), await fabric.tenant("globex")
    worker = await fabric.worker()
    spec = {
        "gen": generate(["c1", "c2"]),
        "emb": {"kind": "embed", "model": "mini-lm", "inputs": {"texts": {"ref": "gen"}}},
    }
    first = await finished(cp, acme, (await cp.submit_workflow(acme, workflow(**spec))).workflow_id)
    assert first.state is NodeState.DONE
    batches = len(worker.batches)

    again = await cp.submit_workflow(globex, workflow(**spec))
    status = await cp.status(globex, again.workflow_id)

    assert status.state is NodeState.DONE
    assert [n.result_digest for n in status.nodes] == [n.result_digest for n in first.nodes]
    assert {r.satisfied_by for n in status.nodes for r in n.lineage} == {Satisfaction.CACHE_HIT}
    assert len(worker.batches) == batches


# -- restarts and replicas ----------------------------------------------------------------


@both_stores
async def test_a_restarted_control_plane_finishes_everything_once(fabric: Fabric) -> None:
    first = await fabric.plane(consumer="host-a-101")
    acme = await fabric.tenant("acme")
    worker = await fabric.worker(delay_s=1.0, max_batch=2)
    prompts = [f"r{i}" for i in range(6)]
    sub = await first.submit_workflow(acme, workflow(gen=generate(prompts)))
    await eventually(lambda: running(first, acme, sub.workflow_id), what="the first batch")

    async def taken() -> bool:  # claimed is not yet read: the worker polls its stream
        return bool(worker.batches)

    await eventually(taken, what="the worker to take the first batch")
    await fabric.stop_plane(first)  # while a batch runs and four items wait
    (pool,) = await worker.store.ready_summary(10)
    assert pool[1] == 4
    assert len(worker.batches) == 1

    async def reported() -> bool:  # the batch finishes with no control plane up
        return bool(await worker.store.redis.xlen(worker.store.keys.events()))

    await eventually(reported, what="the worker's report")
    # A new process: another connection, another consumer name, nothing in memory.
    second = await fabric.plane(consumer="host-b-202")
    done = await finished(second, acme, sub.workflow_id)

    assert done.state is NodeState.DONE
    ran = executed(worker)
    assert_each_ran_once(ran)
    assert sorted(i.inputs["prompts"].value for i in ran) == prompts
    records = by_index(done.nodes[0].lineage, "gen")
    assert [r.result_digest for r in records] == [prompt_digest(p) for p in prompts]
    assert all(r.status is ItemStatus.DONE for r in records)
    stats = await cluster_stats(second)
    assert (stats.executed, stats.batches) == (6, 3)
    assert await second.store.inflight() == []


async def test_a_report_read_by_a_killed_control_plane_is_applied_after_restart(
    fabric: Fabric,
) -> None:
    # A control plane reads a worker's report off the events stream and is killed before
    # it applies and acks it. Its replacement runs as another process (another consumer
    # name): the report must not be lost with the dead consumer (stalled entries are
    # reclaimed before new ones are read: docs/architecture.md, "Streams and delivery").
    first = await fabric.plane(consumer="host-a-101")
    acme = await fabric.tenant("acme")
    read = asyncio.Event()

    async def killed_mid_apply(report: Completion) -> None:
        read.set()
        await asyncio.Event().wait()  # the process dies here: never applied, never acked

    first.applier.apply = killed_mid_apply  # type: ignore[method-assign]
    worker = await fabric.worker()
    sub = await first.submit_workflow(acme, workflow(gen=generate(["k1", "k2"])))
    await asyncio.wait_for(read.wait(), timeout=5)
    await fabric.kill_plane(first)

    second = await fabric.plane(consumer="host-b-202")
    done = await second.wait(acme, sub.workflow_id, 5.0, with_lineage=True)

    assert done.state is NodeState.DONE, (
        "the report the killed plane had read stays pending on its consumer forever; "
        f"the workflow is stuck {done.state}"
    )
    assert len(executed(worker)) == 2


@pytest.mark.parametrize("ending", ["done", "failed"])
async def test_a_plane_killed_between_an_item_ending_and_its_node_settling_loses_nothing(
    fabric: Fabric, ending: str
) -> None:
    # The last item's result (or final failure) is recorded atomically and announced on
    # the outbox by the same step, but the node's transition (manifest, dependents,
    # workflow) is applied after it. A plane killed in between must not strand the
    # workflow: its replacement adopts the outbox entry the dead one never acknowledged.
    first = await fabric.plane(consumer="host-a-101", max_attempts=1)
    acme = await fabric.tenant("acme")
    died = asyncio.Event()

    async def killed(wf_id: str) -> None:
        died.set()
        await asyncio.Event().wait()  # the process dies here

    first.engine.advance = killed  # type: ignore[method-assign]
    failing = "bad" if ending == "failed" else None

    def execute(item: Item) -> Any:
        if item.inputs.get("prompts") == ItemLiteral(value=failing):
            raise ValueError("refusing bad")
        return echo(item)

    await fabric.worker(execute=execute)
    nodes = workflow(gen=generate(["k1", failing or "k2"]), more=generate({"ref": "gen"}))
    sub = await first.submit_workflow(acme, nodes)
    await asyncio.wait_for(died.wait(), timeout=5)
    await fabric.kill_plane(first)

    second = await fabric.plane(consumer="host-b-202")
    done = await second.wait(acme, sub.workflow_id, 8.0)
    assert done.state is (NodeState.DONE if ending == "done" else NodeState.FAILED), done

    async def adopted() -> bool:
        pending = await second.store.redis.xpending(second.store.keys.outbox(), "control")
        return int(pending["pending"]) == 0

    await eventually(adopted, within_s=8.0, what="the dead plane's outbox entry adopted")


async def test_two_control_planes_one_scheduler_and_each_item_runs_once(fabric: Fabric) -> None:
    one = await fabric.plane(consumer="host-a-1", lease_ttl_s=3.0)
    two = await fabric.plane(consumer="host-b-2", lease_ttl_s=3.0)
    claims: dict[str, list[int]] = {"one": [], "two": []}
    for name, cp in (("one", one), ("two", two)):
        original = cp.store.claim_batch

        async def counted(*args: Any, _orig: Any = original, _n: str = name) -> int:
            got: int = await _orig(*args)
            claims[_n].append(got)
            return got

        cp.store.claim_batch = counted  # type: ignore[method-assign]
    acme, globex = await fabric.tenant("acme"), await fabric.tenant("globex")
    workers = [await fabric.worker(f"play-{i}", delay_s=0.2, max_batch=3) for i in range(2)]
    await eventually(
        lambda: one.store.redis.exists(one.store.keys.scheduler_lease()),
        what="a scheduler to take the lease",
    )

    prompts = [f"c{i}" for i in range(12)]
    sub_a = await one.submit_workflow(acme, workflow(gen=generate(prompts[:8])))
    sub_g = await two.submit_workflow(globex, workflow(gen=generate(prompts[4:])))
    for cp, tenant, wf_id in ((two, acme, sub_a.workflow_id), (one, globex, sub_g.workflow_id)):
        assert (await finished(cp, tenant, wf_id)).state is NodeState.DONE

    holder = await one.store.redis.get(one.store.keys.scheduler_lease())
    leader, follower = ("one", "two") if holder == one.scheduler.fence else ("two", "one")
    assert holder in (one.scheduler.fence, two.scheduler.fence)
    assert sum(claims[leader]) > 0
    assert claims[follower] == [], "the scheduler without the lease assigned work"
    ran = executed(*workers)
    assert_each_ran_once(ran)
    assert sorted(i.inputs["prompts"].value for i in ran) == sorted(prompts)
    assert (await cluster_stats(one)).executed == 12

    # The leader goes away: the other takes the lease and finishes new work.
    leading, other = (one, two) if leader == "one" else (two, one)
    await fabric.stop_plane(leading)
    sub_late = await other.submit_workflow(acme, workflow(gen=generate(["late-1", "late-2"])))
    assert (await finished(other, acme, sub_late.workflow_id)).state is NodeState.DONE
    assert await other.store.redis.get(other.store.keys.scheduler_lease()) == (
        other.scheduler.fence
    )
    assert_each_ran_once(executed(*workers))


# -- tenant isolation ---------------------------------------------------------------------


async def test_a_tenant_cannot_see_another_tenants_workflow_or_results(fabric: Fabric) -> None:
    cp = await fabric.plane()
    acme, globex = await fabric.tenant("acme"), await fabric.tenant("globex")
    await fabric.worker()
    sub = await cp.submit_workflow(acme, workflow(gen=generate(["secret-1", "secret-2"])))
    done = await finished(cp, acme, sub.workflow_id)
    node_digest = done.nodes[0].result_digest
    item_digest = by_index(done.nodes[0].lineage, "gen")[0].result_digest
    assert node_digest is not None
    assert item_digest is not None

    with pytest.raises(NotFoundError):
        await cp.status(globex, sub.workflow_id)
    with pytest.raises(NotFoundError):
        await cp.lineage(globex, sub.workflow_id)
    with pytest.raises(NotFoundError):
        await cp.wait(globex, sub.workflow_id, 0.1)
    for digest in (node_digest, item_digest):
        with pytest.raises(NotFoundError):
            await cp.open_result(globex, digest)
        _, chunks = await cp.open_result(acme, digest)
        assert b"".join(chunks)
    assert [t.tenant for t in (await cp.stats(globex)).tenants] == ["globex"]

    # Asking for the same work gives globex the result, and none of acme's provenance.
    mine = await cp.submit_workflow(globex, workflow(gen=generate(["secret-1"])))
    status = await finished(cp, globex, mine.workflow_id)
    (record,) = status.nodes[0].lineage
    assert (record.tenant, record.workflow) == ("globex", mine.workflow_id)
    assert record.satisfied_by is Satisfaction.CACHE_HIT
    assert record.result_digest == item_digest
    _, chunks = await cp.open_result(globex, item_digest)
    assert b"".join(chunks)
    with pytest.raises(NotFoundError):
        await cp.open_result(globex, by_index(done.nodes[0].lineage, "gen")[1].result_digest or "")


async def test_a_tenant_cannot_feed_another_tenants_result_into_its_own_work(
    fabric: Fabric,
) -> None:
    # globex may not open acme's result (open_result checks the tenant's lineage), so it
    # must not be able to read it by naming it as an input either: the engine would
    # load the blob to split it, and a worker would compute on acme's data for globex.
    cp = await fabric.plane()
    acme, globex = await fabric.tenant("acme"), await fabric.tenant("globex")
    worker = await fabric.worker()
    sub = await cp.submit_workflow(acme, workflow(gen=generate(["private-1", "private-2"])))
    manifest = (await finished(cp, acme, sub.workflow_id)).nodes[0].result_digest
    assert manifest is not None
    with pytest.raises(NotFoundError):
        await cp.open_result(globex, manifest)
    batches = len(worker.batches)

    with pytest.raises(NotFoundError):
        await cp.submit_workflow(
            globex,
            workflow(
                emb={"kind": "embed", "model": "mini-lm", "inputs": {"texts": {"blob": manifest}}}
            ),
        )

    assert await cp.store.tenant_workflows("globex") == []
    await asyncio.sleep(0.3)
    assert len(worker.batches) == batches


# -- failures -----------------------------------------------------------------------------


def fails_on(bad: str) -> Callable[[Item], Any]:
    def execute(item: Item) -> Any:
        if item.inputs.get("prompts") == ItemLiteral(value=bad):
            raise RuntimeError(f"CUDA error on {bad!r}")
        return echo(item)

    return execute


async def test_a_failing_item_is_retried_then_fails_every_requester_alone(
    fabric: Fabric,
) -> None:
    cp = await fabric.plane(max_attempts=3)
    acme, globex = await fabric.tenant("acme"), await fabric.tenant("globex")
    prompts = ["fine-1", "bad", "fine-2"]
    sub_a = await cp.submit_workflow(acme, workflow(gen=generate(prompts)))
    sub_g = await cp.submit_workflow(globex, workflow(gen=generate(["bad"])))
    worker = await fabric.worker(execute=fails_on("bad"))
    done_a = await finished(cp, acme, sub_a.workflow_id)
    done_g = await finished(cp, globex, sub_g.workflow_id)

    ran = [i.inputs["prompts"].value for i in executed(worker)]
    assert collections.Counter(ran) == {"bad": 3, "fine-1": 1, "fine-2": 1}
    assert sorted(a.spec.inputs["prompts"].value for a in worker.batches[0].items) == sorted(
        prompts
    )
    attempts = [
        a.attempt
        for b in worker.batches
        for a in b.items
        if a.spec.inputs["prompts"].value == "bad"
    ]
    assert attempts == [1, 2, 3]

    for done in (done_a, done_g):
        assert done.state is NodeState.FAILED
        assert done.nodes[0].state is NodeState.FAILED
        assert "CUDA error on 'bad'" in (done.nodes[0].error or "")
    a_records = by_index(done_a.nodes[0].lineage, "gen")
    (g_record,) = done_g.nodes[0].lineage
    for record in (a_records[1], g_record):
        assert (record.status, record.error) == (ItemStatus.FAILED, "CUDA error on 'bad'")
        assert record.result_digest is None
    assert g_record.satisfied_by is Satisfaction.JOINED
    for record, prompt in ((a_records[0], "fine-1"), (a_records[2], "fine-2")):
        assert (record.status, record.result_digest) == (ItemStatus.DONE, prompt_digest(prompt))
    stats = await cluster_stats(cp)
    assert (stats.executed, stats.failed) == (2, 1)


async def test_a_poison_item_stops_after_max_attempts(fabric: Fabric) -> None:
    cp = await fabric.plane(max_attempts=2)
    acme = await fabric.tenant("acme")
    worker = await fabric.worker(execute=fails_on("poison"))
    sub = await cp.submit_workflow(acme, workflow(gen=generate(["poison"])))
    done = await finished(cp, acme, sub.workflow_id)

    assert done.state is NodeState.FAILED
    await asyncio.sleep(1.0)  # room for any further (wrong) attempt
    assert [i.inputs["prompts"].value for i in executed(worker)] == ["poison", "poison"]
    assert await cp.store.inflight() == []
    assert await cp.store.ready_summary(10) == []
    assert (await cluster_stats(cp)).failed == 1
    # A new request after the failure may try again: the failure is not cached.
    again = await cp.submit_workflow(acme, workflow(gen=generate(["poison"])))
    assert again.nodes[0].created == 1
    assert (await finished(cp, acme, again.workflow_id)).state is NodeState.FAILED
    assert len(executed(worker)) == 4


async def assign_by_hand(cp: ControlPlane) -> tuple[str, str]:
    """Run one scheduling round of an idle plane; (domain, op key) of the op it assigned."""
    cp.scheduler.fence = await cp.store.new_fence()
    assert await cp.store.hold_lease(cp.scheduler.fence, 30)
    assert await cp.scheduler.round() == 1
    ((domain, op_key),) = await cp.store.inflight()
    return domain, op_key


async def report(cp: ControlPlane, worker_id: str, domain: str, op_key: str, error: str) -> None:
    """Put a worker's failure report for one op on the events stream."""
    state = await cp.store.op_state(domain, op_key)
    completion = Completion(
        batch_id=state.get("batch_id", "gone"),
        worker_id=worker_id,
        signature="s" * 64,
        started_at=time.time(),
        finished_at=time.time(),
        results=[ItemResult(domain=domain, op_key=op_key, error=error)],
    )
    await cp.store.redis.xadd(cp.store.keys.events(), completion.to_stream())


def profile(worker_id: str) -> WorkerProfile:
    return WorkerProfile(
        worker_id=worker_id, accelerator="cpu", memory_bytes=1 << 30, price_per_hour=1.0, watts=50
    )


async def test_a_repeated_failure_report_does_not_fail_an_item_being_retried(
    fabric: Fabric,
) -> None:
    # Reports travel at least once: a report applied twice must change nothing more
    # (completions.py promises it). A first failure hands the item back for a retry; the
    # same report again must not turn that retry into a final failure after one attempt.
    cp = fabric.idle_plane(max_attempts=3)
    acme = await fabric.tenant("acme")
    await cp.store.register_worker(profile("w1"))
    await cp.store.create_group(cp.store.keys.events(), EVENTS_GROUP)
    sub = await cp.submit_workflow(acme, workflow(gen=generate(["flaky"])))
    domain, op_key = await assign_by_hand(cp)
    await report(cp, "w1", domain, op_key, "transient: connection reset")
    await cp.store.redis.xadd(  # the same report, delivered twice
        cp.store.keys.events(),
        dict((await cp.store.redis.xrange(cp.store.keys.events()))[-1][1]),
    )

    assert await cp.applier.read_once(">", block_ms=100) == 2

    status = await cp.status(acme, sub.workflow_id)
    assert status.state is not NodeState.FAILED, "one transient failure, reported twice, failed it"
    op = await cp.store.op_state(domain, op_key)
    assert (op.get("status"), op.get("attempts")) == ("pending", "1")


async def test_a_late_failure_report_from_a_replaced_worker_does_not_fail_the_item(
    fabric: Fabric,
) -> None:
    # w1 stopped heartbeating; its item was re-planned and now runs on w2. w1's report of
    # a failure arrives late: the item is w2's now, and must not fail under it.
    cp = fabric.idle_plane(max_attempts=3)
    acme = await fabric.tenant("acme")
    await cp.store.register_worker(profile("w1"))
    await cp.store.create_group(cp.store.keys.events(), EVENTS_GROUP)
    sub = await cp.submit_workflow(acme, workflow(gen=generate(["slow"])))
    domain, op_key = await assign_by_hand(cp)
    assert await cp.store.requeue(domain, op_key, "w1")  # as the reclaimer does
    await cp.store.deregister_worker("w1")
    await cp.store.register_worker(profile("w2"))
    assert await cp.scheduler.round() == 1
    assert (await cp.store.op_state(domain, op_key))["worker"] == "w2"

    await report(cp, "w1", domain, op_key, "lost its accelerator")
    assert await cp.applier.read_once(">", block_ms=100) == 1

    status = await cp.status(acme, sub.workflow_id)
    assert status.state is not NodeState.FAILED, "w1's stale report failed w2's work"
    op = await cp.store.op_state(domain, op_key)
    assert (op.get("status"), op.get("worker")) == ("running", "w2")


async def test_the_work_of_a_worker_that_stops_heartbeating_is_replanned(
    fabric: Fabric,
) -> None:
    cp = await fabric.plane(worker_ttl_s=1.0)
    acme = await fabric.tenant("acme")
    doomed = await fabric.worker("play-1", dies_on="d1")
    prompts = ["d0", "d1", "d2"]
    sub = await cp.submit_workflow(acme, workflow(gen=generate(prompts)))
    await eventually(lambda: running(cp, acme, sub.workflow_id), what="play-1 to take the batch")
    rescuer = await fabric.worker("play-2")
    done = await finished(cp, acme, sub.workflow_id)

    assert done.state is NodeState.DONE
    assert [len(b.items) for b in doomed.batches] == [3]
    assert sorted(i.inputs["prompts"].value for i in executed(rescuer)) == prompts
    records = by_index(done.nodes[0].lineage, "gen")
    assert {r.worker for r in records} == {"play-2"}
    assert [r.result_digest for r in records] == [prompt_digest(p) for p in prompts]
    assert (await cluster_stats(cp)).executed == 3


async def test_an_item_that_kills_every_worker_it_runs_on_fails_after_max_attempts(
    fabric: Fabric,
) -> None:
    # A poison item need not raise: it may take its worker down (out of memory). Each
    # death is noticed by the heartbeat and the item re-planned; it must still stop
    # after max_attempts rather than kill the whole fleet one worker at a time.
    cp = await fabric.plane(worker_ttl_s=1.0, max_attempts=2)
    acme = await fabric.tenant("acme")
    fleet = [await fabric.worker(f"play-{i}", dies_on="oom") for i in range(4)]
    sub = await cp.submit_workflow(acme, workflow(gen=generate(["oom"])))
    done = await cp.wait(acme, sub.workflow_id, 7.0, with_lineage=True)

    victims = [w.profile.worker_id for w in fleet if w.batches]
    assert done.state is NodeState.FAILED, f"still {done.state}; it took down {victims}"
    assert len(victims) == 2
    (record,) = done.nodes[0].lineage
    assert record.status is ItemStatus.FAILED
    assert record.error
