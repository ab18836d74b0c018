"""Shared fixtures: a real Redis (never skipped), the embedded store, a real S3 API.

The Redis server is ``$TEST_REDIS_URL`` (default ``redis://127.0.0.1:6379/0``). The
embedded store (``memory://``) is the bundled Valkey server of one state directory made
for the test session (``FLOWMESH_STATE_DIR``, which subprocesses inherit); it stops when
the session ends. The name
has no ``FLOWMESH_`` prefix on purpose: settings reject ``FLOWMESH_*`` variables that
name no setting, so a test variable under that prefix would break every settings load.
Every test gets its own random key prefix and deletes what it wrote, so tests can share
one server with each other and with anything else on it. A missing Redis fails the tests
that need it, with a message that says how to start one; it never skips them.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis

from flowmesh_core.store import Store
from tests.integration.api_harness import Harness

pytest_plugins = ["tests.s3_server"]

_SESSION_STATE = tempfile.mkdtemp(prefix="fmtest-state-")
os.environ["FLOWMESH_STATE_DIR"] = _SESSION_STATE

DEFAULT_TEST_REDIS = "redis://127.0.0.1:6379/0"
TEST_REDIS_ENV = "TEST_REDIS_URL"


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The real Redis server's URL, checked to answer."""
    url = os.environ.get(TEST_REDIS_ENV, DEFAULT_TEST_REDIS)
    client = redis.Redis.from_url(url, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.exceptions.RedisError as exc:
        pytest.fail(
            f"Redis at {url} does not answer ({exc}). These tests need a real Redis: start "
            f"one (.ci/run shows how) or set {TEST_REDIS_ENV}.",
            pytrace=False,
        )
    finally:
        client.close()
    return url


@pytest.fixture
def key_prefix() -> str:
    """A key prefix no other test uses."""
    return f"fmtest-{uuid.uuid4().hex[:12]}"


@pytest.fixture(params=["redis", "embedded"])
def store_url(request: pytest.FixtureRequest) -> str:
    """Each store test runs twice: on the real Redis and on the embedded store (the
    bundled Valkey server; tests keep apart by key prefix, as on the real one)."""
    if request.param == "redis":
        url: str = request.getfixturevalue("redis_url")
        return url
    return "memory://"


@pytest.fixture
async def store(store_url: str, key_prefix: str) -> AsyncIterator[Store]:
    """A store under a fresh prefix; everything it wrote is deleted afterwards."""
    store = Store.open(store_url, key_prefix)
    yield store
    await store.purge()
    await store.aclose()


@pytest.fixture
async def harness(
    store: Store, store_url: str, key_prefix: str, tmp_path: Path
) -> AsyncIterator[Harness]:
    """The API harness (``tests/integration/api_harness.py``) on the test's store, prefix
    and blob directory; what it started is stopped at the end."""
    async with contextlib.AsyncExitStack() as stack:
        yield Harness(store, store_url, key_prefix, f"file://{tmp_path / 'blobs'}", stack)
