"""The locality of input blobs (docs/architecture.md, "Data locality"), on real Redis.

Creating an item records, per batch signature, the indexed bytes of the blobs it reads;
a worker reports the input blobs in its local cache in its heartbeat. A scheduling round
then sets the candidate's mean bytes per item and each worker's local fraction from the
two, so a batch whose items read a big blob goes to the worker that holds it rather than
to an equal worker that would fetch it first. The last test runs a real worker: it reads
a tenant's uploaded blob once and reports it.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from flowmesh_core.client import python_operator
from flowmesh_core.control import NodeState
from flowmesh_core.control.scheduler import _candidate, holders
from flowmesh_core.hashing import digest_bytes
from flowmesh_core.models import Item
from flowmesh_core.store import Store
from flowmesh_core.store.fleet import SignatureInputs
from tests.contract.test_store_scheduling import DOMAIN, assignment_entries, requester
from tests.integration.conftest import Fabric
from tests.integration.test_scheduler_round import register, scheduler
from tests.worker import ops
from tests.worker.conftest import Workers

pytestmark = pytest.mark.timeout(30)

BIG = digest_bytes(b"a big uploaded dataset")
BIG_BYTES = 20_000_000
SIGNATURE = "b" * 64


def reading(digest: str) -> Item:
    """A python item whose input ``rows`` is the blob ``digest``."""
    key = uuid.uuid4().hex * 2
    return Item(
        op_key=key,
        signature=SIGNATURE,
        kind="python",
        version="1",
        params={"function": "m:f"},
        inputs={
            "rows": {"kind": "blob", "digest": digest},
            "tag": {"kind": "literal", "value": key},
        },
        input_digests={"rows": digest},
    )


async def enqueue(store: Store, digest: str, n: int = 3, workflow: str = "wf-in") -> None:
    pairs = [(requester(i, workflow=workflow), reading(digest)) for i in range(n)]
    await store.join_many(DOMAIN, pairs)


async def test_a_batch_reading_a_big_blob_goes_to_the_worker_that_holds_it(
    store: Store, tmp_path: Path
) -> None:
    await register(store, 2)  # w0 and w1: the same hardware, nothing warm
    await store.record_blob(BIG, BIG_BYTES, "application/json")
    assert await store.heartbeat("w1", held=[BIG])
    await enqueue(store, BIG)

    view = await store.round_view(8, time.time(), 60.0)
    assert view.inputs == {SIGNATURE: SignatureInputs(3, 3 * BIG_BYTES, {BIG: 3 * BIG_BYTES})}

    s = await scheduler(store, tmp_path)
    assert await s.round() == 3
    assert await assignment_entries(store, "w0") == []
    (entry,) = await assignment_entries(store, "w1")
    terms = json.loads(await store.redis.hget(store.keys.batch_log(entry["batch_id"]), "terms"))
    assert (terms["input_bytes"], terms["input_local"]) == (3 * BIG_BYTES, 1.0)
    # The pool emptied: the figures start afresh with the next items of the signature.
    assert await store.redis.hget(store.keys.signature_meta(SIGNATURE), "input_items") is None
    assert not await store.redis.exists(store.keys.signature_inputs(SIGNATURE))


async def test_without_a_holder_the_tie_goes_to_the_first_worker(
    store: Store, tmp_path: Path
) -> None:
    # The control for the test above: the same fleet and items, the blob on nobody's disk.
    await register(store, 2)
    await store.record_blob(BIG, BIG_BYTES, "application/json")
    assert await store.heartbeat("w1", held=[digest_bytes(b"something else")])
    await enqueue(store, BIG)
    s = await scheduler(store, tmp_path)
    assert await s.round() == 3
    assert len(await assignment_entries(store, "w0")) == 1
    assert await assignment_entries(store, "w1") == []


async def test_the_local_fraction_is_the_share_of_bytes_held(store: Store, tmp_path: Path) -> None:
    small = digest_bytes(b"a smaller blob")
    await register(store, 2)
    await store.record_blob(BIG, 3_000, "application/json")
    await store.record_blob(small, 1_000, "application/json")
    assert await store.heartbeat("w0", held=[small])
    assert await store.heartbeat("w1", held=[BIG])
    await enqueue(store, BIG, n=1)
    await enqueue(store, small, n=1, workflow="wf-other")
    view = await store.round_view(8, time.time(), 60.0)
    sig, count, members = view.pool[0]
    candidate = _candidate(
        sig, count, members, view.meaning, time.time(), 0, holders(view.workers), view.inputs[sig]
    )
    assert candidate.input_bytes_per_item == 2_000
    assert candidate.local_fraction == {"w0": 0.25, "w1": 0.75}


async def test_a_blob_of_unknown_size_weighs_nothing(store: Store, tmp_path: Path) -> None:
    # A blob the index does not know (no upload or completion recorded it): no term at all.
    unknown = digest_bytes(b"a result nobody indexed")
    await register(store, 2)
    assert await store.heartbeat("w1", held=[unknown])
    await enqueue(store, unknown)
    view = await store.round_view(8, time.time(), 60.0)
    assert view.inputs == {}
    s = await scheduler(store, tmp_path)
    assert await s.round() == 3
    assert len(await assignment_entries(store, "w0")) == 1


async def test_a_stored_result_is_indexed_with_its_size_for_the_items_reading_it(
    store: Store,
) -> None:
    first, second, small = (reading(BIG) for _ in range(3))
    result, tiny = digest_bytes(b"a stored result"), digest_bytes(b"{}")
    pairs = [
        (requester(i, workflow="wf-up"), item) for i, item in enumerate([first, second, small])
    ]
    await store.join_many(DOMAIN, pairs)
    await store.complete(DOMAIN, first.op_key, result, size=300_000)
    await store.complete(DOMAIN, second.op_key, result, size=1)  # the first record stays
    await store.complete(DOMAIN, small.op_key, tiny, inline=b"{}", size=2)  # inline: not
    assert await store.redis.hget(store.keys.blob(result), "size") == "300000"
    assert not await store.redis.exists(store.keys.blob(tiny))

    await enqueue(store, result, n=2, workflow="wf-down")
    view = await store.round_view(8, time.time(), 60.0)
    # The three upstream items were never claimed here: they still count as items.
    assert view.inputs[SIGNATURE] == SignatureInputs(5, 600_000, {result: 600_000.0})


@pytest.fixture
async def own_workers(fabric: Fabric, tmp_path: Path) -> AsyncIterator[Workers]:
    """Workers with a model directory (and so an input-blob cache) of this test's own."""
    pool = Workers(fabric, tmp_path / "models")
    try:
        yield pool
    finally:
        await pool.aclose()


