"""Schemathesis against the served OpenAPI spec, as a tenant, on the real Redis.

Every operation the app serves in ``/openapi.json`` is a test of its own (a route added
later is fuzzed without touching this file), with cases that fit the schema and cases
that do not. For each case: no 5xx; an error answers in the documented shape
(``{"error": {"type", "message"}}``, docs/architecture.md); and a rejected request (4xx)
leaves every Redis key under the store's prefix as it was, values included (a DUMP of
each key before and after). Generation is derandomized with a bounded number of
examples, so CI sees the same cases every run and the module stays well within a minute.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from flowmesh_core.api import create_app
from flowmesh_core.control import ControlPlane
from flowmesh_core.settings import load_settings
from tests.fuzz.bridge import Loop
from tests.integration.api_harness import Harness

MAX_EXAMPLES = 20
"""Cases per operation and generation mode: about 15 operations x 2 modes x 20 cases."""


def _served_spec() -> dict[str, Any]:
    """The spec the app serves (building an app opens no connection)."""
    settings_ = load_settings(redis_url="redis://127.0.0.1:6379/0", key_prefix="fuzz-spec")
    spec: dict[str, Any] = create_app(ControlPlane(settings_)).openapi()
    return spec


SCHEMA = schemathesis.openapi.from_dict(_served_spec())
OPERATIONS = [result.ok() for result in SCHEMA.get_all_operations()]


@pytest.fixture
def store_url(redis_url: str) -> str:
    """The shared ``harness`` on the real Redis."""
    return redis_url


async def _snapshot(harness: Harness) -> dict[str, bytes | None]:
    """Every key under the prefix with its serialized value."""
    redis = harness.store.redis
    keys = sorted(await redis.keys(f"{harness.prefix}:*"))
    return {str(key): await redis.dump(key) for key in keys}


def _error_shape(response: httpx.Response) -> str | None:
    """What is wrong with an error answer's body, or None if it has the documented shape."""
    try:
        body = response.json()
    except ValueError:
        return f"error body is not JSON: {response.text[:200]!r}"
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict) or set(error) != {"type", "message"}:
        return f"error body is not {{error: {{type, message}}}}: {body!r}"
    if not isinstance(error["type"], str) or not error["type"]:
        return f"error type is not a name: {body!r}"
    if not isinstance(error["message"], str) or not error["message"].strip():
        return f"error message is empty: {body!r}"
    if "Traceback" in error["message"]:
        return f"error message holds a traceback: {body!r}"
    return None


def _send(loop: Loop, client: httpx.AsyncClient, kwargs: dict[str, Any]) -> httpx.Response:
    request: dict[str, Any] = {
        "method": kwargs["method"],
        "url": kwargs["url"],
        "headers": kwargs.get("headers") or {},
        "params": kwargs.get("params") or None,
    }
    if "json" in kwargs:
        request["content"] = json.dumps(kwargs["json"]).encode()
    elif kwargs.get("data") is not None:
        data = kwargs["data"]
        request["content"] = data.encode() if isinstance(data, str) else data
    return loop.run(client.request(**request))


def _check_case(
    loop: Loop, harness: Harness, client: httpx.AsyncClient, token: str
) -> Callable[[Any], None]:
    def check(case: Any) -> None:
        kwargs = case.as_transport_kwargs(
            base_url=str(client.base_url), headers={"Authorization": f"Bearer {token}"}
        )
        before = loop.run(_snapshot(harness))
        response = _send(loop, client, kwargs)
        where = f"{kwargs['method']} {kwargs['url']} params={kwargs.get('params')!r}"
        body = kwargs.get("json", kwargs.get("data"))
        assert response.status_code < 500, (
            f"{where} body={body!r}: {response.status_code} {response.text[:500]}"
        )
        if response.status_code >= 400 and kwargs["method"].upper() == "HEAD":
            # HTTP gives a HEAD answer no body: the status is the whole error.
            assert not response.content, f"{where}: a HEAD answer with a body"
        elif response.status_code >= 400:
            problem = _error_shape(response)
            assert problem is None, f"{where} body={body!r}: {response.status_code} {problem}"
            after = loop.run(_snapshot(harness))
            changed = sorted(
                k for k in before.keys() | after.keys() if before.get(k) != after.get(k)
            )
            assert not changed, (
                f"{where} body={body!r} was refused ({response.status_code}) but changed {changed}"
            )

    return check


@pytest.mark.redis
@pytest.mark.timeout(120)
@pytest.mark.parametrize("operation", OPERATIONS, ids=lambda op: op.label)
async def test_operation_fuzz(harness: Harness, operation: Any) -> None:
    app = await harness.app(run_scheduler=False)
    token = await harness.tenant("fuzzer")
    client = await harness.client(app)
    served = (await client.get("/openapi.json")).json()
    assert served == SCHEMA.raw_schema, "the app serves another spec than the one fuzzed"
    loop = Loop(asyncio.get_running_loop())
    check = _check_case(loop, harness, client, token)

    def run() -> None:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            strategy = operation.as_strategy(generation_mode=mode)
            fuzz = settings(
                max_examples=MAX_EXAMPLES,
                derandomize=True,
                database=None,
                deadline=None,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
            )(given(case=strategy)(check))
            try:
                fuzz()
            except Unsatisfiable:
                # Nothing to negate: the operation takes no parameters and no body.
                if mode is GenerationMode.POSITIVE:
                    raise

    await asyncio.to_thread(run)
