"""The scheduler's round view and fair-share usage, on every backend.

``round_view`` must say exactly what ``workers``, ``ready_summary`` and ``signature_info``
say, in one round trip; usage charged by ``complete`` must decay with the half-life, add
up in any order, and (STYLE habit 6) lose no charge when completes race.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from flowmesh_core.models import Item, WorkerProfile
from flowmesh_core.store import Store
from flowmesh_core.store.fleet import WorkerRecord
from tests.contract.test_store_scheduling import (
    DIGEST_A,
    DOMAIN,
    OTHER_SIGNATURE,
    SIGNATURE,
    enqueue,
    lease,
    make_item,
    requester,
)

HALF_LIFE = 10.0


def profile(worker_id: str, **kw: Any) -> WorkerProfile:
    return WorkerProfile(
        worker_id=worker_id, accelerator="cpu", memory_bytes=0, price_per_hour=1.0, watts=50.0, **kw
    )


def as_tuple(record: WorkerRecord) -> tuple[Any, ...]:
    return (record.profile, record.heartbeat, record.warm, record.inflight, record.draining)


async def complete_at(store: Store, item: Item, seconds: float, at: float) -> None:
    """``complete`` with worker-seconds, finished at ``at`` (ARGV 4 of complete.lua)."""
    name, keys, args = store.complete_call(
        DOMAIN, item.op_key, DIGEST_A, worker_seconds=seconds, half_life_s=HALF_LIFE
    )
    args = list(args)
    args[3] = repr(at)
    await store.run_script(name, keys, args)


async def usage_at(store: Store, now: float) -> dict[str, float]:
    return (await store.round_view(1, now, HALF_LIFE)).usage


# -- the view -----------------------------------------------------------------------------


async def test_round_view_says_what_the_separate_reads_say(store: Store) -> None:
    await store.register_worker(profile("w-idle", max_batch=4))
    await store.register_worker(profile("w-busy", slots=2))
    await store.register_worker(profile("w-cordoned"))
    await store.heartbeat("w-busy", warm=["mini-lm", "bge"])
    await store.set_draining("w-cordoned")
    await store.redis.zadd(store.keys.workers(), {"w-without-record": time.time()})
    await enqueue(store, 5, tenant="acme")
    await enqueue(store, 3, tenant="globex")
    await enqueue(store, 2, tenant="initech", signature=OTHER_SIGNATURE)
    assert await store.claim_batch(SIGNATURE, 1, "w-busy", "batch-1", await lease(store)) == 1

    view = await store.round_view(4, time.time(), HALF_LIFE)

    assert [as_tuple(r) for r in view.workers] == [as_tuple(r) for r in await store.workers()]
    assert {r.profile.worker_id for r in view.workers} == {"w-idle", "w-busy", "w-cordoned"}
    assert view.pool == await store.ready_summary(4)
    assert sorted((sig, n, len(ms)) for sig, n, ms in view.pool) == [
        (SIGNATURE, 7, 4),
        (OTHER_SIGNATURE, 2, 2),
    ]
    assert view.meaning == {
        SIGNATURE: await store.signature_info(SIGNATURE),
        OTHER_SIGNATURE: await store.signature_info(OTHER_SIGNATURE),
    }
    assert view.meaning[SIGNATURE]["kind"] == "embed"
    assert view.usage == {}


async def test_round_view_of_an_empty_installation_is_empty(store: Store) -> None:
    view = await store.round_view(256, time.time(), HALF_LIFE)
    assert (view.workers, view.pool, view.meaning, view.usage) == ([], [], {}, {})


async def test_round_view_leaves_out_a_signature_whose_items_all_left(store: Store) -> None:
    await enqueue(store, 2)
    await enqueue(store, 1, signature=OTHER_SIGNATURE)
    assert await store.claim_batch(OTHER_SIGNATURE, 5, "w1", "batch-1", await lease(store)) == 1
    view = await store.round_view(8, time.time(), HALF_LIFE)
    assert [(sig, n) for sig, n, _ in view.pool] == [(SIGNATURE, 2)]
    assert view.pool == await store.ready_summary(8)


# -- fair-share usage ---------------------------------------------------------------------


async def test_usage_halves_after_each_half_life(store: Store) -> None:
    (item,) = await enqueue(store, 1, tenant="acme")
    t = time.time()
    await complete_at(store, item, 8.0, t)

    assert await usage_at(store, t) == {"acme": 8.0}
    assert await usage_at(store, t + HALF_LIFE) == pytest.approx({"acme": 4.0})
    assert await usage_at(store, t + 2 * HALF_LIFE) == pytest.approx({"acme": 2.0})
    # A reader whose clock is behind the charge's sees it whole, never more.
    assert await usage_at(store, t - HALF_LIFE) == {"acme": 8.0}
    # The lifetime counter is not decayed.
    assert (await store.tenant_stats("acme"))["worker_seconds"] == 8.0


@pytest.mark.parametrize("order", ["in order", "out of order"])
async def test_charges_decay_from_their_own_time_and_add_up_in_any_order(
    store: Store, order: str
) -> None:
    first, second = await enqueue(store, 2, tenant="acme")
    t = time.time()
    charges = [(first, t), (second, t + HALF_LIFE)]
    if order == "out of order":
        charges.reverse()
    for item, at in charges:
        await complete_at(store, item, 4.0, at)

    assert await usage_at(store, t + HALF_LIFE) == pytest.approx({"acme": 4.0 / 2 + 4.0})
    assert await usage_at(store, t + 2 * HALF_LIFE) == pytest.approx({"acme": 1.0 + 2.0})


async def test_an_op_shared_by_two_tenants_charges_each_as_if_alone(store: Store) -> None:
    # No charge depends on who else asked (docs/isolation.md).
    item = make_item()
    await store.join_or_create(DOMAIN, requester(0, tenant="acme"), item)
    await store.join_or_create(DOMAIN, requester(1, tenant="globex"), item)
    t = time.time()
    await complete_at(store, item, 8.0, t)
    assert await usage_at(store, t) == {"acme": 8.0, "globex": 8.0}


async def test_a_complete_without_worker_seconds_charges_nothing(store: Store) -> None:
    (item,) = await enqueue(store, 1, tenant="acme")
    await store.complete(DOMAIN, item.op_key, DIGEST_A)
    assert await usage_at(store, time.time()) == {}


async def test_racing_completes_charge_every_share_once(clients: list[Store]) -> None:
    store = clients[0]
    items = await enqueue(store, 40, tenant="acme")
    t = time.time()
    await asyncio.gather(
        *(complete_at(clients[i % 5], item, 0.5, t) for i, item in enumerate(items)),
        *(complete_at(clients[i % 5], item, 0.5, t) for i, item in enumerate(items)),
    )
    # 40 ops of 0.5 s each, all finished at t; the duplicates charged nothing.
    assert await usage_at(store, t) == pytest.approx({"acme": 20.0})
