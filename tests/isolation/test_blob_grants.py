"""Explicit blob grants: ``POST``/``GET``/``DELETE /v1/blobs/{digest}/grants``.

The rules (docs/isolation.md, "Grants"): a tenant grants a blob it uploaded or its
lineage holds; the grantee reads it and computes on it until the last grant is
withdrawn, then it answers exactly like an unknown digest again; a grant is not passed
on; whether the grantee exists never changes the answer; and a manifest authorises the
digests it lists only when a lineage made it (the grantee's own or a grantor's), never
because someone uploaded it.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import httpx
import pytest

from flowmesh_core.blobs import open_blob_store
from flowmesh_core.checkpoint import build_tree
from flowmesh_core.client import AsyncClient
from flowmesh_core.errors import InvalidInputError, NotFoundError, PermissionDeniedError
from flowmesh_core.hashing import digest_bytes
from flowmesh_core.manifest import build_manifest
from flowmesh_core.models import Item, ModelRef
from flowmesh_worker.inputs import resolve_inputs
from tests.integration.api_harness import BASE_URL, Harness

SECRET = "team-a-secret-text"


@pytest.fixture
def store_url(redis_url: str) -> str:
    """The shared ``harness`` on the real Redis only (the store suites cover both stores)."""
    return redis_url


def _embed(texts: Any) -> dict[str, Any]:
    return {"kind": "embed", "model": "mini", "inputs": {"texts": texts}}


def _answer(response: httpx.Response, *secrets: str) -> tuple[int, str]:
    """What a tenant sees of an answer, with the names it asked about blanked out."""
    text = response.text
    for secret in secrets:
        text = text.replace(secret, "X")
    return response.status_code, text


class Tenants:
    """A, B and C on one app, an admin, and a play worker that reads inputs the way the
    real worker does (``flowmesh_worker.inputs``)."""

    def __init__(self, harness: Harness, clients: list[httpx.AsyncClient]) -> None:
        self.harness = harness
        self.a, self.b, self.c, self.admin = clients

    async def upload(self, client: httpx.AsyncClient, data: bytes) -> str:
        digest = digest_bytes(data)
        put = await client.put(f"/v1/blobs/{digest}", content=data)
        assert put.status_code in (200, 201), put.text
        return digest

    async def grant(self, client: httpx.AsyncClient, digest: str, to: str) -> httpx.Response:
        return await client.post(f"/v1/blobs/{digest}/grants", json={"tenant": to})

    async def revoke(self, client: httpx.AsyncClient, digest: str, to: str) -> httpx.Response:
        return await client.delete(f"/v1/blobs/{digest}/grants/{to}")

    async def run(self, client: httpx.AsyncClient, doc: dict[str, Any]) -> bytes:
        """Submit ``doc`` and wait: the node's result and its items' results."""
        submitted = await client.post("/v1/operators", json=doc)
        assert submitted.status_code == 201, submitted.text
        wf_id = submitted.json()["workflow_id"]
        params = {"timeout": 20, "lineage": "true"}
        waited = await client.get(f"/v1/workflows/{wf_id}/wait", params=params)
        status = waited.json()
        assert status["state"] == "done", status
        node = status["nodes"][0]
        content = b""
        for digest in [node["result_digest"]] + [r["result_digest"] for r in node["lineage"]]:
            fetched = await client.get(f"/v1/results/{digest}")
            assert fetched.status_code == 200, fetched.text
            content += fetched.content
        return content


async def _tenants(harness: Harness, *, worker: bool = False, **settings: Any) -> Tenants:
    app = await harness.app(run_scheduler=worker, **settings)
    clients = [
        await harness.client(app, await harness.tenant(name))
        for name in ("team-a", "team-b", "team-c")
    ]
    clients.append(await harness.client(app, await harness.tenant("ops", admin=True)))
    if worker:
        blobs = open_blob_store(harness.blob_url)

        def execute(item: Item) -> Any:
            return resolve_inputs(item.inputs, blobs)

        await harness.worker(execute=execute)
    return Tenants(harness, clients)


async def test_a_grant_lets_the_grantee_read_until_revoked_then_it_is_unknown_again(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="flowmesh.blobs")
    t = await _tenants(harness)
    rows = b'["team A rows to share"]'
    digest = await t.upload(t.a, rows)
    unknown = digest_bytes(b"nobody ever uploaded this")

    granted = await t.grant(t.a, digest, "team-b")
    assert granted.status_code == 201, granted.text
    assert granted.json() == {"tenant": "team-b", "grantor": "team-a"}
    again = await t.grant(t.a, digest, "team-b")
    assert again.status_code == 200, again.text
    head = await t.b.head(f"/v1/blobs/{digest}")
    assert (head.status_code, head.headers["content-length"]) == (200, str(len(rows)))
    assert (await t.b.get(f"/v1/blobs/{digest}")).content == rows
    assert (await t.b.post("/v1/operators", json=_embed({"blob": digest}))).status_code == 201
    assert (await t.c.get(f"/v1/blobs/{digest}")).status_code == 404  # to B, not to all
    listed = await t.a.get(f"/v1/blobs/{digest}/grants")
    assert listed.json() == {"digest": digest, "grants": [granted.json()]}

    assert f"blob grant: team-a lets team-b read {digest}" in caplog.text  # the audit trail
    revoked = await t.revoke(t.a, digest, "team-b")
    assert revoked.status_code == 204, revoked.text
    assert f"team-a no longer lets team-b read {digest}" in caplog.text
    assert (await t.revoke(t.a, digest, "team-b")).status_code == 204  # idempotent
    assert (await t.a.get(f"/v1/blobs/{digest}/grants")).json()["grants"] == []
    for method in ("HEAD", "GET"):
        theirs = await t.b.request(method, f"/v1/blobs/{digest}")
        nobodys = await t.b.request(method, f"/v1/blobs/{unknown}")
        assert theirs.status_code == 404
        assert _answer(theirs, digest) == _answer(nobodys, unknown)
        assert rows not in theirs.content
    for doc in (_embed({"blob": "D"}), {"nodes": {"n": _embed({"blob": "D"})}}):
        path = "/v1/workflows" if "nodes" in doc else "/v1/operators"
        text = json.dumps(doc)
        theirs = await t.b.post(path, json=json.loads(text.replace('"D"', f'"{digest}"')))
        nobodys = await t.b.post(path, json=json.loads(text.replace('"D"', f'"{unknown}"')))
        assert theirs.status_code == 404, theirs.text
        assert _answer(theirs, digest) == _answer(nobodys, unknown)
        assert "team-a" not in theirs.text


async def test_a_grant_to_a_tenant_that_does_not_exist_answers_as_to_one_that_does(
    harness: Harness,
) -> None:
    t = await _tenants(harness)
    digest = await t.upload(t.a, b'["rows"]')
    other = await t.upload(t.a, b'["more rows"]')
    known = await t.grant(t.a, digest, "team-b")
    nobody = await t.grant(t.a, other, "no-such-team")
    assert known.status_code == nobody.status_code == 201
    assert _answer(known, digest, "team-b") == _answer(nobody, other, "no-such-team")
    revoked = [await t.revoke(t.a, digest, "team-b"), await t.revoke(t.a, other, "no-such-team")]
    assert [r.status_code for r in revoked] == [204, 204]
    assert revoked[0].content == revoked[1].content == b""


async def test_granting_a_digest_the_caller_may_not_read_answers_like_an_unknown_one(
    harness: Harness,
) -> None:
    t = await _tenants(harness)
    digest = await t.upload(t.a, b'["team A only"]')
    unknown = digest_bytes(b"nobody ever uploaded this either")
    before = await harness.keys()
    baseline = _answer(await t.b.get(f"/v1/blobs/{unknown}"), unknown)
    for target in (digest, unknown):
        for response in (
            await t.grant(t.b, target, "team-c"),
            await t.b.get(f"/v1/blobs/{target}/grants"),
            await t.revoke(t.b, target, "team-a"),
        ):
            assert _answer(response, target) == baseline, response.text
    assert await harness.keys() == before
    assert (await t.c.get(f"/v1/blobs/{digest}")).status_code == 404


async def test_two_grantors_grants_stand_apart_and_the_last_revoke_withdraws(
    harness: Harness,
) -> None:
    t = await _tenants(harness)
    rows = b'["rows both A and C hold"]'
    digest = await t.upload(t.a, rows)
    assert await t.upload(t.c, rows) == digest  # owners are a set: C holds it too
    assert (await t.grant(t.a, digest, "team-b")).status_code == 201
    assert (await t.grant(t.c, digest, "team-b")).status_code == 201

    # Each grantor sees its own grant only; the admin sees both.
    a_sees = (await t.a.get(f"/v1/blobs/{digest}/grants")).json()["grants"]
    c_sees = (await t.c.get(f"/v1/blobs/{digest}/grants")).json()["grants"]
    assert a_sees == [{"tenant": "team-b", "grantor": "team-a"}]
    assert c_sees == [{"tenant": "team-b", "grantor": "team-c"}]
    everyone = (await t.admin.get(f"/v1/blobs/{digest}/grants")).json()["grants"]
    assert everyone == a_sees + c_sees

    assert (await t.revoke(t.a, digest, "team-b")).status_code == 204
    assert (await t.b.get(f"/v1/blobs/{digest}")).content == rows  # C's grant stands
    assert (await t.c.get(f"/v1/blobs/{digest}/grants")).json()["grants"] == c_sees
    assert (await t.revoke(t.c, digest, "team-b")).status_code == 204
    assert (await t.b.get(f"/v1/blobs/{digest}")).status_code == 404


async def test_a_grantee_may_not_pass_the_grant_on(harness: Harness) -> None:
    t = await _tenants(harness)
    digest = await t.upload(t.a, b'["for B only"]')
    assert (await t.grant(t.a, digest, "team-b")).status_code == 201
    before = await harness.keys()
    passed = await t.grant(t.b, digest, "team-c")
    assert passed.status_code == 403, passed.text
    error = passed.json()["error"]
    assert error["type"] == "PermissionDeniedError"
    assert "not passed on" in error["message"]
    assert "team-a" not in passed.text  # who granted it is not told
    assert await harness.keys() == before
    assert (await t.c.get(f"/v1/blobs/{digest}")).status_code == 404
    assert (await t.b.get(f"/v1/blobs/{digest}/grants")).json()["grants"] == []


async def test_bad_grants_are_400s_that_say_what_to_fix_and_store_nothing(
    harness: Harness,
) -> None:
    t = await _tenants(harness)
    digest = await t.upload(t.a, b'["rows"]')
    before = await harness.keys()
    cases = [
        (await t.grant(t.a, digest, "team-a"), "itself"),
        (await t.grant(t.a, digest, "no spaces/or:colons"), "not a valid name"),
        (await t.a.post(f"/v1/blobs/{digest}/grants", json={"tenant": "team-b", "x": 1}), "x"),
        (await t.a.post(f"/v1/blobs/{digest}/grants", json={}), "tenant"),
        (await t.a.post(f"/v1/blobs/{digest}/grants", json=["team-b"]), "mapping"),
        (await t.grant(t.a, "sha256:XYZ", "team-b"), "64 lowercase hex"),
        (await t.revoke(t.a, digest, "no:colons"), "tenant"),
    ]
    for response, hint in cases:
        assert response.status_code == 400, response.text
        assert hint in response.json()["error"]["message"], response.text
    assert await harness.keys() == before


async def test_grants_past_max_grants_per_tenant_are_429_until_one_is_revoked(
    harness: Harness,
) -> None:
    t = await _tenants(harness, max_grants_per_tenant=2)
    first, second = [await t.upload(t.a, f'["rows {i}"]'.encode()) for i in range(2)]
    assert (await t.grant(t.a, first, "team-b")).status_code == 201
    assert (await t.grant(t.a, second, "team-b")).status_code == 201
    before = await harness.keys()
    refused = await t.grant(t.a, first, "team-c")
    assert refused.status_code == 429, refused.text
    error = refused.json()["error"]
    assert error["type"] == "QuotaExceededError"
    assert "max_grants_per_tenant" in error["message"]
    assert "GET /v1/grants" in error["message"]  # where to find what to revoke
    assert await harness.keys() == before
    listed = (await t.a.get("/v1/grants")).json()
    assert listed["grants"] == sorted(
        ({"digest": d, "tenant": "team-b"} for d in (first, second)), key=lambda g: g["digest"]
    )
    assert listed["next"] is None
    (own,) = (await t.a.get("/v1/stats")).json()["tenants"]
    assert (own["grants"], own["max_grants"]) == (2, 2)
    assert (await t.grant(t.a, first, "team-b")).status_code == 200  # a repeat is no new grant
    assert (await t.c.get(f"/v1/blobs/{first}")).status_code == 404
    assert (await t.revoke(t.a, second, "team-b")).status_code == 204
    assert (await t.grant(t.a, first, "team-c")).status_code == 201
    # The admin has no grant quota (like the other quotas).
    admin_rows = await t.upload(t.admin, b'["ops rows"]')
    for name in ("team-a", "team-b", "team-c"):
        assert (await t.grant(t.admin, admin_rows, name)).status_code == 201
    by_tenant = {s["tenant"]: s for s in (await t.admin.get("/v1/stats")).json()["tenants"]}
    assert (by_tenant["team-a"]["grants"], by_tenant["team-a"]["max_grants"]) == (2, 2)
    assert (by_tenant["team-b"]["grants"], by_tenant["ops"]["grants"]) == (0, 3)
    assert by_tenant["ops"]["max_grants"] == 0  # no limit


async def test_the_grants_a_tenant_made_list_page_by_page_and_only_its_own(
    harness: Harness,
) -> None:
    t = await _tenants(harness)
    rows = [await t.upload(t.a, f'["page {i}"]'.encode()) for i in range(3)]
    made = sorted((d, to) for d in rows for to in ("team-b", "team-c"))
    for digest, to in made:
        assert (await t.grant(t.a, digest, to)).status_code == 201
    b_rows = await t.upload(t.b, b'["b rows"]')
    assert (await t.grant(t.b, b_rows, "team-a")).status_code == 201

    seen: list[tuple[str, str]] = []
    params: dict[str, Any] = {"limit": 4}
    while True:
        page = await t.a.get("/v1/grants", params=params)
        assert page.status_code == 200, page.text
        body = page.json()
        assert len(body["grants"]) <= 4
        seen += [(g["digest"], g["tenant"]) for g in body["grants"]]
        if body["next"] is None:
            break
        params["after"] = body["next"]
    assert seen == made  # each grant once, in order, none of B's
    assert [g["digest"] for g in (await t.b.get("/v1/grants")).json()["grants"]] == [b_rows]
    assert (await t.c.get("/v1/grants")).json() == {"grants": [], "next": None}
    # An admin lists its own grants only (GET /v1/blobs/{digest}/grants shows everyone's).
    assert (await t.admin.get("/v1/grants")).json()["grants"] == []
    # A revoked grant leaves the list.
    assert (await t.revoke(t.a, made[0][0], made[0][1])).status_code == 204
    left = (await t.a.get("/v1/grants")).json()["grants"]
    assert [(g["digest"], g["tenant"]) for g in left] == made[1:]

    before = await harness.keys()
    for bad in ({"after": "nonsense"}, {"after": f"{rows[0]}/"}, {"limit": 0}):
        refused = await t.a.get("/v1/grants", params=bad)
        assert refused.status_code == 400, (bad, refused.text)
    assert "next" in (await t.a.get("/v1/grants", params={"after": "x"})).json()["error"]["message"]
    assert await harness.keys() == before
    assert (await (await harness.client(await harness.app())).get("/v1/grants")).status_code == 401


async def test_a_granted_blob_is_an_input_end_to_end(harness: Harness) -> None:
    t = await _tenants(harness, worker=True)
    texts = json.dumps([SECRET, SECRET + "-2"]).encode()
    digest = await t.upload(t.a, texts)
    assert (await t.grant(t.a, digest, "team-b")).status_code == 201
    result = await t.run(t.b, _embed({"blob": digest}))
    assert SECRET.encode() in result  # the worker read A's bytes for B
    node = {"nodes": {"first": _embed({"blob": digest}), "n": _embed({"ref": "first"})}}
    workflow = await t.b.post("/v1/workflows", json=node)
    assert workflow.status_code == 201, workflow.text


async def _a_result_manifest(t: Tenants) -> tuple[str, list[str]]:
    """A computes over SECRET: its node's result manifest and the item digests it lists."""
    submitted = await t.a.post("/v1/operators", json=_embed([SECRET, SECRET + "-2"]))
    assert submitted.status_code == 201, submitted.text
    wf_id = submitted.json()["workflow_id"]
    waited = await t.a.get(f"/v1/workflows/{wf_id}/wait", params={"timeout": 20})
    manifest = waited.json()["nodes"][0]["result_digest"]
    listed = json.loads((await t.a.get(f"/v1/results/{manifest}")).content)["manifest"]
    assert len(listed) == 2
    return manifest, listed


