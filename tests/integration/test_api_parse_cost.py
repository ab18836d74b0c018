"""What a body costs the API to refuse: bounded before any work (docs/architecture.md).

Each hostile document (a 5000-digit number, a YAML alias bomb, 20,000 levels of nesting)
is answered with a clear 4xx in well under a second, in the documented error shape, and
leaves no key behind; a blob that is not JSON used as a list input is a 4xx or a clean
failure, never a 500.
"""

from __future__ import annotations

import json
import time

import pytest

from tests.integration.api_harness import Harness, sha256_digest

pytestmark = pytest.mark.timeout(30)

JSON = {"Content-Type": "application/json"}
YAML = {"Content-Type": "application/yaml"}
BIG = "9" * 5000


def _alias_bomb() -> str:
    lines = ['a: &a ["x","x","x","x","x","x","x","x","x"]']
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{name}: &{name} [{','.join(['*' + prev] * 9)}]")
    return "kind: embed\nmodel: mini\ninputs:\n  texts: [x]\nparams:\n  " + "\n  ".join(lines)


DEEP = 20_000
CASES = [
    ("json-big-int", f'{{"kind": "embed", "model": "mini", "params": {{"n": {BIG}}}, '
     '"inputs": {"texts": ["a"]}}', JSON, 400),
    ("yaml-big-int", f"kind: embed\nmodel: mini\nparams:\n  n: {BIG}\ninputs:\n  texts: [a]\n",
     YAML, 400),
    ("json-big-float", f'{{"kind": "embed", "model": "mini", "params": {{"t": 1.{BIG}}}, '
     '"inputs": {"texts": ["a"]}}', JSON, 400),
    ("yaml-alias-bomb", _alias_bomb(), YAML, 413),
    ("json-deep", '{"kind": "embed", "model": "mini", "params": {"p": ' + "[" * DEEP
     + "]" * DEEP + '}, "inputs": {"texts": ["a"]}}', JSON, 400),
    ("yaml-deep", "kind: embed\nmodel: mini\nparams:\n  p: " + "[" * DEEP + "]" * DEEP
     + "\ninputs:\n  texts: [a]\n", YAML, 400),
]  # fmt: skip


async def test_hostile_documents_are_refused_cheaply(harness: Harness) -> None:
    app = await harness.app(run_scheduler=False)
    client = await harness.client(app, await harness.tenant("team-a"))
    before = await harness.keys()
    for name, body, headers, status in CASES:
        started = time.monotonic()
        response = await client.post("/v1/operators", content=body, headers=headers)
        elapsed = time.monotonic() - started
        assert response.status_code == status, (name, response.text)
        error = response.json()["error"]
        assert set(error) >= {"type", "message"}, (name, error)
        assert elapsed < 1.0, (name, elapsed)
    assert await harness.keys() == before


async def test_a_blob_that_is_not_json_as_a_list_input_is_not_a_server_error(
    harness: Harness,
) -> None:
    app = await harness.app()
    await harness.worker()
    client = await harness.client(app, await harness.tenant("team-a"))
    for data in (b"\xff\xfe not text", b"plain text, not JSON", ("[" + BIG + "]").encode()):
        digest = sha256_digest(data)
        assert (await client.put(f"/v1/blobs/{digest}", content=data)).status_code == 201
        op = {"kind": "embed", "model": "mini", "inputs": {"texts": {"blob": digest}}}
        response = await client.post("/v1/operators", json=op)
        assert response.status_code < 500, response.text
        if response.status_code == 201:
            wf_id = response.json()["workflow_id"]
            waited = await client.get(f"/v1/workflows/{wf_id}/wait", params={"timeout": 10})
            assert waited.status_code == 200, waited.text
            assert waited.json()["state"] == "failed", waited.text
        else:
            assert 400 <= response.status_code < 500
            assert "message" in response.json()["error"]
            assert json.dumps(response.json())  # the documented shape, valid JSON