async def test_a_worker_that_read_a_big_blob_once_reports_it(
    fabric: Fabric, own_workers: Workers
) -> None:
    rows = json.dumps([f"row {i}" for i in range(20_000)]).encode()  # ~200 KB
    plane = await fabric.plane()
    tenant = await fabric.tenant("team-a")
    digest = digest_bytes(rows)

    async def body() -> AsyncIterator[bytes]:
        yield rows

    await plane.blob_access.upload(tenant, digest, body(), length=len(rows))
    worker = await own_workers.start("w-cache", ttl_s=1.5)
    submitted = await plane.submit_operator(
        tenant, python_operator(ops.echo, {"x": {"blob": digest}})
    )
    status = await plane.wait(tenant, submitted.workflow_id, 20)
    assert status.state is NodeState.DONE, status
    # It keeps its own big result too, indexed with its size for the items that read it.
    result = status.nodes[0].result_digest
    assert result is not None
    assert result != digest
    size = await plane.store.redis.hget(plane.store.keys.blob(result), "size")
    assert size is not None
    assert int(size) == plane.blobs.stat(result).size > 64 << 10
    assert worker.runner.blob_cache is not None
    assert set(worker.runner.blob_cache.held()) == {digest, result}

    for _ in range(50):  # the next heartbeat (every 0.5 s) carries it
        (record,) = [r for r in await plane.store.workers() if r.profile.worker_id == "w-cache"]
        if digest in record.held:
            break
        await asyncio.sleep(0.1)
    assert digest in record.held


async def test_a_signature_that_never_drains_keeps_its_figures_bounded_and_recent(
    store: Store,
) -> None:
    """The figures of a signature whose ready pool never empties (so never forgets them)
    stay bounded: at most 256 blobs, the largest by bytes read, and every figure halves
    once 4,096 items are counted, so newer items weigh more than older ones."""
    digests = [digest_bytes(f"blob {i}".encode()) for i in range(300)]
    for i, digest in enumerate(digests):
        await store.record_blob(digest, 1_000 + i, "application/json")
    pairs = [(requester(i, workflow="wf-many"), reading(d)) for i, d in enumerate(digests)]
    await store.join_many(DOMAIN, pairs)
    inputs = store.keys.signature_inputs(SIGNATURE)
    assert await store.redis.zcard(inputs) == 256
    kept = {str(d) for d in await store.redis.zrange(inputs, 0, -1)}
    assert kept == set(digests[-256:])  # the largest stay

    meta = store.keys.signature_meta(SIGNATURE)
    small = digest_bytes(b"a small blob")
    await store.record_blob(small, 10, "application/json")
    many = [(requester(i, workflow="wf-more"), reading(small)) for i in range(4_095 - 300)]
    await store.join_many(DOMAIN, many)
    before = int(await store.redis.hget(meta, "input_bytes"))
    await store.join_many(DOMAIN, [(requester(0, workflow="wf-last"), reading(small))])
    items, total = await store.redis.hmget(meta, "input_items", "input_bytes")
    assert int(items) == 2_048  # the 4,096th item halved the count
    assert int(total) == before // 2 + 10  # and the bytes, then added its own
