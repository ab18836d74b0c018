"""The store contract: every test runs on the real Redis and on the embedded store."""

from __future__ import annotations

import asyncio
import collections
import uuid

import pytest
from flowmesh_core.errors import ConflictError, StoreUnavailableError
from flowmesh_core.hashing import digest_bytes
from flowmesh_core.models import ItemStatus, Requester, Satisfaction
from flowmesh_core.store import JoinOutcome, Store

DOMAIN = "global"
DIGEST_A = digest_bytes(b"result a")
DIGEST_B = digest_bytes(b"result b")


def op_key() -> str:
    return uuid.uuid4().hex * 2


def requester(i: int = 0, tenant: str = "acme", node: str = "embed") -> Requester:
    return Requester(tenant=tenant, workflow=f"wf{i}", node=node, index=i)


async def test_first_request_creates_then_others_join_then_cache_hits(store: Store) -> None:
    key = op_key()
    first = await store.join_or_create(DOMAIN, key, requester(0), '{"spec": 1}')
    second = await store.join_or_create(DOMAIN, key, requester(1, tenant="globex"), "{}")
    assert (first.outcome, first.status) == (JoinOutcome.CREATED, ItemStatus.PENDING)
    assert (second.outcome, second.status) == (JoinOutcome.JOINED, ItemStatus.PENDING)
    assert (await store.op_state(DOMAIN, key))["spec"] == '{"spec": 1}'

    done = await store.complete(DOMAIN, key, DIGEST_A)
    assert not done.duplicate
    assert len(done.released) == 2

    third = await store.join_or_create(DOMAIN, key, requester(2), "{}")
    assert third.outcome is JoinOutcome.CACHE_HIT
    assert third.digest == DIGEST_A
    assert await store.cached(DOMAIN, key) == DIGEST_A
    assert await store.op_state(DOMAIN, key) == {}


async def test_race_50_concurrent_requests_make_one_creator(
    store_url: str, key_prefix: str
) -> None:
    # Ten separate clients (connection pools) issue 50 requests at once.
    stores = [Store.open(store_url, key_prefix) for _ in range(10)]
    key = op_key()
    try:
        results = await asyncio.gather(
            *(
                stores[i % 10].join_or_create(DOMAIN, key, requester(i, tenant=f"t{i % 3}"), "{}")
                for i in range(50)
            )
        )
        outcomes = collections.Counter(r.outcome for r in results)
        assert outcomes == {JoinOutcome.CREATED: 1, JoinOutcome.JOINED: 49}

        done = await stores[0].complete(DOMAIN, key, DIGEST_A)
        assert len(done.released) == 50
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
    key = op_key()
    await store.join_or_create(DOMAIN, key, requester(0), "{}")
    results = await asyncio.gather(
        *(store.complete(DOMAIN, key, DIGEST_A if i % 2 else DIGEST_B) for i in range(20))
    )
    assert sum(not r.duplicate for r in results) == 1
    assert len({r.digest for r in results}) == 1
    assert sum(len(r.released) for r in results) == 1
    assert (await store.cluster_stats())["executed"] == 1


async def test_repeat_request_is_idempotent_and_conflict_is_an_error(store: Store) -> None:
    key = op_key()
    await store.join_or_create(DOMAIN, key, requester(0), "{}")
    again = await store.join_or_create(DOMAIN, key, requester(0), "{}")
    assert again.outcome is JoinOutcome.EXISTING
    assert (await store.tenant_stats("acme"))["requested"] == 1
    with pytest.raises(ConflictError, match="already asked for op"):
        await store.join_or_create(DOMAIN, op_key(), requester(0), "{}")
    done = await store.complete(DOMAIN, key, DIGEST_A)
    assert done.released == (store.keys.lineage("wf0", "embed", 0),)


async def test_late_duplicate_finish_changes_nothing(store: Store) -> None:
    key = op_key()
    await store.join_or_create(DOMAIN, key, requester(0), "{}")
    first = await store.complete(DOMAIN, key, DIGEST_A, worker="w1")
    late = await store.complete(DOMAIN, key, DIGEST_B, worker="w2")
    assert (first.duplicate, late.duplicate) == (False, True)
    assert late.digest == DIGEST_A
    assert late.released == ()
    record = await store.lineage_of(requester(0))
    assert record is not None
    assert (record.result_digest, record.worker) == (DIGEST_A, "w1")


async def test_claim_requeue_and_attempts(store: Store) -> None:
    key = op_key()
    await store.join_or_create(DOMAIN, key, requester(0), "{}")
    await store.join_or_create(DOMAIN, key, requester(1), "{}")
    assert await store.claim(DOMAIN, key, "batch-1", "w1") == 1
    assert await store.claim(DOMAIN, key, "batch-2", "w2") == 0
    joined_late = await store.join_or_create(DOMAIN, key, requester(2), "{}")
    assert joined_late.status is ItemStatus.RUNNING
    record = await store.lineage_of(requester(1))
    assert record is not None
    assert (record.status, record.worker, record.batch_id) == (ItemStatus.RUNNING, "w1", "batch-1")

    assert not await store.requeue(DOMAIN, key, "w2")  # not w2's to give back
    assert await store.requeue(DOMAIN, key, "w1")
    record = await store.lineage_of(requester(1))
    assert record is not None
    assert (record.status, record.worker) == (ItemStatus.PENDING, None)
    assert await store.claim(DOMAIN, key, "batch-3", "w2") == 2