async def test_a_granted_lineage_manifest_lets_the_grantee_compute_on_what_it_lists(
    harness: Harness,
) -> None:
    t = await _tenants(harness, worker=True)
    manifest, listed = await _a_result_manifest(t)
    doc = _embed({"blob": manifest})
    assert (await t.b.post("/v1/operators", json=doc)).status_code == 404
    assert (await t.grant(t.a, manifest, "team-b")).status_code == 201
    assert SECRET.encode() in await t.run(t.b, doc)
    # The manifest itself is granted, not what it lists: B cannot read an item alone.
    for item in listed:
        assert (await t.b.get(f"/v1/blobs/{item}")).status_code == 404
        assert (await t.b.post("/v1/operators", json=_embed({"blob": item}))).status_code == 404


async def test_a_forged_manifest_authorises_nothing_uploaded_or_granted(
    harness: Harness,
) -> None:
    """B (or C for B) uploads a manifest listing A's item digests. Owning a manifest
    never vouches for what it lists, so neither B's own upload nor C's grant of its
    upload lets B compute on A's items; each answer is that of an unknown digest."""
    t = await _tenants(harness, worker=True)
    _, listed = await _a_result_manifest(t)
    forged = build_manifest(listed)
    unknown = digest_bytes(b"nobody ever computed this")
    b_forged = await t.upload(t.b, forged)
    c_forged = await t.upload(t.c, forged + b" ")  # other bytes, same manifest
    assert (await t.grant(t.c, c_forged, "team-b")).status_code == 201
    assert (await t.b.get(f"/v1/blobs/{c_forged}")).status_code == 200  # the grant works
    nobodys = await t.b.post("/v1/operators", json=_embed({"blob": unknown}))
    for manifest in (b_forged, c_forged):
        refused = await t.b.post("/v1/operators", json=_embed({"blob": manifest}))
        assert refused.status_code == 404, refused.text
        named = next(d for d in listed if d in refused.text)
        assert _answer(refused, named) == _answer(nobodys, unknown)
    # Nor does a grant of A's item to C let C's forged manifest vouch for the others.
    assert (await t.grant(t.a, listed[0], "team-c")).status_code == 201
    refused = await t.c.post("/v1/operators", json=_embed({"blob": c_forged}))
    assert refused.status_code == 404, refused.text
    assert listed[1] in refused.text


