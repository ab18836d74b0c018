"""Tenant B names tenant A's result digests every way an input can carry one.

The isolation model (docs/architecture.md, "Tenants"): every digest a worker reads for a
tenant is checked against that tenant's rights, a literal is never dereferenced, and
another tenant's digest answers exactly like an unknown one. The play worker here reads
its inputs with the worker's real input resolution (``flowmesh_worker.inputs``), so a
reference that slipped through would put A's text into B's result.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import httpx
import pytest

from flowmesh_core.blobs import open_blob_store
from flowmesh_core.models import Item, ItemLiteral
from flowmesh_worker.inputs import resolve_inputs
from tests.integration.api_harness import Harness

SECRET = "team-a-secret-text"


@pytest.fixture
def store_url(redis_url: str) -> str:
    """The shared ``harness`` on the real Redis only (the store suites cover both stores)."""
    return redis_url


def _embed(texts: Any) -> dict[str, Any]:
    return {"kind": "embed", "model": "mini", "inputs": {"texts": texts}}


async def _submit(client: httpx.AsyncClient, doc: dict[str, Any]) -> httpx.Response:
    return await client.post("/v1/operators", json=doc)


async def _result(client: httpx.AsyncClient, wf_id: str) -> bytes:
    """The node's result and every item result of ``wf_id``, concatenated."""
    params = {"timeout": 20, "lineage": "true"}
    response = await client.get(f"/v1/workflows/{wf_id}/wait", params=params)
    assert response.status_code == 200, response.text
    status = response.json()
    assert status["state"] == "done", status
    node = status["nodes"][0]
    content = b""
    for digest in [node["result_digest"]] + [r["result_digest"] for r in node["lineage"]]:
        fetched = await client.get(f"/v1/results/{digest}")
        assert fetched.status_code == 200, fetched.text
        content += fetched.content
    return content


async def _two_tenants(
    harness: Harness,
) -> tuple[httpx.AsyncClient, httpx.AsyncClient, list[str], list[Item]]:
    """A and B on one app; A has computed over SECRET. Returns A's result digests and
    every item the worker was handed."""
    app = await harness.app()
    blobs = open_blob_store(harness.blob_url)
    seen: list[Item] = []

    def execute(item: Item) -> Any:
        seen.append(item)
        return resolve_inputs(item.inputs, blobs)

    a = await harness.client(app, await harness.tenant("team-a"))
    b = await harness.client(app, await harness.tenant("team-b"))
    response = await _submit(a, _embed([SECRET, SECRET + "-2"]))
    assert response.status_code == 201, response.text
    await harness.worker(execute=execute)
    wf_a = response.json()["workflow_id"]
    assert SECRET.encode() in await _result(a, wf_a)
    status = (await a.get(f"/v1/workflows/{wf_a}", params={"lineage": "true"})).json()
    digests = [n["result_digest"] for n in status["nodes"]]
    digests += [r["result_digest"] for n in status["nodes"] for r in n["lineage"]]
    return a, b, sorted(set(digests)), seen


SHAPES = {
    "list-element": lambda d: [{"blob": d}],
    "literal-manifest": lambda d: {"value": {"manifest": [d]}},
    "explicit-literal": lambda d: {"value": {"blob": d}},
    "manifest-element": lambda d: [{"manifest": [d]}],
    "literal-element": lambda d: [{"value": {"blob": d}}],
    "nested-literal": lambda d: {"value": [{"blob": d}, {"manifest": d}]},
}


async def test_a_digest_inside_a_literal_is_data_never_read(harness: Harness) -> None:
    """Each shape is either refused before anything runs (embed takes a list, and a
    literal dict is not one) or run with the digest as data."""
    _, b, digests, seen = await _two_tenants(harness)
    ran = set()
    for name, shape in SHAPES.items():
        for digest in digests:
            seen.clear()
            response = await _submit(b, _embed(shape(digest)))
            if response.status_code == 400:
                assert "must be a list" in response.text, name
                assert not seen, name
                continue
            assert response.status_code == 201, (name, response.text)
            ran.add(name)
            result = await _result(b, response.json()["workflow_id"])
            assert SECRET.encode() not in result, name
            assert digest in result.decode(), name  # handed over as written: data
            assert seen, name
            inputs = [inp for item in seen for inp in item.inputs.values()]
            assert all(isinstance(inp, ItemLiteral) for inp in inputs), name
    assert {"list-element", "manifest-element", "literal-element", "nested-literal"} <= ran


async def test_another_tenants_digest_answers_exactly_like_an_unknown_one(
    harness: Harness,
) -> None:
    _, b, digests, _ = await _two_tenants(harness)
    unknown = "sha256:" + hashlib.sha256(b"nobody ever stored this").hexdigest()
    blob_dir = harness.blob_url.removeprefix("file://")

    def shape(response: httpx.Response, digest: str) -> tuple[int, str]:
        return response.status_code, response.text.replace(digest, "D")

    for digest in digests:
        for doc in (
            _embed({"blob": "X"}),
            {"nodes": {"n": _embed({"blob": "X"})}},
        ):
            path = "/v1/workflows" if "nodes" in doc else "/v1/operators"
            text = json.dumps(doc)
            theirs = await b.post(path, json=json.loads(text.replace("X", digest)))
            nobodys = await b.post(path, json=json.loads(text.replace("X", unknown)))
            assert theirs.status_code == 404, theirs.text
            assert shape(theirs, digest) == shape(nobodys, unknown)
            assert blob_dir not in theirs.text
            assert "team-a" not in theirs.text
        theirs = await b.get(f"/v1/results/{digest}")
        nobodys = await b.get(f"/v1/results/{unknown}")
        assert theirs.status_code == 404
        assert shape(theirs, digest) == shape(nobodys, unknown)


async def test_a_joiner_changes_nothing_in_the_first_requesters_costs(harness: Harness) -> None:
    app = await harness.app()
    a = await harness.client(app, await harness.tenant("team-a"))
    b = await harness.client(app, await harness.tenant("team-b"))
    op = _embed(["x", "y"])
    wf_a = (await _submit(a, op)).json()["workflow_id"]
    joined = await _submit(b, {**op, "inputs": {"texts": ["y"]}})
    assert joined.json()["nodes"][0]["joined"] == 1
    await harness.worker()  # only now is there anyone to run the work: one batch of x, y
    await _result(a, wf_a)
    await _result(b, joined.json()["workflow_id"])
    lineage = (await a.get(f"/v1/workflows/{wf_a}/lineage")).json()
    costs = {r["cost_usd"] for r in lineage}
    seconds = {r["worker_seconds"] for r in lineage}
    assert len(lineage) == 2
    assert len(costs) == 1  # y, which B joined, costs A what x does
    assert len(seconds) == 1
    assert costs.pop() > 0
