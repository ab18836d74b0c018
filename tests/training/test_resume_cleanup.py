"""A training run's resume point lives exactly as long as its op is in flight
(docs/training.md, "Surviving a lost worker"), on every backend: the step that completes
or finally fails the op deletes it, and a late write from a worker still training a run
that is over writes nothing."""

from __future__ import annotations

import asyncio

import pytest

from flowmesh_core.store import Store
from tests.contract.test_store_scheduling import (
    DIGEST_A,
    DOMAIN,
    SIGNATURE,
    enqueue,
    lease,
    make_item,
)

pytestmark = pytest.mark.timeout(30)

POINT = {"digest": DIGEST_A, "step": 50}
WEEK_S = 7 * 24 * 3600.0


async def test_completing_the_op_drops_its_resume_point(store: Store) -> None:
    (item,) = await enqueue(store, 1)
    assert await store.set_resume_point(DOMAIN, item.op_key, POINT, WEEK_S)
    assert await store.resume_point(DOMAIN, item.op_key) == POINT

    await store.complete(DOMAIN, item.op_key, DIGEST_A)

    assert await store.resume_point(DOMAIN, item.op_key) is None
    # A worker that still trains the finished run records nothing.
    assert not await store.set_resume_point(DOMAIN, item.op_key, POINT, WEEK_S)
    assert await store.resume_point(DOMAIN, item.op_key) is None


async def test_failing_the_op_finally_drops_its_resume_point(store: Store) -> None:
    (item,) = await enqueue(store, 1)
    assert await store.set_resume_point(DOMAIN, item.op_key, POINT, WEEK_S)

    await store.fail(DOMAIN, item.op_key, "out of attempts")

    assert await store.resume_point(DOMAIN, item.op_key) is None
    assert not await store.set_resume_point(DOMAIN, item.op_key, POINT, WEEK_S)


@pytest.mark.parametrize("running", [False, True])
async def test_cancelling_the_only_requester_drops_its_resume_point(
    store: Store, running: bool
) -> None:
    # Pending (an earlier attempt's worker died): the cancel forgets it. Running: it
    # finishes for nobody, and if its worker dies the requeue drops it.
    await store.submit_workflow("wf", "acme", "", "{}", ["train"], domain=DOMAIN)
    item = make_item()
    await store.start_node("acme", DOMAIN, "wf", "train", item.op_key, [item], batched=False)
    assert await store.claim_batch(SIGNATURE, 1, "w1", "b1", await lease(store)) == 1
    assert await store.set_resume_point(DOMAIN, item.op_key, POINT, WEEK_S)
    if not running:
        assert await store.requeue(DOMAIN, item.op_key, "w1")
    assert await store.cancel_workflow("wf", "acme") is not None
    if running:
        assert await store.resume_point(DOMAIN, item.op_key) == POINT  # it may still finish
        assert not await store.requeue(DOMAIN, item.op_key, "w1")
    assert await store.resume_point(DOMAIN, item.op_key) is None
    assert not await store.set_resume_point(DOMAIN, item.op_key, POINT, WEEK_S)


async def test_an_unknown_op_gets_no_resume_point(store: Store) -> None:
    assert not await store.set_resume_point(DOMAIN, "f" * 64, POINT, WEEK_S)
    assert await store.resume_point(DOMAIN, "f" * 64) is None


async def test_a_resume_write_raced_against_completion_never_outlives_it(store: Store) -> None:
    # STYLE habit 6: whichever lands first, no resume point is left once the op is done.
    items = await enqueue(store, 20)
    for item in items:
        await asyncio.gather(
            store.set_resume_point(DOMAIN, item.op_key, POINT, WEEK_S),
            store.complete(DOMAIN, item.op_key, DIGEST_A),
        )
    left = [await store.resume_point(DOMAIN, i.op_key) for i in items]
    assert left == [None] * len(items)
