"""Small results travel inline: kept in Redis with their action-cache entry, no blob file,
no fsync; large ones still go to the CAS. Either way a tenant reads them the same way,
one at a time or many in one request, verified, and only its own.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from flowmesh_core.api import create_app
from flowmesh_core.client import python_operator
from flowmesh_core.control import NodeState
from flowmesh_core.errors import CorruptBlobError, NotFoundError
from flowmesh_core.manifest import read_manifest
from tests.integration.conftest import Fabric
from tests.worker import ops
from tests.worker.conftest import Workers
from tests.worker.test_worker_loop import run


def blob_files(fabric: Fabric) -> set[str]:
    root = Path(fabric.blob_url.removeprefix("file://"))
    files = (p.relative_to(root) for p in root.rglob("*") if p.is_file())
    return {f.parent.name + f.name for f in files if len(f.parts) == 2 and f.parts[0] != "tmp"}


async def test_small_results_and_manifests_stay_in_redis_and_read_back(
    fabric: Fabric, workers: Workers
) -> None:
    plane = await fabric.plane()
    tenant = await fabric.tenant("team-a")
    await workers.start("w-1")
    records = [{"topic": t} for t in ("tides", "rust", "bees")]
    status = await run(
        plane,
        tenant,
        {
            "prompts": {
                "kind": "data.template",
                "params": {"template": "Write about {topic}."},
                "inputs": {"records": records},
            },
            "unique": {"kind": "data.dedup", "inputs": {"items": {"ref": "prompts"}}},
        },
    )
    assert status.state == NodeState.DONE, status
    prompts, unique = status.nodes
    assert prompts.result_digest is not None
    assert unique.result_digest is not None
    items = [r.result_digest for r in prompts.lineage]
    every = [prompts.result_digest, unique.result_digest, *(d for d in items if d)]
    assert set(await plane.store.inline_results(every)) == set(every)
    assert not any(d.removeprefix("sha256:") in blob_files(fabric) for d in every)

    found = await plane.read_results(tenant, every)
    assert read_manifest(found[prompts.result_digest]) == items
    assert json.loads(found[unique.result_digest]) == [
        "Write about tides.",
        "Write about rust.",
        "Write about bees.",
    ]
    info, chunks = await plane.open_result(tenant, unique.result_digest)
    assert b"".join(chunks) == found[unique.result_digest]
    assert info.size == len(found[unique.result_digest])


async def test_a_large_result_goes_to_the_cas_and_reads_the_same(
    fabric: Fabric, workers: Workers
) -> None:
    plane = await fabric.plane()
    tenant = await fabric.tenant("team-a")
    await workers.start("w-1")
    big = "x" * (plane.settings.inline_result_bytes + 1)
    submitted = await plane.submit_operator(tenant, python_operator(ops.echo, {"x": big}))
    status = await plane.wait(tenant, submitted.workflow_id, 20)
    digest = status.nodes[0].result_digest
    assert status.state is NodeState.DONE
    assert digest is not None
    assert await plane.store.inline_results([digest]) == {}
    assert digest.removeprefix("sha256:") in blob_files(fabric)
    assert json.loads(await plane.results.read(digest)) == big


async def test_many_results_in_one_request_only_the_tenants_own(
    fabric: Fabric, workers: Workers
) -> None:
    plane = await fabric.plane()
    mine, theirs = await fabric.tenant("team-a"), await fabric.tenant("team-b")
    await workers.start("w-1")
    digests = {}
    for tenant, x in ((mine, "mine"), (theirs, "theirs")):
        submitted = await plane.submit_operator(tenant, python_operator(ops.echo, {"x": x}))
        status = await plane.wait(tenant, submitted.workflow_id, 20)
        digests[x] = status.nodes[0].result_digest

    app = create_app(plane, run_scheduler=False)
    token = await fabric_token(fabric, "team-c")
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://asgi") as client:
        headers = {"Authorization": f"Bearer {token}"}
        refused = await client.post(
            "/v1/results/read", json={"digests": [digests["theirs"]]}, headers=headers
        )
        unknown = await client.post(
            "/v1/results/read", json={"digests": ["sha256:" + "0" * 64]}, headers=headers
        )
    assert refused.status_code == unknown.status_code == 404
    assert refused.json()["error"].keys() == unknown.json()["error"].keys()

    assert await plane.read_results(mine, [digests["mine"]]) == {
        digests["mine"]: json.dumps("mine").encode()
    }
    with pytest.raises(NotFoundError):
        await plane.read_results(mine, [digests["mine"], digests["theirs"]])


async def test_inline_bytes_that_do_not_match_their_digest_are_corruption(
    fabric: Fabric, workers: Workers
) -> None:
    plane = await fabric.plane()
    tenant = await fabric.tenant("team-a")
    await workers.start("w-1")
    submitted = await plane.submit_operator(tenant, python_operator(ops.echo, {"x": "true"}))
    digest = (await plane.wait(tenant, submitted.workflow_id, 20)).nodes[0].result_digest
    assert digest is not None
    await plane.store.redis.set(plane.store.keys.inline(digest), '"tampered"')
    with pytest.raises(CorruptBlobError):
        await plane.read_results(tenant, [digest])


async def fabric_token(fabric: Fabric, name: str) -> str:
    from flowmesh_core.control import create_tenant
    from flowmesh_core.store import Store

    store = Store.open(fabric.url, fabric.prefix)
    try:
        _, token = await create_tenant(store, name)
    finally:
        await store.aclose()
    return token
