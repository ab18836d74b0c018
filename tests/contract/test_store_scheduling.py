"""The scripts the scheduler relies on, on every backend (the real Redis and the embedded store).

claim_batch, requeue, complete, fail, finish_batch, the lease and join_many: what each
one promises on its own, and (STYLE habit 6) what it promises when raced against itself.
Every race here goes through several client connections at once where that matters, so
the interleaving is the server's, not the event loop's.
"""

from __future__ import annotations

import asyncio
import collections
import json
import time
import uuid

import pytest

from flowmesh_core.errors import ConflictError
from flowmesh_core.hashing import digest_bytes
from flowmesh_core.models import Item, ItemStatus, Requester, Satisfaction
from flowmesh_core.protocol import Assignment
from flowmesh_core.store import JoinOutcome, Store, Transition
from flowmesh_core.store.fleet import ASSIGNMENT_GROUP

DOMAIN = "global"
SIGNATURE = "a" * 64
OTHER_SIGNATURE = "b" * 64
DIGEST_A = digest_bytes(b"result a")
DIGEST_B = digest_bytes(b"result b")


def make_item(signature: str = SIGNATURE, text: str | None = None) -> Item:
    key = uuid.uuid4().hex * 2
    return Item(
        op_key=key,
        signature=signature,
        kind="embed",
        version="1",
        model={"name": "mini-lm"},
        params={"normalize": True},
        inputs={"texts": {"kind": "literal", "value": text if text is not None else key}},
        input_digests={},
    )


def requester(
    i: int, tenant: str = "acme", workflow: str | None = None, node: str = "embed"
) -> Requester:
    return Requester(tenant=tenant, workflow=workflow or f"wf{i}", node=node, index=i)


async def lease(store: Store) -> str:
    fence = await store.new_fence()
    assert await store.hold_lease(fence, ttl_s=30)
    return fence


async def enqueue(store: Store, n: int, tenant: str = "acme", **kw: str) -> list[Item]:
    """``n`` fresh items of one signature in the ready pool, created by ``tenant``."""
    items = [make_item(**kw) for _ in range(n)]
    wf = f"wf-{tenant}-{uuid.uuid4().hex[:8]}"
    results = await store.join_many(
        DOMAIN, [(requester(i, tenant, workflow=wf), it) for i, it in enumerate(items)]
    )
    assert {r.outcome for r in results} == {JoinOutcome.CREATED}
    return items


async def ready_members(store: Store, signature: str = SIGNATURE) -> list[str]:
    return [str(m) for m in await store.redis.zrange(store.keys.ready(signature), 0, -1)]


async def assignment_entries(store: Store, worker: str) -> list[dict[str, str]]:
    entries = await store.redis.xrange(store.keys.assignments(worker))
    return [dict(fields) for _, fields in entries]


async def inflight_of(store: Store, worker: str) -> int:
    return int(await store.redis.hget(store.keys.worker(worker), "inflight") or 0)


# -- claim_batch ------------------------------------------------------------------------


