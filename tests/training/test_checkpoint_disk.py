"""The disk budget of a worker's kept checkpoints (docs/training.md, "Checkpoints on a
worker's disk"): least recently used out first, never one in use, and the heartbeat's
``held`` list names only what is still whole on the disk."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from flowmesh_core.blobs import open_blob_store
from flowmesh_core.hashing import digest_bytes
from flowmesh_core.models import ModelRef
from flowmesh_worker.executors import ItemError, create_executor
from flowmesh_worker.runner import BatchRunner
from flowmesh_worker.weights import TINY_GPT, WarmCache, resolve_model
from flowmesh_worker.weights.checkpoints import checkpoint_dir, held, on_disk
from flowmesh_worker.weights.disk import CheckpointDisk
from tests.training.test_checkpoints import FAST, assignment, train

KIB = 1024


def kept(model_dir: Path, n: int, size: int) -> list[str]:
    """``n`` checkpoint directories of ``size`` bytes each, oldest first."""
    digests = []
    for i in range(n):
        digest = digest_bytes(f"checkpoint {i}".encode())
        folder = checkpoint_dir(digest, model_dir)
        (folder / "sub").mkdir(parents=True)
        (folder / "config.json").write_bytes(b"{" + b" " * (size // 2 - 2) + b"}")
        (folder / "sub" / "model.safetensors").write_bytes(os.urandom(size - size // 2))
        os.utime(folder, (1000.0 + i, 1000.0 + i))
        digests.append(digest)
    return digests


def test_the_least_recently_used_go_until_the_rest_fit(tmp_path: Path) -> None:
    digests = kept(tmp_path, 4, 10 * KIB)
    os.utime(checkpoint_dir(digests[0], tmp_path))  # used just now: the most recent
    disk = CheckpointDisk(tmp_path, 25 * KIB)
    assert disk.nbytes == 40 * KIB
    assert disk.settle() == [digests[1], digests[2]]
    assert disk.nbytes == 20 * KIB
    assert held(tmp_path) == [digests[0], digests[3]]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        checkpoint_dir(d, tmp_path).name for d in (digests[0], digests[3])
    )  # nothing left half-deleted or renamed aside
    assert disk.settle() == []


def test_a_checkpoint_in_use_stays_even_over_the_budget(tmp_path: Path) -> None:
    digests = kept(tmp_path, 3, 10 * KIB)
    disk = CheckpointDisk(tmp_path, 0)
    with disk.using(digests[0]), disk.using(digests[0]):
        assert disk.settle() == digests[1:]
        assert held(tmp_path) == [digests[0]]
    with disk.using(digests[0]):  # still pinned by one user
        assert disk.settle() == []
    assert disk.settle() == [digests[0]]
    assert held(tmp_path) == []


def test_concurrent_settles_remove_each_checkpoint_once(tmp_path: Path) -> None:
    digests = kept(tmp_path, 20, 4 * KIB)
    disk = CheckpointDisk(tmp_path, 20 * KIB)
    removed: list[str] = []
    start = threading.Barrier(8)

    def settle() -> None:
        start.wait()
        removed.extend(disk.settle())

    threads = [threading.Thread(target=settle) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(removed) == sorted(digests[:15])
    assert held(tmp_path) == digests[15:][::-1]


@pytest.mark.timeout(240)  # imports torch and trains, like tests/training/test_checkpoints.py
def test_a_batch_keeps_its_checkpoint_while_it_runs_and_the_budget_applies_after(
    tmp_path: Path, model_dir: Path
) -> None:
    blobs = open_blob_store(f"file://{tmp_path / 'blobs'}")
    digest = train(blobs, model_dir, "train.sft", TINY_GPT, FAST)
    worker_dir = tmp_path / "worker"
    disk = CheckpointDisk(worker_dir, 0)  # keep nothing past its batch
    run = BatchRunner(
        blobs, create_executor, WarmCache(1 << 30), worker_dir, "w-2", checkpoint_disk=disk
    )
    seen: list[tuple[list[str], list[str]]] = []

    def meanwhile(domain: str, op_key: str, progress: Any) -> None:
        seen.append((disk.settle(), held(worker_dir)))  # another batch ending, mid-run

    run.progress_sink = meanwhile
    params = {"max_new_tokens": 2}
    executed = run.execute(assignment("llm.generate", digest, params, {"prompts": ["q 1 :"]}))
    assert not [o for o in executed.outcomes if isinstance(o, ItemError)], executed.outcomes
    assert seen  # the batch's model was fetched and loaded, then settled around
    assert all(evicted == [] and now == [digest] for evicted, now in seen), seen
    run.store(executed)
    assert held(worker_dir) == []
    assert not checkpoint_dir(digest, worker_dir).exists()

    # a checkpoint it trains is kept only while it fits: with 0, not past its batch
    trained = BatchRunner(
        blobs, create_executor, WarmCache(1 << 30), worker_dir, "w-2", checkpoint_disk=disk
    )
    executed = trained.execute(
        assignment(
            "train.sft",
            TINY_GPT,
            {**FAST, "seed": 2},
            {"dataset": [{"prompt": "a", "completion": " b"}] * 4},
        )
    )
    (result,) = trained.store(executed).results
    assert result.error is None, result.error
    assert result.digest is not None
    assert held(worker_dir) == []
    assert not checkpoint_dir(result.digest, worker_dir).exists()


# PEFT reads a property this transformers release renamed; the warning is theirs.
@pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing.*:FutureWarning")
@pytest.mark.timeout(240)
def test_a_lora_on_a_checkpoint_holds_its_base_while_it_is_merged(
    tmp_path: Path, model_dir: Path
) -> None:
    blobs = open_blob_store(f"file://{tmp_path / 'blobs'}")
    base = train(blobs, model_dir, "train.sft", TINY_GPT, FAST)
    lora = train(blobs, model_dir, "train.lora", base, {**FAST, "lora_r": 8})
    worker_dir = tmp_path / "worker"
    disk = CheckpointDisk(worker_dir, 0)
    pinned: list[str | None] = []

    @contextmanager
    def pin(digest: str | None) -> Iterator[None]:
        with disk.using(digest):
            pinned.append(digest)
            yield
            pinned.append(f"{digest} merged: {disk.settle()} {held(worker_dir)}")

    merged = resolve_model(ModelRef(digest=lora), model_dir=worker_dir, blobs=blobs, pin=pin)
    # the base was fetched and merged under the pin: a settle meanwhile (0 budget) kept it
    assert pinned == [base, f"{base} merged: [] {[base]}"]
    assert merged == checkpoint_dir(lora, worker_dir)
    assert sorted(disk.settle()) == sorted([base, lora])  # unpinned, 0 budget: none kept
    assert held(worker_dir) == []


def test_a_new_worker_sweeps_what_a_killed_one_left(tmp_path: Path) -> None:
    """A worker killed mid-eviction leaves an ``.evicted-*`` directory, one killed
    mid-fetch a ``.fetch-*`` one: the next worker on the disk removes both (a fetch only
    once it is an hour old: another worker on the same disk may be fetching now)."""
    (kept_dir,) = kept(tmp_path, 1, 2 * KIB)
    evicted = tmp_path / ".evicted-abc" / "ckpt"
    stale = tmp_path / ".fetch-ckpt-x-1"
    fresh = tmp_path / ".fetch-ckpt-y-2"
    for folder in (evicted, stale, fresh):
        folder.mkdir(parents=True)
        (folder / "model.safetensors").write_bytes(os.urandom(KIB))
    os.utime(stale, (1000.0, 1000.0))

    CheckpointDisk(tmp_path, 0)

    assert not evicted.parent.exists()
    assert not stale.exists()
    assert fresh.exists()
    assert [d for d, _ in on_disk(tmp_path)] == [kept_dir]  # kept until a settle
