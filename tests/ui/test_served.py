"""The dashboard is served by the API app at /ui (docs/ui.md) and reveals nothing by itself.

The page and its assets need no token; every figure on it comes from /v1 with the user's
token, so the API's rules decide what a tenant sees. These tests check what the app serves;
they do not drive a browser.
"""

from __future__ import annotations

import re

import pytest

from flowmesh_core.ui import STATIC_DIR
from tests.integration.api_harness import Harness

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def store_url(redis_url: str) -> str:
    """The shared ``harness`` on the real Redis only (the store suites cover both stores)."""
    return redis_url


async def test_page_and_assets_are_served_without_a_token(harness: Harness) -> None:
    app = await harness.app(run_scheduler=False)
    client = await harness.client(app)
    redirect = await client.get("/ui")
    assert redirect.status_code == 307
    assert redirect.headers["location"] == "/ui/"
    page = await client.get("/ui/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assets = re.findall(r'(?:src|href)="(static/[^"]+)"', page.text)
    assert sorted(assets) == ["static/app.js", "static/style.css"]
    for asset in assets:
        answer = await client.get(f"/ui/{asset}")
        assert answer.status_code == 200, asset
        assert answer.content == (STATIC_DIR / asset.removeprefix("static/")).read_bytes()
    assert (await client.get("/ui/static/../__init__.py")).status_code == 404
    # The page is public; the data behind it is not.
    assert (await client.get("/v1/stats")).status_code == 401


async def test_page_calls_only_v1_with_the_token_and_never_writes_html() -> None:
    script = (STATIC_DIR / "app.js").read_text()
    # API values are written as text: an item's name or error cannot become markup.
    assert "innerHTML" not in script
    assert "outerHTML" not in script
    assert "insertAdjacentHTML" not in script
    assert "document.write" not in script
    paths = set(re.findall(r'api\("(/[^"]*)"', script))
    assert paths
    assert all(p.startswith("/v1/") for p in paths), paths
    assert "sessionStorage" in script
    assert "localStorage" not in script


async def test_not_in_the_openapi_schema(harness: Harness) -> None:
    app = await harness.app(run_scheduler=False)
    client = await harness.client(app)
    schema = (await client.get("/openapi.json")).json()
    assert not [p for p in schema["paths"] if p.startswith("/ui")]