async def test_claim_takes_at_most_n_oldest_first_and_records_everything(store: Store) -> None:
    items = [make_item() for _ in range(5)]
    for i, item in enumerate(items):
        await store.join_or_create(DOMAIN, requester(i, workflow="wf-a"), item)
    joiner = requester(99, tenant="globex")
    await store.join_or_create(DOMAIN, joiner, items[0])
    fence = await lease(store)

    assert await store.claim_batch(SIGNATURE, 3, "w1", "batch-1", fence) == 3

    taken = {i.op_key for i in items[:3]}
    left = await ready_members(store)
    assert [m.rsplit("|", 1)[1] for m in left] == [i.op_key for i in items[3:]]
    for item in items[:3]:
        op = await store.op_state(DOMAIN, item.op_key)
        assert (op["status"], op["batch_id"], op["worker"], op["attempts"]) == (
            "running",
            "batch-1",
            "w1",
            "1",
        )
    for i, item in enumerate(items[3:], start=3):
        assert (await store.op_state(DOMAIN, item.op_key))["status"] == "pending"
        record = await store.lineage_of(requester(i, workflow="wf-a"))
        assert record is not None
        assert (record.status, record.batch_id) == (ItemStatus.PENDING, None)
    # Every waiter, the joiner from another tenant included, sees where its item runs.
    for req in [joiner, *(requester(i, workflow="wf-a") for i in range(3))]:
        record = await store.lineage_of(req)
        assert record is not None
        assert (record.status, record.batch_id, record.worker) == (
            ItemStatus.RUNNING,
            "batch-1",
            "w1",
        )
    joined = await store.lineage_of(joiner)
    assert joined is not None
    assert joined.satisfied_by is Satisfaction.JOINED

    entries = await assignment_entries(store, "w1")
    assert len(entries) == 1
    assignment = Assignment.from_stream(entries[0])
    assert assignment.batch_id == "batch-1"
    assert assignment.signature == SIGNATURE
    assert (assignment.kind, assignment.version) == ("embed", "1")
    assert assignment.model is not None
    assert assignment.model.name == "mini-lm"
    assert [a.op_key for a in assignment.items] == [i.op_key for i in items[:3]]
    assert {a.op_key for a in assignment.items} == taken
    assert all(a.domain == DOMAIN and a.attempt == 1 for a in assignment.items)
    assert [a.spec for a in assignment.items] == items[:3]
    assert await inflight_of(store, "w1") == 1
    batch = await store.batch_record("batch-1")
    assert (batch["worker"], batch["signature"], batch["size"]) == ("w1", SIGNATURE, "3")
    assert (await store.cluster_stats())["claimed"] == 3


async def test_claim_marks_every_waiters_lineage_running(store: Store) -> None:
    item = make_item()
    waiters = [requester(i, tenant=t) for i, t in enumerate(["acme", "globex", "initech"])]
    for req in waiters:
        await store.join_or_create(DOMAIN, req, item)
    assert await store.claim_batch(SIGNATURE, 10, "w7", "batch-7", await lease(store)) == 1
    for req in waiters:
        record = await store.lineage_of(req)
        assert record is not None
        assert (record.status, record.batch_id, record.worker) == (
            ItemStatus.RUNNING,
            "batch-7",
            "w7",
        )
        assert record.started_at is not None


async def test_claim_of_a_drained_signature_is_empty_and_forgets_the_signature(
    store: Store,
) -> None:
    await enqueue(store, 2)
    fence = await lease(store)
    assert await store.claim_batch(SIGNATURE, 2, "w1", "b1", fence) == 2
    assert await store.redis.zscore(store.keys.ready_signatures(), SIGNATURE) is None
    assert await store.claim_batch(SIGNATURE, 2, "w1", "b2", fence) == 0
    assert len(await assignment_entries(store, "w1")) == 1
    assert await inflight_of(store, "w1") == 1


@pytest.mark.parametrize("token", ["stale", "foreign"])
async def test_claim_with_a_token_that_does_not_hold_the_lease_changes_nothing(
    store: Store, token: str
) -> None:
    items = await enqueue(store, 4)
    current = await store.new_fence()
    if token == "stale":
        old = await store.new_fence()
        assert await store.hold_lease(old, ttl_s=0.05)
        await asyncio.sleep(0.15)  # the old holder's lease lapses...
        assert await store.hold_lease(current, ttl_s=30)  # ...and a new leader takes it
        fence = old
    else:
        assert await store.hold_lease(current, ttl_s=30)
        fence = await store.new_fence()  # a scheduler that never held it
    before = await ready_members(store)

    assert await store.claim_batch(SIGNATURE, 3, "w1", "batch-x", fence) == -1

    assert await ready_members(store) == before
    for item in items:
        assert (await store.op_state(DOMAIN, item.op_key))["status"] == "pending"
        assert (await store.op_state(DOMAIN, item.op_key))["attempts"] == "0"
    assert await assignment_entries(store, "w1") == []
    assert await store.batch_record("batch-x") == {}
    assert await inflight_of(store, "w1") == 0
    assert "claimed" not in await store.cluster_stats()
    # The holder still can.
    assert await store.claim_batch(SIGNATURE, 3, "w1", "batch-y", current) == 3


