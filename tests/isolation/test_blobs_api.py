"""Blobs through the API: ``PUT``/``HEAD``/``GET /v1/blobs/{digest}`` with an owner.

The rules (docs/isolation.md, "Who may read a digest"): an upload is verified against
the digest it names and makes the caller an owner; a tenant reads or computes on a blob
only if it uploaded it or its lineage holds it; another tenant's blob answers exactly
like a digest that does not exist. A rejected upload leaves no bytes and no key.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tracemalloc
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from flowmesh_core.client import AsyncClient
from flowmesh_core.errors import InvalidDigestError, NotFoundError
from tests.integration.api_harness import BASE_URL, Harness, sha256_digest

MIB = 1 << 20


@pytest.fixture
def store_url(redis_url: str) -> str:
    """The shared ``harness`` on the real Redis only (the store suites cover both stores)."""
    return redis_url


def _embed(digest: str) -> dict[str, object]:
    return {"kind": "embed", "model": "mini", "inputs": {"texts": {"blob": digest}}}


def _answer(response: httpx.Response, digest: str) -> tuple[int, str]:
    """What a tenant sees of an answer, with the digest it asked about blanked out."""
    return response.status_code, response.text.replace(digest, "D")


async def _two_tenants(
    harness: Harness, *, run_scheduler: bool = True
) -> tuple[httpx.AsyncClient, httpx.AsyncClient]:
    """Tenants A and B on one app (without the scheduler's loops, whose keys come and go,
    for tests that compare the keys before and after)."""
    app = await harness.app(run_scheduler=run_scheduler)
    a = await harness.client(app, await harness.tenant("team-a"))
    b = await harness.client(app, await harness.tenant("team-b"))
    return a, b


async def test_an_upload_round_trips_and_a_second_one_says_it_was_yours(
    harness: Harness,
) -> None:
    a, _ = await _two_tenants(harness)
    data = os.urandom(300_000)
    digest = sha256_digest(data)

    put = await a.put(f"/v1/blobs/{digest}", content=data)
    assert put.status_code == 201, put.text
    assert put.json() == {"digest": digest, "size": len(data)}
    head = await a.head(f"/v1/blobs/{digest}")
    assert head.status_code == 200
    assert head.headers["content-length"] == str(len(data))
    got = await a.get(f"/v1/blobs/{digest}")
    assert got.status_code == 200, got.text
    assert got.content == data
    assert got.headers["etag"] == f'"{digest}"'
    again = await a.put(f"/v1/blobs/{digest}", content=data)
    assert again.status_code == 200, again.text
    assert await harness.store.blob_owners(digest) == {"team-a"}
    record = await harness.store.blob(digest)
    assert record is not None
    assert record.size == len(data)


async def test_bytes_that_do_not_hash_to_the_digest_leave_nothing(harness: Harness) -> None:
    a, _ = await _two_tenants(harness, run_scheduler=False)
    claimed = sha256_digest(b"what the caller says it sends")
    before = await harness.keys()

    put = await a.put(f"/v1/blobs/{claimed}", content=b"what it really sends")
    assert put.status_code == 400, put.text
    error = put.json()["error"]
    assert error["type"] == "DigestMismatchError"
    assert claimed in error["message"]
    assert "nothing was stored" in error["message"]
    assert not harness.blobs.exists(claimed)
    assert not harness.blobs.exists(sha256_digest(b"what it really sends"))
    assert await harness.keys() == before
    assert (await a.head(f"/v1/blobs/{claimed}")).status_code == 404
    assert _files(Path(harness.blob_url.removeprefix("file://"))) == []  # nor a temp file


def _files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


async def test_a_malformed_digest_is_a_400_that_says_what_a_digest_is(harness: Harness) -> None:
    a, _ = await _two_tenants(harness)
    for method in ("PUT", "HEAD", "GET"):
        response = await a.request(method, "/v1/blobs/sha256:XYZ", content=b"x")
        assert response.status_code == 400, (method, response.text)
        if method != "HEAD":
            assert "64 lowercase hex" in response.json()["error"]["message"]


async def test_another_tenants_upload_answers_exactly_like_an_unknown_digest(
    harness: Harness,
) -> None:
    a, b = await _two_tenants(harness)
    secret = b'["team A private rows"]'
    theirs = sha256_digest(secret)
    unknown = sha256_digest(b"nobody ever uploaded this")
    assert (await a.put(f"/v1/blobs/{theirs}", content=secret)).status_code == 201
    assert (await a.post("/v1/operators", json=_embed(theirs))).status_code == 201

    for method in ("HEAD", "GET"):
        seen = await b.request(method, f"/v1/blobs/{theirs}")
        nobodys = await b.request(method, f"/v1/blobs/{unknown}")
        assert seen.status_code == 404, seen.text
        assert _answer(seen, theirs) == _answer(nobodys, unknown)
        assert secret not in seen.content
    for path, doc in (
        ("/v1/operators", _embed("X")),
        ("/v1/workflows", {"nodes": {"n": _embed("X")}}),
    ):
        seen = await b.post(path, json=_with(doc, theirs))
        nobodys = await b.post(path, json=_with(doc, unknown))
        assert seen.status_code == 404, seen.text
        assert _answer(seen, theirs) == _answer(nobodys, unknown)
        assert "team-a" not in seen.text
    assert (await b.get(f"/v1/results/{theirs}")).status_code == 404


def _with(doc: dict[str, object], digest: str) -> dict[str, object]:
    parsed: dict[str, object] = json.loads(json.dumps(doc).replace("X", digest))
    return parsed


async def test_owners_are_a_set_each_uploader_may_use_the_same_bytes(harness: Harness) -> None:
    a, b = await _two_tenants(harness)
    rows = b'["the cat sat", "on the mat"]'
    digest = sha256_digest(rows)
    assert (await a.put(f"/v1/blobs/{digest}", content=rows)).status_code == 201
    assert (await b.post("/v1/operators", json=_embed(digest))).status_code == 404

    # B sends the same bytes: it becomes an owner too, and the answer (201, as for new
    # bytes) does not tell it that someone else had them.
    put = await b.put(f"/v1/blobs/{digest}", content=rows)
    assert put.status_code == 201, put.text
    assert (await b.head(f"/v1/blobs/{digest}")).status_code == 200
    assert (await b.get(f"/v1/blobs/{digest}")).content == rows
    submitted = await b.post("/v1/operators", json=_embed(digest))
    assert submitted.status_code == 201, submitted.text
    assert await harness.store.blob_owners(digest) == {"team-a", "team-b"}


async def test_a_tenant_reads_its_own_results_as_blobs_and_not_anothers(
    harness: Harness,
) -> None:
    a, b = await _two_tenants(harness)
    await harness.worker()
    submitted = await a.post(
        "/v1/operators", json={"kind": "embed", "model": "mini", "inputs": {"texts": ["x"]}}
    )
    assert submitted.status_code == 201, submitted.text
    wf_id = submitted.json()["workflow_id"]
    waited = await a.get(f"/v1/workflows/{wf_id}/wait", params={"timeout": 20, "lineage": "true"})
    node = waited.json()["nodes"][0]
    assert waited.json()["state"] == "done", waited.text
    digests = [node["result_digest"]] + [r["result_digest"] for r in node["lineage"]]
    unknown = sha256_digest(b"no such result")
    for digest in digests:
        mine = await a.get(f"/v1/blobs/{digest}")
        assert mine.status_code == 200, mine.text
        assert sha256_digest(mine.content) == digest
        assert (await a.head(f"/v1/blobs/{digest}")).headers["content-length"] == str(
            len(mine.content)
        )
        seen = await b.get(f"/v1/blobs/{digest}")
        assert _answer(seen, digest) == _answer(await b.get(f"/v1/blobs/{unknown}"), unknown)


def _pattern(total: int) -> Iterator[bytes]:
    """``total`` bytes in 1 MiB chunks, made on the fly (never all in memory)."""
    for index in range(total // MIB):
        yield hashlib.sha256(index.to_bytes(8, "big")).digest() * (MIB // 32)


async def _stream(total: int) -> AsyncIterator[bytes]:
    for chunk in _pattern(total):
        yield chunk


async def test_a_20_mb_upload_streams_through_without_being_held_in_memory(
    harness: Harness,
) -> None:
    total = 20 * MIB
    hasher = hashlib.sha256()
    for chunk in _pattern(total):
        hasher.update(chunk)
    digest = "sha256:" + hasher.hexdigest()
    a, _ = await _two_tenants(harness)

    tracemalloc.start()
    try:
        put = await a.put(f"/v1/blobs/{digest}", content=_stream(total))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert put.status_code == 201, put.text
    assert put.json()["size"] == total
    # The body passed through in chunks: far less than the blob was ever held at once.
    assert peak < 8 * MIB, f"peak {peak:,} bytes during a {total:,}-byte upload"
    head = await a.head(f"/v1/blobs/{digest}")
    assert head.headers["content-length"] == str(total)
    assert harness.blobs.stat(digest).size == total


async def test_an_upload_over_max_upload_bytes_is_413_and_leaves_nothing(
    harness: Harness,
) -> None:
    app = await harness.app(max_upload_bytes=3 * MIB, run_scheduler=False)
    a = await harness.client(app, await harness.tenant("team-a"))
    total = 4 * MIB
    data = b"".join(_pattern(total))
    digest = sha256_digest(data)
    before = await harness.keys()
    declared = await a.put(f"/v1/blobs/{digest}", content=data)
    assert declared.status_code == 413, declared.text
    assert "max_upload_bytes" in declared.json()["error"]["message"]
    chunked = await a.put(f"/v1/blobs/{digest}", content=_stream(total))  # no Content-Length
    assert chunked.status_code == 413, chunked.text
    assert not harness.blobs.exists(digest)
    assert await harness.keys() == before


async def test_uploads_past_tenant_max_upload_bytes_are_429_and_leave_nothing(
    harness: Harness,
) -> None:
    """Each tenant's owned blobs count once against its own quota (docs/isolation.md,
    "Quotas"): a second upload of the same bytes counts nothing, another tenant's
    uploads never move it, and a refused upload stores no bytes and no key."""
    app = await harness.app(tenant_max_upload_bytes=2 * MIB, run_scheduler=False)
    a = await harness.client(app, await harness.tenant("team-a"))
    b = await harness.client(app, await harness.tenant("team-b"))
    admin = await harness.client(app, await harness.tenant("ops", admin=True))
    first = b"".join(_pattern(MIB))
    digest = sha256_digest(first)
    assert (await a.put(f"/v1/blobs/{digest}", content=first)).status_code == 201
    assert (await a.put(f"/v1/blobs/{digest}", content=first)).status_code == 200
    assert (await b.put(f"/v1/blobs/{digest}", content=first)).status_code == 201

    over = b"".join(_pattern(2 * MIB))[MIB // 2 :]  # 1.5 MiB: 2.5 MiB in all for A
    over_digest = sha256_digest(over)
    before = await harness.keys()
    declared = await a.put(f"/v1/blobs/{over_digest}", content=over)
    assert declared.status_code == 429, declared.text
    error = declared.json()["error"]
    assert error["type"] == "QuotaExceededError"
    assert "tenant_max_upload_bytes" in error["message"]
    assert "ask an operator to raise" in error["message"]
    assert "retry-after" not in declared.headers  # waiting does not help
    (own,) = (await a.get("/v1/stats")).json()["tenants"]
    assert (own["tenant"], own["upload_bytes"], own["max_upload_bytes"]) == (
        "team-a",
        MIB,
        2 * MIB,
    )

    async def unsized() -> AsyncIterator[bytes]:  # no Content-Length: caught mid-stream
        for start in range(0, len(over), 256 * 1024):
            yield over[start : start + 256 * 1024]

    chunked = await a.put(f"/v1/blobs/{over_digest}", content=unsized())
    assert chunked.status_code == 429, chunked.text
    assert not harness.blobs.exists(over_digest)
    assert await harness.keys() == before

    rest = first[: MIB - 1] + b"!"  # exactly up to the limit is allowed
    assert (await a.put(f"/v1/blobs/{sha256_digest(rest)}", content=rest)).status_code == 201
    assert (await b.put(f"/v1/blobs/{over_digest}", content=over)).status_code == 429
    assert (await admin.put(f"/v1/blobs/{over_digest}", content=over)).status_code == 201
    by_tenant = {s["tenant"]: s for s in (await admin.get("/v1/stats")).json()["tenants"]}
    assert {name: s["upload_bytes"] for name, s in by_tenant.items()} == {
        "team-a": 2 * MIB,
        "team-b": MIB,
        "ops": len(over),
    }
    assert [by_tenant[n]["max_upload_bytes"] for n in ("team-a", "ops")] == [2 * MIB, 0]


async def test_uploads_need_a_token(harness: Harness) -> None:
    app = await harness.app()
    anonymous = await harness.client(app)
    digest = sha256_digest(b"x")
    for method in ("PUT", "GET"):
        response = await anonymous.request(method, f"/v1/blobs/{digest}", content=b"x")
        assert response.status_code == 401, response.text
    assert not harness.blobs.exists(digest)


async def test_the_async_client_uploads_and_reads_back_as_its_tenant(harness: Harness) -> None:
    app = await harness.app(run_scheduler=False)
    tokens = [await harness.tenant(name) for name in ("team-a", "team-b")]
    transport = httpx.ASGITransport(app=app)
    data = b"".join(_pattern(3 * MIB))
    async with (
        AsyncClient(BASE_URL, tokens[0], transport=transport) as a,
        AsyncClient(BASE_URL, tokens[1], transport=transport) as b,
    ):
        digest = await a.put_blob(data)
        assert digest == sha256_digest(data)
        assert await a.put_blob(io.BytesIO(data)) == digest
        assert await a.get_blob(digest) == data
        with pytest.raises(NotFoundError, match=f"no blob {digest} for this tenant"):
            await b.get_blob(digest)
        with pytest.raises(InvalidDigestError):
            await b.get_blob("sha256:XYZ")
