"""The store contract: every test runs on the real Redis and on the embedded store."""

from __future__ import annotations

import asyncio
import collections
import uuid

import pytest

from flowmesh_core.errors import ConflictError, StoreUnavailableError
from flowmesh_core.hashing import digest_bytes
from flowmesh_core.models import Item, ItemStatus, Requester, Satisfaction, Workflow
from flowmesh_core.models.graph_summary import GraphSummary
from flowmesh_core.store import JoinOutcome, Store

DOMAIN = "global"
DIGEST_A = digest_bytes(b"result a")
DIGEST_B = digest_bytes(b"result b")


SIGNATURE = "s" * 64


def make_item(signature: str = SIGNATURE) -> Item:
    key = uuid.uuid4().hex * 2
    return Item(
        op_key=key,
        signature=signature,
        kind="embed",
        version="1",
        params={"normalize": True},
        inputs={"texts": {"kind": "literal", "value": key}},
        input_digests={},
    )


async def lease(store: Store) -> str:
    fence = await store.new_fence()
    assert await store.hold_lease(fence, ttl_s=30)
    return fence


def requester(i: int = 0, tenant: str = "acme", node: str = "embed") -> Requester:
    return Requester(tenant=tenant, workflow=f"wf{i}", node=node, index=i)


async def test_first_request_creates_then_others_join_then_cache_hits(store: Store) -> None:
    item = make_item()
    first = await store.join_or_create(DOMAIN, requester(0), item)
    second = await store.join_or_create(DOMAIN, requester(1, tenant="globex"), item)
    assert (first.outcome, first.status) == (JoinOutcome.CREATED, ItemStatus.PENDING)
    assert (second.outcome, second.status) == (JoinOutcome.JOINED, ItemStatus.PENDING)
    assert Item.model_validate_json((await store.op_state(DOMAIN, item.op_key))["spec"]) == item

    done = await store.complete(DOMAIN, item.op_key, DIGEST_A)
    assert not done.duplicate
    assert done.released == 2

    third = await store.join_or_create(DOMAIN, requester(2), item)
    assert third.outcome is JoinOutcome.CACHE_HIT
    assert third.digest == DIGEST_A
    assert await store.cached(DOMAIN, item.op_key) == DIGEST_A
    assert await store.op_state(DOMAIN, item.op_key) == {}


async def test_race_50_concurrent_requests_make_one_creator(
    store_url: str, key_prefix: str
) -> None:
    # Ten separate clients (connection pools) issue 50 requests at once.
    stores = [Store.open(store_url, key_prefix) for _ in range(10)]
    item = make_item()
    try:
        results = await asyncio.gather(
            *(
                stores[i % 10].join_or_create(DOMAIN, requester(i, tenant=f"t{i % 3}"), item)
                for i in range(50)
            )
        )
        outcomes = collections.Counter(r.outcome for r in results)
        assert outcomes == {JoinOutcome.CREATED: 1, JoinOutcome.JOINED: 49}

        done = await stores[0].complete(DOMAIN, item.op_key, DIGEST_A)
        assert done.released == 50
        records = [await stores[0].lineage_of(requester(i, tenant=f"t{i % 3}")) for i in range(50)]
        assert {r.result_digest for r in records if r} == {DIGEST_A}
        assert all(r is not None and r.status is ItemStatus.DONE for r in records)
        how = collections.Counter(r.satisfied_by for r in records if r)
        assert how == {Satisfaction.EXECUTED: 1, Satisfaction.JOINED: 49}
        assert (await stores[0].cluster_stats())["executed"] == 1
    finally:
        await stores[0].purge()
        for s in stores:
            await s.aclose()