async def test_racing_claims_never_assign_an_op_twice(clients: list[Store]) -> None:
    store = clients[0]
    items = await enqueue(store, 50)
    fence = await lease(store)
    workers = [f"w{i % 4}" for i in range(20)]

    sizes = await asyncio.gather(
        *(
            clients[i % len(clients)].claim_batch(SIGNATURE, 3, workers[i], f"batch-{i}", fence)
            for i in range(20)
        )
    )

    assert sum(sizes) == 50
    assigned: list[str] = []
    for worker in sorted(set(workers)):
        for entry in await assignment_entries(store, worker):
            assigned += [a.op_key for a in Assignment.from_stream(entry).items]
    assert len(assigned) == len(set(assigned)) == 50
    assert set(assigned) == {i.op_key for i in items}
    batches = sum(1 for s in sizes if s > 0)
    assert sum([await inflight_of(store, w) for w in set(workers)]) == batches
    assert await ready_members(store) == []
    for item in items:
        assert (await store.op_state(DOMAIN, item.op_key))["attempts"] == "1"


async def test_fair_queuing_interleaves_a_small_tenant_with_a_large_backlog(
    store: Store,
) -> None:
    big = await enqueue(store, 200, tenant="acme")
    small = await enqueue(store, 5, tenant="globex")
    fence = await lease(store)

    order: list[str] = []
    for n in range(21):
        if await store.claim_batch(SIGNATURE, 10, "w1", f"b{n}", fence) <= 0:
            break
    for entry in await assignment_entries(store, "w1"):
        order += [a.op_key for a in Assignment.from_stream(entry).items]

    assert len(order) == 205
    small_keys = {i.op_key for i in small}
    positions = [n for n, key in enumerate(order) if key in small_keys]
    assert positions[-1] < 10, f"globex's items were claimed at {positions}, not interleaved"
    # acme's own items keep their submission order among themselves.
    assert [k for k in order if k not in small_keys] == [i.op_key for i in big]


async def test_fair_queuing_interleaves_a_newcomer_that_arrives_while_nothing_is_served(
    store: Store,
) -> None:
    # Nothing of acme's backlog has been served when globex arrives half a second later:
    # start-time fair queuing must still put globex's items among the first ones. With
    # start tags taken from the wall clock (max(now, clock)) they land behind every acme
    # item whose tag is older than globex's arrival: 0.5 s / 10 ms = 50 of them here,
    # and behind thousands when a backlog of 10,000 waits a minute for a slow fleet.
    await enqueue(store, 200, tenant="acme")
    await asyncio.sleep(0.5)
    small = await enqueue(store, 5, tenant="globex")
    keys = [m.rsplit("|", 1)[1] for m in await ready_members(store)]
    positions = sorted(keys.index(i.op_key) for i in small)
    assert positions[-1] < 10, f"globex's first items queue behind {positions[0]} of acme's"


async def test_virtual_clock_makes_a_returning_tenant_queue_behind_itself(store: Store) -> None:
    first = await enqueue(store, 30, tenant="acme")
    again = await enqueue(store, 3, tenant="acme")
    other = await enqueue(store, 3, tenant="globex")
    members = await ready_members(store)
    keys = [m.rsplit("|", 1)[1] for m in members]
    # acme's second burst starts where its clock stands (after its first burst); globex's
    # items start at their arrival and overtake acme's second burst.
    assert keys.index(again[0].op_key) > keys.index(first[-1].op_key)
    assert max(keys.index(i.op_key) for i in other) < keys.index(again[0].op_key)


# -- requeue ----------------------------------------------------------------------------


async def test_requeue_puts_an_op_back_ahead_of_work_that_arrived_after_it(store: Store) -> None:
    # Both tenants have backlogs, so their next items start at their clocks, not now:
    # acme's at T, globex's 22 microseconds later. acme's item is first in line; after
    # it is claimed and handed back it must be first again.
    t = int(time.time()) + 100.123456789
    await store.redis.hset(
        store.keys.vclock(), mapping={"acme": repr(t), "globex": repr(t + 2.2e-5)}
    )
    (mine,) = await enqueue(store, 1, tenant="acme")
    (theirs,) = await enqueue(store, 1, tenant="globex")
    before = [m.rsplit("|", 1)[1] for m in await ready_members(store)]
    assert before == [mine.op_key, theirs.op_key]
    fence = await lease(store)
    assert await store.claim_batch(SIGNATURE, 1, "w1", "b1", fence) == 1

    assert await store.requeue(DOMAIN, mine.op_key, "w1")

    after = [m.rsplit("|", 1)[1] for m in await ready_members(store)]
    assert after == before, "the requeued op came back behind work that arrived after it"


