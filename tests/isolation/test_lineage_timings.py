"""A tenant's lineage does not reveal how many other items shared its batch
(docs/isolation.md, "Lineage timings"): a record spans its item's share of the batch, so
``(finished_at - started_at) / worker_seconds`` is 1 whatever the batch held."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.integration.api_harness import Harness


@pytest.fixture
def store_url(redis_url: str) -> str:
    """The shared ``harness`` on the real Redis only."""
    return redis_url


def _template(records: list[str]) -> dict[str, Any]:
    return {"kind": "data.template", "params": {"template": "{x}"}, "inputs": {"records": records}}


async def _lineage(client: httpx.AsyncClient, wf_id: str) -> list[dict[str, Any]]:
    done = await client.get(f"/v1/workflows/{wf_id}/wait", params={"timeout": 20})
    assert done.json()["state"] == "done", done.text
    records: list[dict[str, Any]] = (await client.get(f"/v1/workflows/{wf_id}/lineage")).json()
    return records


@pytest.mark.redis
@pytest.mark.parametrize("domain", ["tenant", "global"])
async def test_ratio_of_span_to_worker_seconds_is_one(harness: Harness, domain: str) -> None:
    app = await harness.app(dedup_domain=domain)
    a = await harness.client(app, await harness.tenant("team-a"))
    b = await harness.client(app, await harness.tenant("team-b"))
    # A's six items and B's one share a kind and params: with no worker yet they wait,
    # and the worker started afterwards runs them as one batch of seven under the global
    # domain; under the tenant domain each tenant's items run in batches of their own.
    wf_a = (await a.post("/v1/operators", json=_template([f"a{i}" for i in range(6)]))).json()
    wf_b = (await b.post("/v1/operators", json=_template(["b0"]))).json()
    worker = await harness.worker(delay_s=0.2)
    mine = await _lineage(b, wf_b["workflow_id"])
    await _lineage(a, wf_a["workflow_id"])
    sizes = sorted(len(batch.items) for batch in worker.batches)
    assert sizes == ([1, 6] if domain == "tenant" else [7])
    (record,) = mine
    assert record["worker_seconds"] > 0
    span = record["finished_at"] - record["started_at"]
    assert span / record["worker_seconds"] == pytest.approx(1.0, rel=1e-3)
    assert record["started_at"] >= record["requested_at"]