async def test_concurrent_completes_record_one_result(store: Store) -> None:
    item = make_item()
    await store.join_or_create(DOMAIN, requester(0), item)
    results = await asyncio.gather(
        *(store.complete(DOMAIN, item.op_key, DIGEST_A if i % 2 else DIGEST_B) for i in range(20))
    )
    assert sum(not r.duplicate for r in results) == 1
    assert len({r.digest for r in results}) == 1
    assert sum(r.released for r in results) == 1
    assert (await store.cluster_stats())["executed"] == 1


async def test_repeat_request_is_idempotent_and_conflict_is_an_error(store: Store) -> None:
    item = make_item()
    await store.join_or_create(DOMAIN, requester(0), item)
    again = await store.join_or_create(DOMAIN, requester(0), item)
    assert again.outcome is JoinOutcome.EXISTING
    assert (await store.tenant_stats("acme"))["requested"] == 1
    with pytest.raises(ConflictError, match="already asked for op"):
        await store.join_or_create(DOMAIN, requester(0), make_item())
    done = await store.complete(DOMAIN, item.op_key, DIGEST_A)
    assert done.released == 1


async def test_late_duplicate_finish_changes_nothing(store: Store) -> None:
    item = make_item()
    await store.join_or_create(DOMAIN, requester(0), item)
    first = await store.complete(DOMAIN, item.op_key, DIGEST_A, worker="w1")
    late = await store.complete(DOMAIN, item.op_key, DIGEST_B, worker="w2")
    assert (first.duplicate, late.duplicate) == (False, True)
    assert late.digest == DIGEST_A
    assert late.released == 0
    record = await store.lineage_of(requester(0))
    assert record is not None
    assert (record.result_digest, record.worker) == (DIGEST_A, "w1")


async def test_claim_requeue_and_attempts(store: Store) -> None:
    item = make_item()
    await store.join_or_create(DOMAIN, requester(0), item)
    await store.join_or_create(DOMAIN, requester(1), item)
    fence = await lease(store)
    assert await store.claim_batch(SIGNATURE, 10, "w1", "batch-1", fence) == 1
    assert await store.claim_batch(SIGNATURE, 10, "w2", "batch-2", fence) == 0
    joined_late = await store.join_or_create(DOMAIN, requester(2), item)
    assert joined_late.status is ItemStatus.RUNNING
    record = await store.lineage_of(requester(1))
    assert record is not None
    assert (record.status, record.worker, record.batch_id) == (ItemStatus.RUNNING, "w1", "batch-1")

    assert not await store.requeue(DOMAIN, item.op_key, "w2")  # not w2's to give back
    assert await store.requeue(DOMAIN, item.op_key, "w1")
    record = await store.lineage_of(requester(1))
    assert record is not None
    assert (record.status, record.worker) == (ItemStatus.PENDING, None)
    assert await store.claim_batch(SIGNATURE, 10, "w2", "batch-3", fence) == 1
    assert (await store.op_state(DOMAIN, item.op_key))["attempts"] == "2"


async def test_fail_marks_every_waiter_and_allows_a_retry(store: Store) -> None:
    item = make_item()
    await store.submit_workflow("wf0", "acme", "", "{}", ["embed"])
    await store.start_node("acme", DOMAIN, "wf0", "embed", item.op_key, [item], batched=False)
    for i in range(1, 3):
        await store.join_or_create(DOMAIN, requester(i), item)
    failed = await store.fail(DOMAIN, item.op_key, "CUDA out of memory")
    assert failed == 1  # the one node with a start record, announced once
    entries = await store.redis.xrange(store.keys.outbox())
    assert [(f["event"], f["node"]) for _, f in entries][-1] == ("node.item_failed", "embed")
    for i in range(3):
        failed_record = await store.lineage_of(requester(i))
        assert failed_record is not None
        assert failed_record.status is ItemStatus.FAILED
    record = await store.lineage_of(requester(2))
    assert record is not None
    assert (record.status, record.error) == (ItemStatus.FAILED, "CUDA out of memory")
    assert await store.cached(DOMAIN, item.op_key) is None
    assert await store.inflight() == []
    retry = await store.join_or_create(DOMAIN, requester(9), item)
    assert retry.outcome is JoinOutcome.CREATED
    assert (await store.cluster_stats())["failed"] == 1