async def test_the_async_client_grants_lists_and_revokes(harness: Harness) -> None:
    app = await harness.app(run_scheduler=False)
    tokens = [await harness.tenant(name) for name in ("team-a", "team-b")]
    transport = httpx.ASGITransport(app=app)
    async with (
        AsyncClient(BASE_URL, tokens[0], transport=transport) as a,
        AsyncClient(BASE_URL, tokens[1], transport=transport) as b,
    ):
        digest = await a.put_blob(b'["rows for B"]')
        grant = await a.grant_blob(digest, "team-b")
        assert (grant.tenant, grant.grantor) == ("team-b", "team-a")
        assert await a.list_blob_grants(digest) == [grant]
        page = await a.list_grants()
        assert [(g.digest, g.tenant) for g in page.grants] == [(digest, "team-b")]
        assert page.next is None
        assert (await b.list_grants()).grants == []
        assert await b.get_blob(digest) == b'["rows for B"]'
        with pytest.raises(PermissionDeniedError):
            await b.grant_blob(digest, "team-a")
        await a.revoke_blob_grant(digest, "team-b")
        assert await a.list_blob_grants(digest) == []
        assert (await a.list_grants()).grants == []
        with pytest.raises(NotFoundError, match=f"no blob {digest} for this tenant"):
            await b.get_blob(digest)
        with pytest.raises(InvalidInputError, match="tenant"):
            await a.revoke_blob_grant(digest, "")


