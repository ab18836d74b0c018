"""The worker's local input-blob cache (flowmesh_worker.blob_cache), over a real file CAS.

The source is a real ``FileBlobStore`` whose reads are counted, so each test can tell a
local hit from a fetch. The cache verifies every read of a local copy: a copy whose bytes
were changed on disk is dropped and fetched again, never returned.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import pytest

from flowmesh_core.hashing import digest_bytes
from flowmesh_worker.blob_cache import BLOBS_REPORTED, MIN_CACHED_BYTES, BlobCache
from tests.worker.test_inputs import CountingStore

pytestmark = pytest.mark.timeout(30)

KIB = 1 << 10


def big(tag: str, size: int = 100 * KIB) -> bytes:
    """``size`` bytes of a JSON string, distinct per ``tag``."""
    return b'"' + tag.encode() + b"x" * (size - len(tag) - 2) + b'"'


@pytest.fixture
def source(tmp_path: Path) -> CountingStore:
    return CountingStore(tmp_path / "cas")


def put(source: CountingStore, data: bytes) -> str:
    return source.store.put_bytes(data).digest


def test_a_big_blob_is_fetched_once_then_read_locally(
    source: CountingStore, tmp_path: Path
) -> None:
    cache = BlobCache(tmp_path / "cache", 1 << 20)
    data = big("a")
    digest = put(source, data)
    reader = cache.over(source.store)
    assert reader.get_bytes(digest) == data
    assert reader.get_bytes(digest) == data
    assert source.reads == [digest]
    assert cache.held() == [digest]
    assert cache.nbytes == len(data)


def test_a_small_blob_is_not_kept(source: CountingStore, tmp_path: Path) -> None:
    cache = BlobCache(tmp_path / "cache", 1 << 20)
    small = b'"' + b"s" * (MIN_CACHED_BYTES - 3) + b'"'
    digest = put(source, small)
    for _ in range(2):
        assert cache.get_bytes(digest, source.store) == small
    assert source.reads == [digest, digest]
    assert cache.held() == []


def test_eviction_keeps_the_cache_under_its_byte_bound(
    source: CountingStore, tmp_path: Path
) -> None:
    budget = 350 * KIB  # three 100 KiB blobs fit, a fourth does not
    cache = BlobCache(tmp_path / "cache", budget)
    digests = [put(source, big(tag)) for tag in "abcd"]
    for digest in digests[:3]:
        cache.get_bytes(digest, source.store)
    cache.get_bytes(digests[0], source.store)  # a is now the most recently used
    cache.get_bytes(digests[3], source.store)  # d pushes out the least recent: b
    assert cache.held() == [digests[3], digests[0], digests[2]]
    assert cache.nbytes <= budget
    on_disk = [p for p in (tmp_path / "cache").glob("*/*") if p.parent.name != "tmp"]
    assert sum(p.stat().st_size for p in on_disk) <= budget
    assert len(on_disk) == 3
    source.reads.clear()
    cache.get_bytes(digests[1], source.store)
    assert source.reads == [digests[1]]


def test_a_blob_bigger_than_the_whole_cache_is_not_kept(
    source: CountingStore, tmp_path: Path
) -> None:
    cache = BlobCache(tmp_path / "cache", 150 * KIB)
    kept, too_big = put(source, big("k")), put(source, big("t", 200 * KIB))
    cache.get_bytes(kept, source.store)
    cache.get_bytes(too_big, source.store)
    assert cache.held() == [kept]


def test_a_corrupted_cached_copy_is_detected_and_fetched_again(
    source: CountingStore, tmp_path: Path
) -> None:
    cache = BlobCache(tmp_path / "cache", 1 << 20)
    data = big("c")
    digest = put(source, data)
    cache.get_bytes(digest, source.store)
    (copy,) = (p for p in (tmp_path / "cache").glob("*/*") if p.parent.name != "tmp")
    os.chmod(copy, 0o644)
    copy.write_bytes(data[:-2] + b'!"')  # same size, other bytes
    assert cache.get_bytes(digest, source.store) == data
    assert source.reads == [digest, digest]
    assert copy.read_bytes() == data  # refilled with the verified bytes
    assert cache.held() == [digest]


def test_a_copy_deleted_behind_the_caches_back_is_fetched_again(
    source: CountingStore, tmp_path: Path
) -> None:
    cache = BlobCache(tmp_path / "cache", 1 << 20)
    digest = put(source, big("g"))
    cache.get_bytes(digest, source.store)
    for path in (tmp_path / "cache").glob("*/*"):
        path.unlink()
    assert cache.get_bytes(digest, source.store) == big("g")
    assert source.reads == [digest, digest]


def test_zero_disables_the_cache(source: CountingStore, tmp_path: Path) -> None:
    cache = BlobCache(tmp_path / "cache", 0)
    digest = put(source, big("z"))
    assert cache.over(source.store) is source.store
    for _ in range(2):
        assert cache.get_bytes(digest, source.store) == big("z")
    assert source.reads == [digest, digest]
    assert cache.held() == []
    assert not (tmp_path / "cache").exists()


def test_a_restarted_worker_finds_its_copies_in_their_use_order(
    source: CountingStore, tmp_path: Path
) -> None:
    first = BlobCache(tmp_path / "cache", 1 << 20)
    digests = [put(source, big(tag)) for tag in "pqr"]
    for i, digest in enumerate(digests):
        first.get_bytes(digest, source.store)
        stamp = 1_700_000_000 + i
        os.utime(first._store.path_of(digest), (stamp, stamp))  # distinct mtimes
    stale = tmp_path / "cache" / "tmp" / "crashed.part"
    stale.write_bytes(b"half a blob")
    os.utime(stale, (1_700_000_000, 1_700_000_000))
    again = BlobCache(tmp_path / "cache", 250 * KIB)  # a smaller budget: p goes
    assert again.held() == [digests[2], digests[1]]
    assert not stale.exists()
    source.reads.clear()
    assert again.get_bytes(digests[1], source.store) == big("q")
    assert source.reads == []


def test_concurrent_readers_get_verified_bytes_and_the_bound_holds(
    source: CountingStore, tmp_path: Path
) -> None:
    budget = 300 * KIB
    cache = BlobCache(tmp_path / "cache", budget)
    blobs = {put(source, big(tag)): big(tag) for tag in "abcdefgh"}
    errors: list[Any] = []

    def read(offset: int) -> None:
        try:
            for i in range(40):
                digest = list(blobs)[(i + offset) % len(blobs)]
                assert cache.get_bytes(digest, source.store) == blobs[digest]
        except Exception as exc:  # reported below, with the thread's failure
            errors.append(exc)

    threads = [threading.Thread(target=read, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert cache.nbytes <= budget
    on_disk = [p for p in (tmp_path / "cache").glob("*/*") if p.parent.name != "tmp"]
    assert sum(p.stat().st_size for p in on_disk) <= budget
    assert {digest_bytes(p.read_bytes()) for p in on_disk} == set(cache.held())


def test_the_heartbeat_reports_at_most_the_most_recent_blobs(
    source: CountingStore, tmp_path: Path
) -> None:
    cache = BlobCache(tmp_path / "cache", 1 << 30, min_bytes=1)
    digests = [put(source, f'"{i}"'.encode()) for i in range(BLOBS_REPORTED + 3)]
    for digest in digests:
        cache.get_bytes(digest, source.store)
    assert cache.held() == digests[::-1][:BLOBS_REPORTED]