async def test_failure_after_completion_is_ignored(store: Store) -> None:
    item = make_item()
    await store.join_or_create(DOMAIN, requester(0), item)
    await store.complete(DOMAIN, item.op_key, DIGEST_A)
    assert await store.fail(DOMAIN, item.op_key, "late error") == 0
    record = await store.lineage_of(requester(0))
    assert record is not None
    assert record.status is ItemStatus.DONE


async def test_inflight_index_tracks_pending_and_running_ops(store: Store) -> None:
    items = [make_item() for _ in range(3)]
    for i, item in enumerate(items):
        await store.join_or_create(DOMAIN, requester(i), item)
    assert await store.claim_batch(SIGNATURE, 1, "w", "b", await lease(store)) == 1
    assert await store.inflight() == [(DOMAIN, i.op_key) for i in items]
    await store.complete(DOMAIN, items[0].op_key, DIGEST_A)
    assert await store.inflight() == [(DOMAIN, items[1].op_key), (DOMAIN, items[2].op_key)]


async def test_domains_do_not_share(store: Store) -> None:
    item = make_item()
    a = await store.join_or_create("tenant:a", requester(0, tenant="a"), item)
    b = await store.join_or_create("tenant:b", requester(1, tenant="b"), item)
    assert (a.outcome, b.outcome) == (JoinOutcome.CREATED, JoinOutcome.CREATED)
    await store.complete("tenant:a", item.op_key, DIGEST_A)
    assert await store.cached("tenant:b", item.op_key) is None
    assert await store.cached_many("tenant:a", [item.op_key, make_item().op_key]) == [
        DIGEST_A,
        None,
    ]


async def test_each_requester_is_charged_the_whole_cost_whoever_else_asked(
    store: Store,
) -> None:
    item = make_item()
    for i in range(4):
        await store.join_or_create(DOMAIN, requester(i), item)
    await store.claim_batch(SIGNATURE, 10, "w1", "b1", await lease(store))
    await store.complete(
        DOMAIN, item.op_key, DIGEST_A, cost_usd=2.0, energy_wh=10.0, started_at=5.0
    )
    record = await store.lineage_of(requester(3))
    assert record is not None
    assert (record.cost_usd, record.energy_wh, record.started_at) == (2.0, 10.0, 5.0)


async def test_workflow_records_and_lineage_order(store: Store) -> None:
    await store.submit_workflow("wf0", "acme", "demo", '{"nodes": {}}', ["embed", "score"])
    with pytest.raises(ConflictError):
        await store.submit_workflow("wf0", "acme", "again", "{}", ["x"])
    state = await store.workflow("wf0")
    assert state is not None
    assert (state.tenant, state.name, state.nodes) == (
        "acme",
        "demo",
        {"embed": "waiting", "score": "waiting"},
    )
    item = make_item()
    await store.start_node("acme", DOMAIN, "wf0", "embed", item.op_key, [item], batched=False)
    await store.complete(DOMAIN, item.op_key, DIGEST_A)
    assert await store.finish_node("wf0", "embed", DIGEST_A) == (True, False)
    state = await store.workflow("wf0")
    assert state is not None
    assert state.nodes["embed"] == "done"
    assert await store.workflow("nope") is None
    assert await store.tenant_workflows("acme") == ["wf0"]

    items = [make_item() for _ in range(3)]
    for i, item in enumerate(items):
        req = Requester(tenant="acme", workflow="wf0", node="score", index=i)
        await store.join_or_create(DOMAIN, req, item)
    lineage = [r for r in await store.lineage("wf0") if r.node == "score"]
    assert [r.op_key for r in lineage] == [i.op_key for i in items]
    assert [r.index for r in lineage] == [0, 1, 2]