async def test_a_granted_uploaded_checkpoint_is_a_model_only_with_its_files(
    harness: Harness,
) -> None:
    """A checkpoint tree someone uploaded vouches for none of its files, granted or not
    (docs/training.md, "Rights and dedup"): B may name A's uploaded tree as a model only
    once it may read every file the tree lists."""
    t = await _tenants(harness)
    config = await t.upload(t.a, b'{"model_type": "bert"}')
    tree = await t.upload(t.a, build_tree({"config.json": config}, format="full", base=None))
    assert (await t.grant(t.a, tree, "team-b")).status_code == 201
    doc = {**_embed(["x"]), "model": tree}
    refused = await t.b.post("/v1/operators", json=doc)
    assert refused.status_code == 404, refused.text
    assert f"no blob {config} for this tenant" in refused.text
    assert (await t.grant(t.a, config, "team-b")).status_code == 201
    accepted = await t.b.post("/v1/operators", json=doc)
    assert accepted.status_code == 201, accepted.text


async def test_an_adapter_on_a_granted_base_stops_when_the_grant_is_revoked(
    harness: Harness,
) -> None:
    """B's LoRA adapter trained on A's granted checkpoint reads that base at every run,
    so the base is checked against B's rights each time: after A revokes, B's adapter is
    refused like an unknown digest, and B granting the adapter to C never passes the
    base on (docs/isolation.md, "Grants")."""
    t = await _tenants(harness)
    store, blobs = harness.store, harness.blobs
    weights = blobs.put_bytes(b"base weights").digest
    base = blobs.put_bytes(build_tree({"model.bin": weights}, format="full", base=None)).digest
    adapter_file = blobs.put_bytes(b"adapter weights").digest
    ref = ModelRef(digest=base)
    adapter = blobs.put_bytes(build_tree({"a.bin": adapter_file}, format="lora", base=ref))
    for tenant, tree in (("team-a", base), ("team-b", adapter.digest)):  # what `complete` writes
        await store.redis.sadd(store.keys.tenant_results(tenant), tree)
    doc = {**_embed(["x"]), "model": adapter.digest}

    assert (await t.b.post("/v1/operators", json=doc)).status_code == 404  # base not granted
    assert (await t.grant(t.a, base, "team-b")).status_code == 201
    assert (await t.b.post("/v1/operators", json=doc)).status_code == 201
    assert (await t.grant(t.b, adapter.digest, "team-c")).status_code == 201
    refused_c = await t.c.post("/v1/operators", json=doc)
    assert refused_c.status_code == 404, refused_c.text
    assert f"no blob {base} for this tenant" in refused_c.text

    assert (await t.revoke(t.a, base, "team-b")).status_code == 204
    refused_b = await t.b.post("/v1/operators", json=doc)
    assert refused_b.status_code == 404, refused_b.text
    assert f"no blob {base} for this tenant" in refused_b.text
