"""A model name reaches the workers' filesystem only under the model roots, and aliases
of one model dedup (docs/isolation.md, "Models")."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.integration.api_harness import Harness


@pytest.fixture
def store_url(redis_url: str) -> str:
    """The shared ``harness`` on the real Redis only."""
    return redis_url


def _embed(model: str, texts: list[str]) -> dict[str, Any]:
    return {"kind": "embed", "model": model, "inputs": {"texts": texts}}


@pytest.mark.redis
async def test_paths_outside_the_roots_are_unknown_models(harness: Harness, tmp_path: Any) -> None:
    root = tmp_path / "models"
    (root / "mini").mkdir(parents=True)
    app = await harness.app(run_scheduler=False, model_roots=[str(root)])
    client = await harness.client(app, await harness.tenant("team-b"))
    before = await harness.keys()
    answers = set()
    checkpoint = f"{root}/ckpt-{'cd' * 32}"  # where a worker unpacks a checkpoint
    for name in [
        "/etc",
        "../../etc",
        str(tmp_path),
        "/no/such/dir",
        f"{root}/../../etc",
        checkpoint,
        f"{root}/.hidden",
    ]:
        response = await client.post("/v1/operators", json=_embed(name, ["x"]))
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert error["type"] == "UnknownModelError"
        message = error["message"]
        assert "Unrecognized" not in message
        assert "sentence-transformers/all-MiniLM-L6-v2" in message
        answers.add(re.sub(r"unknown model '[^']*'", "", message))
    (answer,) = answers  # existing or not, the same words
    assert str(tmp_path) not in answer
    assert await harness.keys() == before  # refused: nothing stored
    accepted = await client.post("/v1/operators", json=_embed(f"{root}/mini", ["x"]))
    assert accepted.status_code == 201, accepted.text


@pytest.mark.redis
async def test_aliases_of_one_model_dedup_across_tenants(harness: Harness) -> None:
    app = await harness.app(run_scheduler=False, dedup_domain="global")
    a = await harness.client(app, await harness.tenant("team-a"))
    b = await harness.client(app, await harness.tenant("team-b"))
    first = await a.post("/v1/operators", json=_embed("all-MiniLM-L6-v2", ["p", "q"]))
    second = await b.post(
        "/v1/operators", json=_embed("sentence-transformers/all-MiniLM-L6-v2", ["p", "q"])
    )
    assert first.status_code == second.status_code == 201, (first.text, second.text)
    (plan_a,) = first.json()["nodes"]
    (plan_b,) = second.json()["nodes"]
    assert plan_a["op_key"] == plan_b["op_key"]
    assert plan_a["created"] == 2
    assert plan_b["joined"] == 2
    assert plan_b["created"] == 0