async def test_requeue_restores_the_original_fair_queue_position(store: Store) -> None:
    items = await enqueue(store, 4)
    original = await store.redis.zrange(store.keys.ready(SIGNATURE), 0, -1, withscores=True)
    fence = await lease(store)
    assert await store.claim_batch(SIGNATURE, 2, "w1", "b1", fence) == 2

    assert await store.requeue(DOMAIN, items[1].op_key, "w1")
    assert await store.requeue(DOMAIN, items[0].op_key, "w1")

    restored = await store.redis.zrange(store.keys.ready(SIGNATURE), 0, -1, withscores=True)
    assert restored == original
    op = await store.op_state(DOMAIN, items[0].op_key)
    assert op["status"] == "pending"
    assert "worker" not in op
    assert "batch_id" not in op
    assert op["attempts"] == "1"
    # The next claim takes them first again.
    assert await store.claim_batch(SIGNATURE, 2, "w2", "b2", fence) == 2
    second = Assignment.from_stream((await assignment_entries(store, "w2"))[0])
    assert [a.op_key for a in second.items] == [items[0].op_key, items[1].op_key]
    assert [a.attempt for a in second.items] == [2, 2]


async def test_requeue_only_displaces_the_worker_that_holds_the_op(store: Store) -> None:
    (item,) = await enqueue(store, 1)
    req = requester(0, tenant="globex")
    await store.join_or_create(DOMAIN, req, item)
    assert not await store.requeue(DOMAIN, item.op_key, "w1")  # pending: nobody holds it
    assert await store.claim_batch(SIGNATURE, 1, "w1", "b1", await lease(store)) == 1

    assert not await store.requeue(DOMAIN, item.op_key, "w2")

    op = await store.op_state(DOMAIN, item.op_key)
    assert (op["status"], op["worker"]) == ("running", "w1")
    assert await ready_members(store) == []
    record = await store.lineage_of(req)
    assert record is not None
    assert (record.status, record.worker) == (ItemStatus.RUNNING, "w1")
    await store.complete(DOMAIN, item.op_key, DIGEST_A, worker="w1")
    assert not await store.requeue(DOMAIN, item.op_key, "w1")  # done: nothing to give back
    assert await ready_members(store) == []


async def test_racing_requeues_put_an_op_back_once(clients: list[Store]) -> None:
    store = clients[0]
    (item,) = await enqueue(store, 1)
    await store.claim_batch(SIGNATURE, 1, "w1", "b1", await lease(store))
    done = await asyncio.gather(
        *(clients[i % 5].requeue(DOMAIN, item.op_key, "w1") for i in range(10))
    )
    assert sum(done) == 1
    assert len(await ready_members(store)) == 1
    assert await store.redis.zscore(store.keys.ready_signatures(), SIGNATURE) is not None


# -- complete and fail ------------------------------------------------------------------


async def node_with_items(store: Store, items: list[Item], wf: str = "wf-n") -> str:
    """A node of ``len(items)`` items (one requester per item) whose ops are all pending."""
    assert await store.submit_workflow(wf, "acme", "", "{}", ["embed"]) is None
    start = await store.start_node("acme", DOMAIN, wf, "embed", "c" * 64, items, batched=True)
    assert start.started
    return store.keys.node(wf, "embed")


async def announced(store: Store, event: Transition) -> list[tuple[str, str]]:
    """(workflow, node) of each outbox entry of kind ``event``, oldest first."""
    entries = await store.redis.xrange(store.keys.outbox())
    return [(f["workflow"], f["node"]) for _, f in entries if f["event"] == event]


async def remaining(store: Store, node_key: str) -> int:
    return int(await store.redis.hget(node_key, "remaining"))


