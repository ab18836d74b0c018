"""The dashboard is served by the API app at /ui (docs/ui.md) and reveals nothing by itself.

The page and its assets need no token; every figure on it comes from /v1 with the user's
token, so the API's rules decide what a tenant sees. These tests check what the app serves;
they do not drive a browser.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

from flowmesh_core.ui import STATIC_DIR
from tests.integration.api_harness import Harness

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def store_url(redis_url: str) -> str:
    """The shared ``harness`` on the real Redis only (the store suites cover both stores)."""
    return redis_url


def _scripts() -> list[Path]:
    """The dashboard's own scripts (the vendored libraries are checked by hash instead)."""
    return sorted(STATIC_DIR.glob("*.js"))


def _vendored() -> list[tuple[str, str, str]]:
    """(file, licence file, sha256) per row of vendor/VENDOR.md's table."""
    rows = re.findall(
        r"^\| `([^`]+)` \|[^|]*\|[^|]*\|[^|]*\| `([^`]+)` \| `([0-9a-f]{64})` \|$",
        (STATIC_DIR / "vendor" / "VENDOR.md").read_text(),
        flags=re.MULTILINE,
    )
    return [(str(f), str(lic), str(h)) for f, lic, h in rows]


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
    assert sorted(assets) == [
        "static/app.js",
        "static/style.css",
        "static/vendor/cytoscape-dagre.min.js",
        "static/vendor/cytoscape.min.js",
    ]
    # The modules app.js imports, and theirs, are served too (as JavaScript: a module
    # served with another type does not run).
    imported = {
        f"static/{name}"
        for script in _scripts()
        for name in re.findall(r'from "\./([^"]+)"', script.read_text())
    }
    assert imported == {f"static/{p.name}" for p in _scripts()} - {"static/app.js"}
    for asset in sorted(set(assets) | imported):
        answer = await client.get(f"/ui/{asset}")
        assert answer.status_code == 200, asset
        assert answer.content == (STATIC_DIR / asset.removeprefix("static/")).read_bytes()
        if asset.endswith(".js"):
            assert "javascript" in answer.headers["content-type"], asset
    assert (await client.get("/ui/static/../__init__.py")).status_code == 404
    # The page is public; the data behind it is not.
    assert (await client.get("/v1/stats")).status_code == 401


def test_vendored_libraries_are_the_recorded_files_with_their_licences() -> None:
    rows = _vendored()
    assert [f for f, _, _ in rows] == ["cytoscape.min.js", "cytoscape-dagre.min.js"]
    vendor = STATIC_DIR / "vendor"
    for name, licence, digest in rows:
        assert hashlib.sha256((vendor / name).read_bytes()).hexdigest() == digest, name
        assert "Permission is hereby granted" in (vendor / licence).read_text(), licence
    assert "Permission is hereby granted" in (vendor / "dagre.LICENSE").read_text()
    shipped = {p.name for p in vendor.iterdir()}
    recorded = {f for f, _, _ in rows} | {lic for _, lic, _ in rows}
    assert shipped == recorded | {"VENDOR.md", "dagre.LICENSE"}


async def test_page_calls_only_v1_with_the_token_and_never_writes_html() -> None:
    scripts = {p.name: p.read_text() for p in _scripts()}
    paths: set[str] = set()
    for name, script in scripts.items():
        # API values are written as text: an item's name or error cannot become markup.
        for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write"):
            assert sink not in script, (name, sink)
        assert "localStorage" not in script, name
        assert "fetch(" not in script or name == "common.js", name  # one way to the API
        paths |= set(re.findall(r'api\("(/[^"]*)"', script))
    assert paths >= {"/v1/stats", "/v1/pool", "/v1/workflows", "/v1/workers"}
    assert all(p.startswith("/v1/") for p in paths), paths
    assert "sessionStorage" in scripts["common.js"]


async def test_not_in_the_openapi_schema(harness: Harness) -> None:
    app = await harness.app(run_scheduler=False)
    client = await harness.client(app)
    schema = (await client.get("/openapi.json")).json()
    assert not [p for p in schema["paths"] if p.startswith("/ui")]


async def test_the_status_names_the_edges_the_graph_draws_each_once(harness: Harness) -> None:
    app = await harness.app(run_scheduler=False)
    client = await harness.client(app, await harness.tenant("alice"))
    workflow = {
        "name": "edges",
        "nodes": {
            "a": {"kind": "embed", "model": "mini", "inputs": {"texts": ["x"]}},
            "b": {"kind": "embed", "model": "mini", "inputs": {"texts": ["y"]}},
            "c": {
                "kind": "data.top_k",
                "params": {"k": 1},
                "inputs": {"items": {"ref": "b"}, "scores": {"ref": "b"}},
            },
            "d": {
                "kind": "data.top_k",
                "params": {"k": 1},
                "inputs": {"items": {"ref": "b"}, "scores": {"ref": "a"}},
            },
        },
    }
    submitted = await client.post("/v1/workflows", json=workflow)
    assert submitted.status_code == 201, submitted.text
    status = (await client.get(f"/v1/workflows/{submitted.json()['workflow_id']}")).json()
    assert {n["node"]: n["depends_on"] for n in status["nodes"]} == {
        "a": [],
        "b": [],
        "c": ["b"],
        "d": ["b", "a"],
    }
