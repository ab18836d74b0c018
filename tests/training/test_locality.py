"""The locality of checkpoints (docs/architecture.md, "Data locality"), on every backend.

A worker reports the checkpoints it keeps on disk in its heartbeat; a worker stores the
size of a checkpoint's files when it stores the tree. A round of the scheduler then sends
a batch whose model is that checkpoint to a worker that holds it, since any other would
fetch its files first; and without a holder the tie goes where it always did.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path

import pytest

from flowmesh_core.hashing import digest_bytes
from flowmesh_core.models import Item
from flowmesh_core.store import Store
from flowmesh_worker.weights.checkpoints import HELD_REPORTED, checkpoint_dir, held
from tests.contract.test_store_scheduling import DOMAIN, assignment_entries, requester
from tests.integration.test_scheduler_round import register, scheduler

pytestmark = pytest.mark.timeout(30)

CHECKPOINT = digest_bytes(b'{"checkpoint": "C"}')
FILES = [digest_bytes(b"config"), digest_bytes(b"weights")]
CHECKPOINT_BYTES = 50_000_000


def generate_with(model: str, signature: str) -> Item:
    key = uuid.uuid4().hex * 2
    return Item(
        op_key=key,
        signature=signature,
        kind="llm.generate",
        version="1",
        model={"digest": model},
        params={"max_new_tokens": 4},
        inputs={"prompts": {"kind": "literal", "value": key}},
        input_digests={},
    )


async def enqueue_on(store: Store, model: str, signature: str, n: int = 3) -> None:
    pairs = [(requester(i, workflow="wf-loc"), generate_with(model, signature)) for i in range(n)]
    await store.join_many(DOMAIN, pairs)


async def test_a_batch_on_a_checkpoint_goes_to_the_worker_that_holds_it(
    store: Store, tmp_path: Path
) -> None:
    await register(store, 2)  # w0 and w1: the same hardware, nothing warm
    await store.record_checkpoint(CHECKPOINT, 200, FILES, CHECKPOINT_BYTES)
    assert await store.heartbeat("w1", held=[CHECKPOINT])
    await enqueue_on(store, CHECKPOINT, "c" * 64)

    view = await store.round_view(8, time.time(), 60.0)
    assert {r.profile.worker_id: r.held for r in view.workers} == {"w0": [], "w1": [CHECKPOINT]}
    assert view.tree_bytes == {"c" * 64: CHECKPOINT_BYTES}

    s = await scheduler(store, tmp_path)
    assert await s.round() == 3
    assert await assignment_entries(store, "w0") == []
    (entry,) = await assignment_entries(store, "w1")
    assert entry["signature"] == "c" * 64
    # The batch log says why: the checkpoint's bytes, all of them on the chosen worker.
    batch = await store.batch_record(entry["batch_id"])
    assert batch["worker"] == "w1"
    terms = json.loads(await store.redis.hget(store.keys.batch_log(entry["batch_id"]), "terms"))
    assert (terms["input_bytes"], terms["input_local"]) == (CHECKPOINT_BYTES, 1.0)


async def test_without_a_holder_the_tie_goes_to_the_first_worker(
    store: Store, tmp_path: Path
) -> None:
    # The control for the test above: the same fleet, the checkpoint on nobody's disk.
    await register(store, 2)
    await store.record_checkpoint(CHECKPOINT, 200, FILES, CHECKPOINT_BYTES)
    await enqueue_on(store, CHECKPOINT, "c" * 64)

    s = await scheduler(store, tmp_path)
    assert await s.round() == 3
    assert len(await assignment_entries(store, "w0")) == 1
    assert await assignment_entries(store, "w1") == []


def test_a_worker_reports_its_most_recently_used_checkpoints_only(tmp_path: Path) -> None:
    digests = [digest_bytes(str(i).encode()) for i in range(HELD_REPORTED + 3)]
    for age, digest in enumerate(reversed(digests)):  # digests[0] is the most recent
        folder = checkpoint_dir(digest, tmp_path)
        folder.mkdir()
        os.utime(folder, (1000.0 + age, 1000.0 + age))
    (tmp_path / "tiny-gpt").mkdir()  # a named model: not a checkpoint
    (tmp_path / ".fetch-ckpt-x").mkdir()  # a download in progress: not held yet
    assert held(tmp_path) == digests[:HELD_REPORTED]
    assert held(tmp_path / "absent") == []


async def test_a_checkpoint_of_unknown_size_weighs_nothing(store: Store, tmp_path: Path) -> None:
    # A tree no worker stored (uploaded by a tenant) has no indexed size: no term at all.
    other = digest_bytes(b"uploaded tree")
    await register(store, 2)
    assert await store.heartbeat("w1", held=[other])
    await enqueue_on(store, other, "d" * 64)
    view = await store.round_view(8, time.time(), 60.0)
    assert view.tree_bytes == {}
    s = await scheduler(store, tmp_path)
    assert await s.round() == 3
    assert len(await assignment_entries(store, "w0")) == 1