async def test_complete_counts_a_node_down_and_lists_it_once_at_zero(store: Store) -> None:
    items = [make_item() for _ in range(3)]
    node = await node_with_items(store, items)
    assert (await store.complete(DOMAIN, items[0].op_key, DIGEST_A)).finished_nodes == 0
    assert await remaining(store, node) == 2
    assert (await store.complete(DOMAIN, items[1].op_key, DIGEST_A)).finished_nodes == 0
    assert await announced(store, Transition.NODE_ITEMS_DONE) == []
    last = await store.complete(DOMAIN, items[2].op_key, DIGEST_B)
    assert last.finished_nodes == 1
    assert await remaining(store, node) == 0
    assert await announced(store, Transition.NODE_ITEMS_DONE) == [("wf-n", "embed")]


async def test_complete_of_an_op_asked_twice_by_one_node_counts_both(store: Store) -> None:
    item = make_item()
    await store.submit_workflow("wf-d", "acme", "", "{}", ["embed"])
    start = await store.start_node(
        "acme", DOMAIN, "wf-d", "embed", "c" * 64, [item, item], batched=True
    )
    assert (start.created, start.joined) == (1, 1)
    done = await store.complete(DOMAIN, item.op_key, DIGEST_A)
    assert done.finished_nodes == 1
    assert await remaining(store, store.keys.node("wf-d", "embed")) == 0


async def test_racing_completes_of_the_last_op_list_the_node_once(clients: list[Store]) -> None:
    store = clients[0]
    items = [make_item() for _ in range(2)]
    node = await node_with_items(store, items)
    await store.claim_batch(SIGNATURE, 2, "w1", "b1", await lease(store))
    await store.complete(DOMAIN, items[0].op_key, DIGEST_A)

    results = await asyncio.gather(
        *(
            clients[i % 5].complete(DOMAIN, items[1].op_key, DIGEST_A if i % 2 else DIGEST_B)
            for i in range(10)
        )
    )

    assert sum(r.finished_nodes for r in results) == 1
    assert await announced(store, Transition.NODE_ITEMS_DONE) == [("wf-n", "embed")]
    assert sum(not r.duplicate for r in results) == 1
    assert await remaining(store, node) == 0
    assert (await store.cluster_stats())["executed"] == 2
    assert await store.inflight() == []


async def test_racing_fails_list_a_node_once(clients: list[Store]) -> None:
    store = clients[0]
    items = [make_item() for _ in range(3)]
    node = await node_with_items(store, items)
    await store.claim_batch(SIGNATURE, 3, "w1", "b1", await lease(store))

    # Every item of the node fails, each reported several times, all at once.
    failed = await asyncio.gather(
        *(clients[i % 5].fail(DOMAIN, items[i % 3].op_key, f"boom {i % 3}") for i in range(12))
    )

    assert sum(failed) == 1
    assert await announced(store, Transition.NODE_ITEM_FAILED) == [("wf-n", "embed")]
    assert (await store.cluster_stats())["failed"] == 3
    for i in range(3):
        record = await store.lineage_of(requester(i, workflow="wf-n"))
        assert record is not None
        assert (record.status, record.error) == (ItemStatus.FAILED, f"boom {i}")
    assert await store.inflight() == []
    assert await remaining(store, node) == 3  # failure never counts a node down


async def test_fail_of_a_pending_op_takes_it_out_of_the_ready_pool(store: Store) -> None:
    items = await enqueue(store, 2)
    await store.fail(DOMAIN, items[0].op_key, "bad input")
    assert [store.keys.parse_ready_member(m)[2] for m in await ready_members(store)] == [
        items[1].op_key
    ]
    assert await store.claim_batch(SIGNATURE, 5, "w1", "b1", await lease(store)) == 1


async def test_claim_skips_an_op_that_completed_while_it_waited(store: Store) -> None:
    items = await enqueue(store, 3)
    await store.complete(DOMAIN, items[1].op_key, DIGEST_A)  # a late duplicate from elsewhere
    assert await store.claim_batch(SIGNATURE, 3, "w1", "b1", await lease(store)) == 2
    (entry,) = await assignment_entries(store, "w1")
    assert [a.op_key for a in Assignment.from_stream(entry).items] == [
        items[0].op_key,
        items[2].op_key,
    ]


