"""What a worker reads for an item's inputs (flowmesh_worker.inputs): typed references only.

Items travel as the stored spec (``Item`` JSON) inside an assignment; the unit tests take
that path, from the operator the tenant wrote to the values the executor gets, and count
the blobs read. The last tests run it end to end: one tenant names another's result
digest (digests are not secrets) and must get back only what it wrote.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from flowmesh_core.blobs import BlobStore, open_blob_store
from flowmesh_core.client import python_operator
from flowmesh_core.control import ControlPlane, NodeState, Tenant
from flowmesh_core.errors import InvalidInputError, NotFoundError
from flowmesh_core.hashing import canonical_json
from flowmesh_core.keys import expand
from flowmesh_core.manifest import build_manifest, parse_manifest
from flowmesh_core.models import Item, ItemBlob, ItemLiteral, ItemManifest, Operator
from flowmesh_core.protocol import Assignment
from flowmesh_core.registry import Registry
from flowmesh_worker.inputs import resolve_inputs
from tests.integration.conftest import Fabric
from tests.worker import ops
from tests.worker.conftest import Workers

REGISTRY = Registry.default()
PYTHON = {"kind": "python", "version": "h", "params": {"function": "tests.worker.ops:echo"}}


class CountingStore:
    """A file blob store that records every digest read from it."""

    def __init__(self, root: Path) -> None:
        self.store = open_blob_store(f"file://{root}")
        self.reads: list[str] = []
        original = self.store.iter_chunks

        def iter_chunks(digest: str, *args: Any, **kw: Any) -> Any:
            self.reads.append(digest)
            return original(digest, *args, **kw)

        self.store.iter_chunks = iter_chunks  # type: ignore[method-assign]

    def put(self, value: Any) -> str:
        return self.store.put_bytes(canonical_json(value)).digest


@pytest.fixture
def blobs(tmp_path: Path) -> CountingStore:
    return CountingStore(tmp_path / "blobs")


def on_the_wire(item: Item) -> Item:
    """The item as a worker gets it: its stored spec, embedded in an assignment entry."""
    # claim_batch.lua writes the stored spec verbatim into the entry, as here.
    head = json.dumps({"domain": "global", "op_key": item.op_key, "attempt": 1})
    entry = head[:-1] + ',"spec":' + item.model_dump_json() + "}"
    fields = {
        "batch_id": "b1",
        "signature": item.signature,
        "meta": json.dumps({"kind": item.kind, "version": item.version}),
        "items": f"[{entry}]",
    }
    [assigned] = Assignment.from_stream(fields).items
    return assigned.spec


def resolved(op: dict[str, Any], store: BlobStore, **kw: Any) -> list[dict[str, Any]]:
    expansion = expand(Operator.model_validate(op), REGISTRY, max_inline_bytes=1 << 20, **kw)
    return [resolve_inputs(on_the_wire(item).inputs, store) for item in expansion.items]


def test_a_literal_shaped_like_a_blob_reference_is_passed_through_unread(
    blobs: CountingStore,
) -> None:
    secret = blobs.put({"tenant": "A", "result": "private"})
    lookalike = {"blob": secret}
    [inputs] = resolved({**PYTHON, "inputs": {"x": {"value": lookalike}}}, blobs.store)
    assert inputs == {"x": lookalike}
    assert blobs.reads == []


def test_list_elements_shaped_like_blob_references_are_passed_through_unread(
    blobs: CountingStore,
) -> None:
    secret = blobs.put("tenant A's private result")
    op = {
        "kind": "data.template",
        "params": {"template": "{blob}"},
        "inputs": {"records": [{"blob": secret}, {"blob": secret, "n": 1}]},
    }
    assert resolved(op, blobs.store) == [
        {"records": {"blob": secret}},
        {"records": {"blob": secret, "n": 1}},
    ]
    by_blob = {**op, "inputs": {"records": {"blob": blobs.put(op["inputs"]["records"])}}}
    loads = resolved(by_blob, blobs.store, load_blob=lambda d: json.loads(blobs.store.get_bytes(d)))
    assert loads == [{"records": {"blob": secret}}, {"records": {"blob": secret, "n": 1}}]
    assert secret not in blobs.reads


def test_a_blob_input_is_its_value(blobs: CountingStore) -> None:
    digest = blobs.put(["a", "b"])
    assert resolve_inputs({"x": ItemBlob(digest=digest)}, blobs.store) == {"x": ["a", "b"]}
    assert blobs.reads == [digest]


def test_a_manifest_input_is_the_list_of_its_blobs(blobs: CountingStore) -> None:
    items = [blobs.put("alpha"), blobs.put({"v": [1]})]
    manifest = blobs.store.put_bytes(build_manifest(items)).digest
    got = resolve_inputs({"x": ItemManifest(digest=manifest)}, blobs.store)
    assert got == {"x": ["alpha", {"v": [1]}]}
    assert blobs.reads == [manifest, *items]


def test_a_manifest_inside_a_plain_blob_is_not_followed(blobs: CountingStore) -> None:
    secret = blobs.put("tenant A's private result")
    forged = blobs.store.put_bytes(build_manifest([secret])).digest
    got = resolve_inputs({"x": ItemBlob(digest=forged)}, blobs.store)
    assert got == {"x": {"manifest": [secret]}}
    assert blobs.reads == [forged]


def test_a_manifest_input_that_is_no_manifest_is_an_error(blobs: CountingStore) -> None:
    digest = blobs.put(["not", "a", "manifest"])
    with pytest.raises(InvalidInputError, match="not a manifest"):
        resolve_inputs({"x": ItemManifest(digest=digest)}, blobs.store)


@pytest.mark.parametrize("typed", [ItemBlob, ItemManifest])
def test_a_missing_blob_names_its_digest_and_not_the_store(
    blobs: CountingStore, tmp_path: Path, typed: type[ItemBlob] | type[ItemManifest]
) -> None:
    """The error reaches the tenant's lineage: no server directory or bucket in it."""
    missing = "sha256:" + "ab" * 32
    with pytest.raises(NotFoundError) as caught:
        resolve_inputs({"x": typed(digest=missing)}, blobs.store)
    assert missing in str(caught.value)
    assert str(tmp_path) not in str(caught.value)
    listed = blobs.put({"manifest": [missing]})
    with pytest.raises(NotFoundError) as caught:
        resolve_inputs({"x": ItemManifest(digest=listed)}, blobs.store)
    assert missing in str(caught.value)
    assert str(tmp_path) not in str(caught.value)


