"""Hypothesis-driven isolation probes: tenant B sends random small workflows of the cheap
``data.*`` kinds with a digest placed in every input position, and never obtains bytes
only tenant A may read; another tenant's digest answers exactly like an unknown one.

A has computed over SECRET first. Each example is sent twice, once naming one of A's
digests and once naming a digest nobody stored (directly, in a manifest B stored itself,
or in a manifest tenant C uploaded and granted to B: a grant of a forged manifest
vouches for nothing it lists); what B observes (status, error, node
states, the bytes of every result it can read) must be the same in both runs once the
digest is masked, and must never contain SECRET. The play worker resolves inputs with the
worker's real code (``flowmesh_worker.inputs``), so a digest that slipped through would
put A's text into B's result. Derandomized and bounded, so CI sees the same cases.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import uuid
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from flowmesh_core.blobs import open_blob_store
from flowmesh_core.manifest import build_manifest
from flowmesh_core.models import Item
from flowmesh_worker.inputs import resolve_inputs
from tests.fuzz.bridge import Loop
from tests.integration.api_harness import Harness

SECRET = "team-a-secret-text"
MASK = "sha256:" + "0" * 64

KINDS: dict[str, tuple[dict[str, Any], tuple[str, ...]]] = {
    "data.template": ({"template": "{x}"}, ("records",)),
    "data.dedup": ({}, ("items",)),
    "data.filter": ({"min_score": 0.5}, ("items", "scores")),
    "data.top_k": ({"k": 1}, ("items", "scores")),
}
POSITIONS = (
    "blob",
    "element",
    "manifest",
    "literal",
    "own-manifest",
    "granted-manifest",
    "plain",
)


@pytest.fixture
def store_url(redis_url: str) -> str:
    """The shared ``harness`` on the real Redis."""
    return redis_url


@st.composite
def workflows(draw: st.DrawFn) -> dict[str, Any]:
    """One or two nodes; every input a position drawn from POSITIONS (``plain``: a list
    of plain values), the second node optionally reading the first."""
    nodes: dict[str, Any] = {}
    for index in range(draw(st.integers(1, 2))):
        kind = draw(st.sampled_from(sorted(KINDS)))
        params, inputs = KINDS[kind]
        written: dict[str, Any] = {}
        for name in inputs:
            if index and not written and draw(st.booleans()):
                written[name] = {"ref": "n0"}
                continue
            written[name] = {"position": draw(st.sampled_from(POSITIONS))}
        # dedup off: no run hits B's own cache from an earlier example, so both runs of
        # one example do the same work.
        nodes[f"n{index}"] = {"kind": kind, "params": params, "inputs": written, "dedup": False}
    return {"nodes": nodes}


def _place(position: str, digest: str, manifests: tuple[str, str]) -> Any:
    own_manifest, granted_manifest = manifests
    return {
        "blob": {"blob": digest},
        "element": ["x", {"blob": digest}],
        "manifest": {"value": {"manifest": [digest]}},
        "literal": {"value": {"blob": digest}},
        "own-manifest": {"blob": own_manifest},
        "granted-manifest": {"blob": granted_manifest},
        "plain": ["x", 0.9],
    }[position]


def _document(shape: dict[str, Any], digest: str, manifests: tuple[str, str]) -> dict[str, Any]:
    nodes = {}
    for name, node in shape["nodes"].items():
        inputs = {
            key: value if "ref" in value else _place(value["position"], digest, manifests)
            for key, value in node["inputs"].items()
        }
        nodes[name] = {**node, "inputs": inputs}
    return {"nodes": nodes}


async def _granted_manifest(c: httpx.AsyncClient, digest: str) -> str:
    """A manifest naming ``digest`` that tenant C uploads and grants to B."""
    data = build_manifest([digest])
    manifest = "sha256:" + hashlib.sha256(data).hexdigest()
    assert (await c.put(f"/v1/blobs/{manifest}", content=data)).status_code in (200, 201)
    granted = await c.post(f"/v1/blobs/{manifest}/grants", json={"tenant": "team-b"})
    assert granted.status_code in (200, 201), granted.text
    return manifest


async def _observe(client: httpx.AsyncClient, doc: dict[str, Any], masks: list[str]) -> str:
    """What B sees of one submission, every digest in ``masks`` masked."""
    seen: list[Any] = []
    submitted = await client.post("/v1/workflows", json=doc)
    seen.append([submitted.status_code, submitted.json()])
    if submitted.status_code == 201:
        wf_id = submitted.json()["workflow_id"]
        done = await client.get(
            f"/v1/workflows/{wf_id}/wait", params={"timeout": 60, "lineage": "true"}
        )
        status = done.json()
        assert status["state"] in {"done", "failed"}, json.dumps(status)
        digests = []
        for node in status["nodes"]:
            seen.append([node["node"], node["state"], node.get("error")])
            digests.append(node.get("result_digest"))
            digests += [r.get("result_digest") for r in node.get("lineage", [])]
            seen.append(sorted(str(r.get("error")) for r in node.get("lineage", [])))
        for digest in digests:
            if digest is not None:
                got = await client.get(f"/v1/results/{digest}")
                seen.append([got.status_code, got.content.decode(errors="replace")])
    text = json.dumps(seen, sort_keys=True)
    for mask in masks:
        text = text.replace(mask, MASK)
    return text


def _masked(text: str) -> str:
    """``text`` with every digest, op key and workflow id masked: they differ between
    two runs of one example whatever the isolation (the inputs differ by a digest)."""
    text = re.sub(r"sha256:[0-9a-f]{64}", MASK, text)
    text = re.sub(r"\b[0-9a-f]{64}\b", "K", text)
    text = re.sub(r"\bitem [0-9a-f]{12}\b", "item K", text)
    return re.sub(r'"workflow_id": "[^"]*"', '"workflow_id": "ID"', text)


@pytest.mark.redis
@pytest.mark.timeout(180)
async def test_b_never_reads_a_and_forbidden_looks_unknown(harness: Harness) -> None:
    # Every result in the CAS (none kept inline in Redis), where the play worker reads.
    # FIFO scheduling: the utility policy may hold the first batch of a kind it has never
    # measured for many seconds, which isolation does not depend on.
    app = await harness.app(inline_result_bytes=0, scheduler_policy="fifo")
    blobs = open_blob_store(harness.blob_url)

    def execute(item: Item) -> Any:
        return resolve_inputs(item.inputs, blobs)

    a = await harness.client(app, await harness.tenant("team-a"))
    b = await harness.client(app, await harness.tenant("team-b"))
    c = await harness.client(app, await harness.tenant("team-c"))
    await harness.worker(execute=execute)
    doc = {"kind": "data.template", "params": {"template": "{x}"}}
    made = await a.post(
        "/v1/operators", json={**doc, "inputs": {"records": [SECRET + "-1", SECRET + "-2"]}}
    )
    assert made.status_code == 201, made.text
    wf_a = made.json()["workflow_id"]
    status = (
        await a.get(f"/v1/workflows/{wf_a}/wait", params={"timeout": 20, "lineage": "true"})
    ).json()
    assert status["state"] == "done", status
    a_digests = [n["result_digest"] for n in status["nodes"]]
    a_digests += [r["result_digest"] for n in status["nodes"] for r in n["lineage"]]
    a_digests = sorted(set(a_digests))
    texts = [(await a.get(f"/v1/results/{d}")).text for d in a_digests]
    assert sum(SECRET in text for text in texts) == 2, texts
    loop = Loop(asyncio.get_running_loop())

    @settings(
        max_examples=40,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(shape=workflows(), pick=st.integers(0, len(a_digests) - 1))
    def probe(shape: dict[str, Any], pick: int) -> None:
        forbidden = a_digests[pick]
        unknown = "sha256:" + hashlib.sha256(uuid.uuid4().bytes).hexdigest()
        runs = []
        for digest in (forbidden, unknown):
            # B's own upload (as `flowmesh cas put` makes): a manifest naming the digest.
            own = blobs.put_bytes(build_manifest([digest])).digest
            granted = loop.run(_granted_manifest(c, digest))
            doc = _document(shape, digest, (own, granted))
            seen = loop.run(_observe(b, doc, [digest, own, granted]))
            assert SECRET not in seen, seen
            assert harness.blob_url.removeprefix("file://") not in seen, seen
            runs.append(seen)
        theirs, nobodys = (_masked(text) for text in runs)
        assert theirs == nobodys, (json.dumps(shape), forbidden, unknown)

    await asyncio.to_thread(probe)