async def test_blob_index_keeps_the_first_record(store: Store) -> None:
    await store.record_blob(DIGEST_A, 8, "application/json")
    first = await store.blob(DIGEST_A)
    await store.record_blob(DIGEST_A, 9, "text/plain")
    await store.record_upload("acme", DIGEST_A, 10, "application/octet-stream")
    await store.record_checkpoint(DIGEST_A, 11, [DIGEST_B], 3)
    second = await store.blob(DIGEST_A)
    assert first is not None
    assert second == first
    assert (second.size, second.media_type) == (8, "application/json")
    assert await store.redis.hget(store.keys.blob(DIGEST_A), "tree_bytes") == "3"
    assert await store.blob(DIGEST_B) is None  # a listed file is not indexed by its tree


async def test_racing_index_writers_leave_one_writers_whole_record(clients: list[Store]) -> None:
    """Uploads, results' manifests and checkpoint trees index a blob through one Lua step
    each (index_blob in the prelude): whichever runs first, its size and media type stay
    together, never one writer's size with another's media type."""
    writers = []
    for i in range(30):
        store = clients[i % len(clients)]
        size, media = 100 + i, f"application/x-writer-{i}"
        if i % 3 == 0:
            writers.append(store.record_blob(DIGEST_A, size, media))
        elif i % 3 == 1:
            writers.append(store.record_upload(f"tenant-{i}", DIGEST_A, size, media))
        else:
            writers.append(store.record_checkpoint(DIGEST_A, size, [DIGEST_B], i))
    await asyncio.gather(*writers)
    record = await clients[0].blob(DIGEST_A)
    assert record is not None
    writer = record.size - 100
    expected = "application/json" if writer % 3 == 2 else f"application/x-writer-{writer}"
    assert record.media_type == expected


async def test_tenant_stats_count_each_way_of_satisfying(store: Store) -> None:
    item = make_item()
    await store.join_or_create(DOMAIN, requester(0), item)
    await store.join_or_create(DOMAIN, requester(1), item)
    await store.complete(DOMAIN, item.op_key, DIGEST_A)
    await store.join_or_create(DOMAIN, requester(2), item)
    stats = await store.tenant_stats("acme")
    counts = {k: stats[k] for k in ("requested", "created", "joins", "cache_hits")}
    assert counts == {"requested": 3, "created": 1, "joins": 1, "cache_hits": 1}


async def test_capabilities_and_purge_stay_in_their_prefix(store: Store) -> None:
    await store.check_capabilities()
    neighbour = store.scratch("neighbour")
    await neighbour.join_or_create(DOMAIN, requester(0), make_item())
    await store.join_or_create(DOMAIN, requester(1), make_item())
    assert await neighbour.purge() > 0
    assert await neighbour.inflight() == []
    assert len(await store.inflight()) == 1


async def test_unreachable_redis_is_a_clear_error() -> None:
    store = Store.open("redis://127.0.0.1:1/0", "fmtest")
    try:
        with pytest.raises(
            StoreUnavailableError, match=r"redis://127\.0\.0\.1:1/0 does not answer"
        ):
            await store.ping()
    finally:
        await store.aclose()