# -- finish_batch -----------------------------------------------------------------------


async def test_racing_finish_batch_counts_a_batch_once(clients: list[Store]) -> None:
    store = clients[0]
    await enqueue(store, 4)
    await store.claim_batch(SIGNATURE, 4, "w1", "b1", await lease(store))
    assert await inflight_of(store, "w1") == 1

    counted = await asyncio.gather(
        *(clients[i % 5].finish_batch("b1", "w1", 4, 2.0, 0.5, 3.0) for i in range(10))
    )

    assert sum(counted) == 1
    stats = await store.cluster_stats()
    assert (stats["batches"], stats["batched_items"]) == (1, 4)
    assert (stats["worker_seconds"], stats["cost_usd"], stats["energy_wh"]) == (2.0, 0.5, 3.0)
    assert await inflight_of(store, "w1") == 0
    assert await store.batch_record("b1") == {}


async def test_finish_batch_never_drives_inflight_negative(store: Store) -> None:
    await enqueue(store, 1)
    await store.claim_batch(SIGNATURE, 1, "w1", "b1", await lease(store))
    await store.redis.hset(store.keys.worker("w1"), "inflight", 0)  # e.g. re-registered
    assert await store.finish_batch("b1", "w1", 1, 1.0, 0.0, 0.0)
    assert await inflight_of(store, "w1") == 0


# -- the scheduler lease ----------------------------------------------------------------


async def test_lease_is_held_by_one_token_until_its_ttl_passes(store: Store) -> None:
    a, b = await store.new_fence(), await store.new_fence()
    assert a != b
    assert await store.hold_lease(a, ttl_s=0.3)
    assert not await store.hold_lease(b, ttl_s=0.3)
    assert await store.hold_lease(a, ttl_s=0.3)  # renewing is holding
    await store.release_lease(b)  # not b's to release
    assert not await store.hold_lease(b, ttl_s=0.3)
    await asyncio.sleep(0.45)
    assert await store.hold_lease(b, ttl_s=0.3)
    assert not await store.hold_lease(a, ttl_s=0.3)


async def test_a_contender_learns_when_the_holders_lease_lapses(store: Store) -> None:
    a, b = await store.new_fence(), await store.new_fence()
    assert await store.contend_lease(a, ttl_s=30) is None  # held
    left = await store.contend_lease(b, ttl_s=30)
    assert left is not None
    assert 29 < left <= 30
    assert await store.contend_lease(a, ttl_s=0.2) is None  # renewed, shorter
    left = await store.contend_lease(b, ttl_s=30)
    assert left is not None
    assert 0 <= left <= 0.2
    await asyncio.sleep(left + 0.05)
    assert await store.contend_lease(b, ttl_s=30) is None  # lapsed: b takes it


async def test_released_lease_passes_at_once(store: Store) -> None:
    a, b = await store.new_fence(), await store.new_fence()
    assert await store.hold_lease(a, ttl_s=30)
    await store.release_lease(a)
    assert await store.hold_lease(b, ttl_s=30)
    assert not await store.hold_lease(a, ttl_s=30)


async def test_racing_for_the_lease_one_token_wins(clients: list[Store]) -> None:
    tokens = [await clients[0].new_fence() for _ in range(10)]
    won = await asyncio.gather(
        *(clients[i % 5].hold_lease(t, ttl_s=30) for i, t in enumerate(tokens))
    )
    assert sum(won) == 1
    holder = tokens[won.index(True)]
    assert await clients[0].redis.get(clients[0].keys.scheduler_lease()) == holder


# -- join_many --------------------------------------------------------------------------


