"""A newer server must not break an older SDK: the client accepts answer fields it does
not know. The server here is the real app; an ASGI layer in front of it adds a field to
every JSON object of every answer, as a later version of the API would."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from flowmesh_core.client import AsyncClient
from tests.integration.api_harness import BASE_URL, Harness

pytestmark = pytest.mark.timeout(30)


def _with_new_fields(value: Any) -> Any:
    if isinstance(value, dict):
        return {**{k: _with_new_fields(v) for k, v in value.items()}, "added_later": {"x": 1}}
    if isinstance(value, list):
        return [_with_new_fields(v) for v in value]
    return value


class NewerServer:
    """The real app, its JSON answers carrying one more field in every object."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        start: dict[str, Any] = {}
        body = bytearray()

        async def buffered(message: Message) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
                return
            body.extend(message.get("body", b""))
            if message.get("more_body"):
                return
            headers = [(k, v) for k, v in start["headers"] if k != b"content-length"]
            data = bytes(body)
            if (dict(headers).get(b"content-type") or b"").startswith(b"application/json"):
                data = json.dumps(_with_new_fields(json.loads(data))).encode()
            headers.append((b"content-length", str(len(data)).encode()))
            await send({**start, "headers": headers})
            await send({"type": "http.response.body", "body": data})

        await self.app(scope, receive, buffered)


async def test_the_sdk_reads_answers_with_fields_it_does_not_know(harness: Harness) -> None:
    app = await harness.app()
    await harness.worker()
    token = await harness.tenant("team-a")
    transport = httpx.ASGITransport(app=NewerServer(app))
    async with AsyncClient(BASE_URL, token, transport=transport) as client:
        submitted = await client.submit_operator(
            {"kind": "embed", "model": "mini", "inputs": {"texts": ["a", "b"]}}
        )
        status = await client.wait(submitted.workflow_id, timeout=20)
        assert status.state == "done"
        assert (await client.status(submitted.workflow_id)).nodes[0].lineage
        assert len(await client.lineage(submitted.workflow_id)) == 2
        assert (await client.stats()).requested == 2
        digest = status.nodes[0].result_digest
        assert digest is not None
        assert await client.results_json([digest])