async def test_fail_marks_every_waiter_and_allows_a_retry(store: Store) -> None:
    key = op_key()
    for i in range(3):
        await store.join_or_create(DOMAIN, key, requester(i), "{}")
    failed = await store.fail(DOMAIN, key, "CUDA out of memory")
    assert len(failed) == 3
    record = await store.lineage_of(requester(2))
    assert record is not None
    assert (record.status, record.error) == (ItemStatus.FAILED, "CUDA out of memory")
    assert await store.cached(DOMAIN, key) is None
    assert await store.inflight() == []
    retry = await store.join_or_create(DOMAIN, key, requester(9), "{}")
    assert retry.outcome is JoinOutcome.CREATED
    assert (await store.cluster_stats())["failed"] == 1


async def test_failure_after_completion_is_ignored(store: Store) -> None:
    key = op_key()
    await store.join_or_create(DOMAIN, key, requester(0), "{}")
    await store.complete(DOMAIN, key, DIGEST_A)
    assert await store.fail(DOMAIN, key, "late error") == ()
    record = await store.lineage_of(requester(0))
    assert record is not None
    assert record.status is ItemStatus.DONE


async def test_inflight_index_tracks_pending_and_running_ops(store: Store) -> None:
    keys = [op_key() for _ in range(3)]
    for i, key in enumerate(keys):
        await store.join_or_create(DOMAIN, key, requester(i), "{}")
    await store.claim(DOMAIN, keys[1], "b", "w")
    assert await store.inflight() == [(DOMAIN, k) for k in keys]
    await store.complete(DOMAIN, keys[1], DIGEST_A)
    assert await store.inflight() == [(DOMAIN, keys[0]), (DOMAIN, keys[2])]


async def test_domains_do_not_share(store: Store) -> None:
    key = op_key()
    a = await store.join_or_create("tenant:a", key, requester(0, tenant="a"), "{}")
    b = await store.join_or_create("tenant:b", key, requester(1, tenant="b"), "{}")
    assert (a.outcome, b.outcome) == (JoinOutcome.CREATED, JoinOutcome.CREATED)
    await store.complete("tenant:a", key, DIGEST_A)
    assert await store.cached("tenant:b", key) is None
    assert await store.cached_many("tenant:a", [key, op_key()]) == [DIGEST_A, None]


async def test_cost_and_energy_are_split_across_requesters(store: Store) -> None:
    key = op_key()
    for i in range(4):
        await store.join_or_create(DOMAIN, key, requester(i), "{}")
    await store.claim(DOMAIN, key, "b1", "w1")
    await store.complete(DOMAIN, key, DIGEST_A, cost_usd=2.0, energy_wh=10.0, started_at=5.0)
    record = await store.lineage_of(requester(3))
    assert record is not None
    assert (record.cost_usd, record.energy_wh, record.started_at) == (0.5, 2.5, 5.0)


async def test_workflow_records_and_lineage_order(store: Store) -> None:
    await store.create_workflow("wf0", "acme", "demo", '{"nodes": {}}', ["embed", "score"])
    with pytest.raises(ConflictError):
        await store.create_workflow("wf0", "acme", "again", "{}", ["x"])
    state = await store.workflow("wf0")
    assert state is not None
    assert (state.tenant, state.name, state.nodes) == (
        "acme",
        "demo",
        {"embed": "pending", "score": "pending"},
    )
    await store.set_node_status("wf0", "embed", "done")
    state = await store.workflow("wf0")
    assert state is not None
    assert state.nodes["embed"] == "done"
    assert await store.workflow("nope") is None
    assert await store.tenant_workflows("acme") == ["wf0"]

    keys = [op_key() for _ in range(3)]
    for i, key in enumerate(keys):
        await store.join_or_create(
            DOMAIN, key, Requester(tenant="acme", workflow="wf0", node="embed", index=i), "{}"
        )
    lineage = await store.lineage("wf0")
    assert [r.op_key for r in lineage] == keys
    assert [r.index for r in lineage] == [0, 1, 2]


async def test_blob_index(store: Store) -> None:
    await store.record_blob(DIGEST_A, 8, "application/json", holder="w1")
    first = await store.blob(DIGEST_A)
    await store.record_blob(DIGEST_A, 8, "application/json", holder="w2")
    second = await store.blob(DIGEST_A)
    assert first is not None
    assert second is not None
    assert second.holders == {"w1", "w2"}
    assert second.created_at == first.created_at
    assert (second.size, second.media_type) == (8, "application/json")
    assert await store.blob(DIGEST_B) is None


async def test_tenant_stats_count_each_way_of_satisfying(store: Store) -> None:
    key = op_key()
    await store.join_or_create(DOMAIN, key, requester(0), "{}")
    await store.join_or_create(DOMAIN, key, requester(1), "{}")
    await store.complete(DOMAIN, key, DIGEST_A)
    await store.join_or_create(DOMAIN, key, requester(2), "{}")
    assert await store.tenant_stats("acme") == {
        "requested": 3,
        "created": 1,
        "joins": 1,
        "cache_hits": 1,
    }


async def test_capabilities_and_purge_stay_in_their_prefix(store: Store) -> None:
    await store.check_capabilities()
    neighbour = store.scratch("neighbour")
    await neighbour.join_or_create(DOMAIN, op_key(), requester(0), "{}")
    await store.join_or_create(DOMAIN, op_key(), requester(1), "{}")
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
