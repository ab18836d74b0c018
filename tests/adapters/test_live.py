"""The live fixture itself: a tenant's operator runs on the real worker over HTTP."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from flowmesh_core.client import AsyncClient, Client, python_operator
from flowmesh_core.errors import NotFoundError
from tests.adapters.conftest import Live
from tests.worker import ops


def test_an_operator_runs_on_the_live_fabric(live: Live) -> None:
    _name, token = live.tenant("smoke")
    with Client(live.url, token=token) as client:
        submitted = client.submit_operator(python_operator(ops.add, {"a": 2, "b": 3}))
        status = client.wait(submitted.workflow_id, timeout=30)
        assert status.state == "done", live.logs()
        assert client.result_json(status.nodes[0].result_digest) == 5


def _template(records: list[dict[str, str]]) -> dict[str, object]:
    return {
        "kind": "data.template",
        "params": {"template": "{text}!"},
        "inputs": {"records": records},
    }


def test_result_value_resolves_a_split_nodes_manifest(live: Live) -> None:
    _name, token = live.tenant("values")
    words = [f"w{i}-{uuid.uuid4().hex[:6]}" for i in range(3)]
    with Client(live.url, token=token) as client:
        split = client.submit_operator(_template([{"text": w} for w in words]))
        plain = client.submit_operator(python_operator(ops.echo, {"x": {"n": words[0]}}))
        done = [client.wait(s.workflow_id, timeout=30) for s in (split, plain)]
        assert [d.state for d in done] == ["done", "done"], live.logs()
        split_digest, plain_digest = (d.nodes[0].result_digest for d in done)
        # The raw result is the manifest; the value is the items' values, in order.
        assert set(client.result_json(split_digest)) == {"manifest"}
        assert client.result_value(split_digest) == [f"{w}!" for w in words]
        assert client.result_value(plain_digest) == {"n": words[0]}


def test_async_result_value_and_a_foreign_digest(live: Live) -> None:
    _owner, owner = live.tenant("values-owner")
    _other, other = live.tenant("values-other")

    async def read() -> str:
        async with AsyncClient(live.url, token=owner) as client:
            split = await client.submit_operator(_template([{"text": "x"}, {"text": "y"}]))
            status = await client.wait(split.workflow_id, timeout=30)
            assert status.state == "done", live.logs()
            digest = status.nodes[0].result_digest
            assert await client.result_value(digest) == ["x!", "y!"]
        async with AsyncClient(live.url, token=other) as stranger:
            with pytest.raises(NotFoundError):
                await stranger.result_value(digest)
        return digest

    digest = asyncio.run(read())
    with Client(live.url, token=other) as stranger, pytest.raises(NotFoundError):
        stranger.result_value(digest)