def test_an_untyped_value_is_never_read_as_a_reference(blobs: CountingStore) -> None:
    secret = blobs.put("tenant A's private result")
    with pytest.raises(AssertionError):
        resolve_inputs({"x": {"blob": secret}}, blobs.store)  # type: ignore[dict-item]
    assert blobs.reads == []


def test_a_literal_of_any_shape_comes_back_as_written(blobs: CountingStore) -> None:
    values: list[Any] = [None, 0, "x", [], {}, {"manifest": []}, {"blob": "sha256:nope"}]
    typed = {f"v{i}": ItemLiteral(value=v) for i, v in enumerate(values)}
    assert resolve_inputs(typed, blobs.store) == {f"v{i}": v for i, v in enumerate(values)}
    assert blobs.reads == []


# --- end to end: one tenant names another's result -----------------------------------------


async def read(plane: ControlPlane, tenant: Tenant, digest: str) -> Any:
    """A result as ``tenant`` reads it, a split result gathered into one list."""
    _, chunks = await plane.open_result(tenant, digest)
    value = json.loads(b"".join(chunks))
    items = parse_manifest(value)
    return value if items is None else [await read(plane, tenant, d) for d in items]


async def finished(plane: ControlPlane, tenant: Tenant, op: Operator) -> Any:
    """Run ``op`` for ``tenant``; its result value."""
    submitted = await plane.submit_operator(tenant, op)
    status = await plane.wait(tenant, submitted.workflow_id, 20)
    assert status.state is NodeState.DONE, status
    digest = status.nodes[0].result_digest
    assert digest is not None
    return await read(plane, tenant, digest)


async def private_result(plane: ControlPlane, owner: Tenant) -> str:
    """The digest of a result only ``owner``'s lineage holds."""
    op = python_operator(ops.echo, {"x": "team-a's private result"})
    submitted = await plane.submit_operator(owner, op)
    status = await plane.wait(owner, submitted.workflow_id, 20)
    digest = status.nodes[0].result_digest
    assert digest is not None
    return digest


async def test_a_tenant_naming_another_tenants_result_in_literals_gets_its_literals(
    fabric: Fabric, workers: Workers
) -> None:
    plane = await fabric.plane()
    owner, other = await fabric.tenant("team-a"), await fabric.tenant("team-b")
    await workers.start("w-1")
    secret = await private_result(plane, owner)

    lookalike = python_operator(ops.echo, {"x": {"value": {"blob": secret}}})
    assert await finished(plane, other, lookalike) == {"blob": secret}
    records = Operator(
        kind="data.template",
        params={"template": "{blob}"},
        inputs={"records": [{"blob": secret}]},
    )
    assert await finished(plane, other, records) == [secret]
    with pytest.raises(NotFoundError):
        await plane.submit_operator(other, python_operator(ops.echo, {"x": {"blob": secret}}))


async def test_a_manifest_uploaded_by_a_tenant_cannot_list_another_tenants_result(
    fabric: Fabric, workers: Workers
) -> None:
    plane = await fabric.plane()
    owner, other = await fabric.tenant("team-a"), await fabric.tenant("team-b")
    await workers.start("w-1")
    secret = await private_result(plane, owner)
    manifest = build_manifest([secret])
    forged = plane.blobs.put_bytes(manifest).digest
    # B uploaded it, so B may read the manifest itself; the digest it lists is A's.
    await plane.store.record_upload(other.name, forged, len(manifest), "application/json")
    dedup = Operator(kind="data.dedup", inputs={"items": {"blob": forged}})
    with pytest.raises(NotFoundError, match=secret):
        await plane.submit_operator(other, dedup)