async def test_join_many_with_1000_requests_answers_each_in_order(store: Store) -> None:
    items = [make_item() for _ in range(400)]
    for i, item in enumerate(items[:100]):  # these hit the action cache
        await store.join_or_create(DOMAIN, requester(i, workflow="warm"), item)
        await store.complete(DOMAIN, item.op_key, DIGEST_A)
    # 1,000 requests: each of the 400 items once (100 hits, 300 creations), then
    # 300 of them again (joins) and 300 more of the cached ones or the new ones.
    order = [*range(400), *range(100, 400), *(i % 400 for i in range(300))]
    requests = [
        (Requester(tenant="acme", workflow="big", node="embed", index=n), items[i])
        for n, i in enumerate(order)
    ]
    assert len(requests) == 1000
    started = time.monotonic()

    results = await store.join_many(DOMAIN, requests)

    assert len(results) == 1000
    seen: set[int] = set()
    for n, (i, result) in enumerate(zip(order, results, strict=True)):
        if i < 100:
            expected = JoinOutcome.CACHE_HIT
        elif i in seen:
            expected = JoinOutcome.JOINED
        else:
            expected = JoinOutcome.CREATED
        seen.add(i)
        assert result.outcome is expected, f"request {n} (item {i})"
        assert result.digest == (DIGEST_A if i < 100 else None)
    counts = collections.Counter(r.outcome for r in results)
    assert counts[JoinOutcome.CREATED] == 300
    lineage = await store.lineage("big")
    assert [r.op_key for r in sorted(lineage, key=lambda r: r.index)] == [
        items[i].op_key for i in order
    ]
    assert time.monotonic() - started < 10


async def test_join_many_stores_the_signature_meaning_for_assignments(store: Store) -> None:
    await enqueue(store, 1, signature=OTHER_SIGNATURE)
    info = await store.signature_info(OTHER_SIGNATURE)
    assert info == {"kind": "embed", "version": "1", "model": {"name": "mini-lm"}}
    assert await store.claim_batch(OTHER_SIGNATURE, 1, "w1", "b1", await lease(store)) == 1
    (entry,) = await assignment_entries(store, "w1")
    assert json.loads(entry["meta"]) == info


async def test_assignment_stream_is_read_through_the_worker_group(store: Store) -> None:
    await enqueue(store, 2)
    await store.create_group(store.keys.assignments("w1"), ASSIGNMENT_GROUP)
    await store.claim_batch(SIGNATURE, 2, "w1", "b1", await lease(store))
    reply = await store.redis.xreadgroup(
        ASSIGNMENT_GROUP, "w1", {store.keys.assignments("w1"): ">"}, count=10
    )
    ((_, entries),) = reply
    assert len(entries) == 1
    assert len(Assignment.from_stream(entries[0][1]).items) == 2


async def test_racing_workflow_creations_with_one_id_store_one(clients: list[Store]) -> None:
    store = clients[0]
    outcomes = await asyncio.gather(
        *(
            clients[i % 5].submit_workflow("wf-race", f"t{i}", f"n{i}", "{}", ["a", "b"])
            for i in range(10)
        ),
        return_exceptions=True,
    )
    assert sum(o is None for o in outcomes) == 1
    assert all(isinstance(o, ConflictError) for o in outcomes if o is not None)
    winner = outcomes.index(None)
    state = await store.workflow("wf-race")
    assert state is not None
    assert (state.tenant, state.name) == (f"t{winner}", f"n{winner}")
    owners = [i for i in range(10) if await store.tenant_workflows(f"t{i}")]
    assert owners == [winner]


async def test_a_running_op_whose_requesters_all_cancelled_is_not_requeued(store: Store) -> None:
    """A cancelled workflow's running item finishes for nobody; if its worker dies it is
    dropped instead of being planned again (requeue.lua)."""
    await store.submit_workflow("wf", "acme", "", "{}", ["embed"], domain=DOMAIN)
    item = make_item()
    await store.start_node("acme", DOMAIN, "wf", "embed", item.op_key, [item], batched=False)
    assert await store.claim_batch(SIGNATURE, 1, "w1", "b1", await lease(store)) == 1
    cancelled = await store.cancel_workflow("wf", "acme")
    assert cancelled is not None
    assert (cancelled.cancelled, cancelled.dropped, cancelled.shared) == (True, 1, 0)
    assert (await store.op_state(DOMAIN, item.op_key))["status"] == "running"
    assert not await store.requeue(DOMAIN, item.op_key, "w1")
    assert await store.op_state(DOMAIN, item.op_key) == {}
    assert await store.inflight() == []
    assert await ready_members(store) == []
    assert await store.in_flight("acme") == 0
