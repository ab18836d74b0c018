"""What the fuzzers found, each pinned as a plain test (the fuzz runs may stop finding
them when generation changes)."""

from __future__ import annotations

import pytest

from tests.integration.api_harness import Harness


@pytest.fixture
def store_url(redis_url: str) -> str:
    """The shared ``harness`` on the real Redis."""
    return redis_url


@pytest.mark.redis
@pytest.mark.parametrize("digests", [[""], ["sha256:xyz"], ["md5:" + "0" * 32]])
async def test_results_read_malformed_digest_is_400(harness: Harness, digests: list[str]) -> None:
    """A malformed digest in POST /v1/results/read answered 500 (pydantic's error escaped)."""
    app = await harness.app(run_scheduler=False)
    client = await harness.client(app, await harness.tenant("fuzzer"))
    response = await client.post("/v1/results/read", json={"digests": digests})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "InvalidDigestError"
    assert "digests.0" in error["message"]
    assert "sha256:" in error["message"]