async def test_the_index_of_active_workflows_follows_each_way_a_workflow_ends(
    store: Store,
) -> None:
    # docs/autoscaling.md, "The next wave": the autoscaler reads running workflows here
    for wf_id in ("wf-done", "wf-fail", "wf-cancel"):
        await store.submit_workflow(
            wf_id,
            "acme",
            "",
            _TWO_NODES.model_dump_json(),
            ["embed", "score"],
            graph=GraphSummary.of(_TWO_NODES),
        )
    items = [make_item() for _ in range(3)]
    await store.start_node("acme", DOMAIN, "wf-done", "embed", "k" * 64, items, batched=True)
    active = {wf.id: wf for wf in await store.active_workflows(10)}
    assert set(active) == {"wf-done", "wf-fail", "wf-cancel"}
    assert active["wf-done"].nodes == {"embed": "pending", "score": "waiting"}
    assert active["wf-done"].items == {"embed": (3, 3)}
    assert active["wf-fail"].items == {}
    assert active["wf-cancel"].graph == GraphSummary.of(_TWO_NODES).to_json()
    assert len(await store.active_workflows(2)) == 2  # the cap: the oldest two

    await store.finish_node("wf-done", "embed", DIGEST_A)
    score = make_item()
    await store.start_node("acme", DOMAIN, "wf-done", "score", "s" * 64, [score], batched=False)
    assert "wf-done" in {wf.id for wf in await store.active_workflows(10)}  # score is left
    assert await store.finish_node("wf-done", "score", DIGEST_B) == (True, True)
    assert await store.fail_nodes("wf-fail", "embed", "boom", ["score"])
    cancelled = await store.cancel_workflow("wf-cancel", "acme")
    assert cancelled is not None
    assert cancelled.cancelled
    assert await store.active_workflows(10) == []


_TWO_NODES = Workflow.model_validate(
    {
        "nodes": {
            "embed": {"kind": "embed", "model": "hf:e", "inputs": {"texts": ["a"]}},
            "score": {"kind": "score", "model": "hf:s", "inputs": {"pairs": {"ref": "embed"}}},
        }
    }
)


async def test_the_autoscaler_reads_a_workflows_summary_never_its_spec(store: Store) -> None:
    # docs/autoscaling.md, "The next wave": a spec may be as big as a request body; each
    # poll reads only the summary stored beside it, which holds no input value
    texts = [f"text {i} " + "x" * 1000 for i in range(1000)]
    big = Workflow.model_validate(
        {
            "nodes": {
                "embed": {"kind": "embed", "model": "hf:e", "inputs": {"texts": texts}},
                "gen": {
                    "kind": "llm.generate",
                    "model": "hf:g",
                    "params": {"n": 3, "stop": texts[:50]},
                    "inputs": {"prompts": {"ref": "embed"}},
                },
            }
        }
    )
    spec = big.model_dump_json()
    await store.submit_workflow(
        "wf-big", "acme", "", spec, list(big.nodes), graph=GraphSummary.of(big)
    )
    (active,) = await store.active_workflows(10)
    summary = GraphSummary.from_json(active.graph)
    assert summary == GraphSummary.of(big)
    assert summary.nodes["gen"].numbers == {"n": 3}
    assert summary.nodes["gen"].refs == {"prompts": "embed"}
    assert len(active.graph) * 1000 < len(spec)
    # the spec gone (or unreadable), the poll sees the same: it never reads it
    await store.redis.hdel(store.keys.workflow("wf-big"), "spec")
    assert await store.active_workflows(10) == [active]


async def test_a_workflow_stored_without_a_summary_is_not_seen_ahead(store: Store) -> None:
    # as one stored before summaries were: the autoscaler never falls back to the spec
    await store.submit_workflow("wf-old", "acme", "", _TWO_NODES.model_dump_json(), ["embed"])
    assert await store.redis.hget(store.keys.workflow("wf-old"), "graph") is None
    assert await store.active_workflows(10) == []


async def test_a_workflow_cancelled_and_failed_at_once_leaves_the_index_once(
    clients: list[Store],
) -> None:
    first, second = clients[0], clients[1]
    for n in range(20):
        wf_id = f"wf{n}"
        await first.submit_workflow(wf_id, "acme", "", "{}", ["embed"])
        await asyncio.gather(
            first.cancel_workflow(wf_id, "acme"), second.fail_nodes(wf_id, "embed", "x", [])
        )
        state = await first.workflow(wf_id)
        assert state is not None
        assert state.status in ("cancelled", "failed")
    assert await first.active_workflows(100) == []
