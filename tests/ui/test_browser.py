"""The dashboard in Debian's headless chromium (docs/ui.md), against a real app over HTTP.

One app, served by uvicorn on a free port, and one play worker started once the page has
seen the workflow wait. Any JavaScript console error or page error fails the test.
Screenshots go to tests/ui/artifacts/ (docs/images/ui-workflow.png is workflow-done.png).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import re
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from playwright.async_api import Locator, Page, async_playwright, expect

from flowmesh_core.store import Store
from tests.integration.api_harness import Harness

pytestmark = pytest.mark.timeout(120)

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
NOT_DONE = re.compile("waiting|pending")
ARTIFACTS = Path(__file__).parent / "artifacts"
POOLS = {"cpu": {"accelerator": "cpu", "usd_per_hour": 1.0, "watts": 100, "min_replicas": 1}}
WORKFLOW: dict[str, Any] = {
    "name": "embed-and-pick",
    "nodes": {
        "embed": {"kind": "embed", "model": "mini", "inputs": {"texts": ["cat", "dog", "owl"]}},
        # cat and dog join embed's items (same op keys, in flight): one new item, emu.
        "embed_more": {
            "kind": "embed",
            "model": "mini",
            "inputs": {"texts": ["cat", "dog", "emu"]},
        },
        "pick": {
            "kind": "data.top_k",
            "params": {"k": 1},
            "inputs": {"items": {"ref": "embed"}, "scores": [0.1, 0.9, 0.5]},
        },
        "pick_more": {
            "kind": "data.top_k",
            "params": {"k": 2},
            "inputs": {"items": {"ref": "embed_more"}, "scores": [0.3, 0.2, 0.7]},
        },
    },
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
async def served(
    redis_url: str, key_prefix: str, tmp_path: Path
) -> AsyncIterator[tuple[Harness, str]]:
    store = Store.open(redis_url, key_prefix)
    try:
        async with contextlib.AsyncExitStack() as stack:
            harness = Harness(store, redis_url, key_prefix, f"file://{tmp_path / 'blobs'}", stack)
            app = await harness.app(pools=POOLS)
            port = _free_port()
            config = uvicorn.Config(
                app, host="127.0.0.1", port=port, lifespan="off", log_level="warning"
            )
            server = uvicorn.Server(config)
            task = asyncio.create_task(server.serve())
            for _ in range(200):  # up to 10 s
                if server.started:
                    break
                await asyncio.sleep(0.05)
            else:
                raise RuntimeError("uvicorn did not start")
            try:
                yield harness, f"http://127.0.0.1:{port}"
            finally:
                server.should_exit = True
                await task
    finally:
        await store.purge()
        await store.aclose()


def _watch_errors(page: Page, errors: list[str]) -> None:
    page.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))
    page.on(
        "console",
        lambda msg: errors.append(f"console: {msg.text}") if msg.type == "error" else None,
    )


async def _login(page: Page, base: str, token: str) -> None:
    await page.goto(f"{base}/ui/")
    await page.fill("#token", token)
    await page.click("#login-form button")
    await expect(page.locator("#overview")).to_be_visible()


async def _click_graph_node(page: Page, node: str) -> None:
    """Click where cytoscape drew ``node`` on the graph's canvas (a real mouse click)."""
    spot = await page.evaluate(
        "(id) => window.flowmesh.graph.getElementById(id).renderedPosition()", node
    )
    box = await page.locator("#graph").bounding_box()
    assert box is not None
    await page.mouse.click(box["x"] + spot["x"], box["y"] + spot["y"])


async def _cell(table: Locator, label: str) -> Locator:
    """The value cell of the two-column table row whose first cell is ``label``."""
    return table.locator("tr").filter(has=table.page.get_by_role("cell", name=label, exact=True))


async def test_login_submit_watch_lineage_batch_pool_overview_and_a_second_tenant(
    served: tuple[Harness, str],
) -> None:
    harness, base = served
    ARTIFACTS.mkdir(exist_ok=True)
    print(f"screenshots in {ARTIFACTS}")
    alice = await harness.tenant("alice")
    bob = await harness.tenant("bob")
    errors: list[str] = []
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1280, "height": 800})
            _watch_errors(page, errors)
            await _login(page, base, alice)
            await page.goto(f"{base}/ui/#workflows")
            await page.fill("#spec", json.dumps(WORKFLOW))
            await page.click("#submit-form button")
            state = page.locator("#wf-state")
            await expect(state).to_have_attribute("data-state", NOT_DONE, timeout=10_000)
            wf_id = page.url.rsplit("/", 1)[1]
            pick = page.locator('tr.node[data-node="pick"]')
            await expect(pick).to_have_attribute("data-state", "waiting")
            graph = page.locator("#graph")
            await expect(graph).to_have_attribute("data-states", re.compile("pick=waiting"))
            drawn = await page.evaluate(
                "() => [window.flowmesh.graph.nodes().map((n) => n.id()).sort(), window.flowmesh"
                ".graph.edges().map((e) => e.source().id() + '>' + e.target().id())]"
            )
            assert drawn == [
                ["embed", "embed_more", "pick", "pick_more"],
                ["embed>pick", "embed_more>pick_more"],
            ]
            await page.screenshot(path=ARTIFACTS / "workflow-waiting.png")

            await page.goto(f"{base}/ui/#pool")  # nothing runs yet: embed's items wait
            groups = page.locator("#pool-groups tr")
            await expect(groups).to_have_count(2)  # header + the embed group
            await expect(page.locator("#pool-groups")).to_contain_text("alice: 4")
            await page.screenshot(path=ARTIFACTS / "pool.png")

            await page.goto(f"{base}/ui/#workflow/{wf_id}")
            await expect(pick).to_have_attribute("data-state", "waiting")
            await harness.worker()  # work starts only now: the page saw it wait
            await expect(state).to_have_attribute("data-state", "done", timeout=30_000)
            await expect(pick).to_have_attribute("data-state", "done")
            await expect(graph).to_have_attribute(
                "data-states", "embed=done embed_more=done pick=done pick_more=done"
            )
            # cat and dog are asked twice: whichever embed node started second joined them.
            more = page.locator("tr.node", has_text="executed 1 · hit 0 · joined 2")
            await expect(more).to_have_count(1)
            second = await more.get_attribute("data-node")
            assert second in ("embed", "embed_more")
            await _click_graph_node(page, second)
            await expect(page.locator("#lineage-title")).to_have_text(f"Lineage of {second}")
            rows = page.locator("#lineage tr")
            await expect(rows).to_have_count(4)  # header + three items
            await expect(rows.filter(has_text="joined")).to_have_count(2)
            await expect(more).to_have_class(re.compile("selected"))
            digest = await rows.nth(1).locator("td").nth(8).locator("a").get_attribute("title")
            assert digest is not None
            digest = digest.split(" ")[0]
            async with page.expect_download() as downloading:
                await rows.nth(1).locator("td").nth(8).locator("a").click()
            saved = await (await downloading.value).path()
            assert hashlib.sha256(saved.read_bytes()).hexdigest() == digest.split(":")[1]
            await page.screenshot(path=ARTIFACTS / "workflow-done.png", full_page=True)

            await page.locator("#lineage a[href^='#batch/']").first.click()
            await expect(page.locator("#batch")).to_be_visible()
            facts = page.locator("#batch-facts")
            await expect(await _cell(facts, "worker")).to_contain_text("play-1")
            await expect(await _cell(facts, "items in the batch")).to_contain_text("4")
            terms = page.locator("#batch-terms")
            for term in ("policy", "utility", "rate", "model_warm", "seconds"):
                await expect(terms.locator("tr", has_text=term).first).to_be_visible()
            await expect(page.locator("#batch-items tr")).to_have_count(7)  # header + 6 asked
            batch_url = page.url
            await page.screenshot(path=ARTIFACTS / "batch.png", full_page=True)

            await page.goto(f"{base}/ui/#overview")
            client = await harness.client(await harness.app(run_scheduler=False), alice)
            stats = (await client.get("/v1/stats")).json()
            totals = page.locator("#totals")
            await expect(totals).to_contain_text("requested")
            pairs = [("requested", "requested"), ("executed", "executed")]
            pairs += [("cache hits", "cache_hits"), ("joins", "joins")]
            for label, key in pairs:
                cell = (await _cell(totals, label)).locator("td").nth(1)
                await expect(cell).to_have_text(str(stats[key]))
            tenants = page.locator("#tenants tr")
            await expect(tenants).to_have_count(2)  # header + alice's own row
            await expect(page.locator("#charts figure")).to_have_count(6)
            await expect(page.locator("#overview")).to_have_attribute(
                "data-samples", re.compile("^[2-9]|^[1-9][0-9]"), timeout=10_000
            )
            await page.screenshot(path=ARTIFACTS / "overview.png", full_page=True)

            other = await browser.new_page()
            _watch_errors(other, errors)
            await _login(other, base, bob)
            await expect(other.locator("#tenants")).not_to_contain_text("alice")
            await other.goto(f"{base}/ui/#workflows")
            await expect(other.locator("#known li")).to_have_count(0)
            await other.goto(f"{base}/ui/#workflow/{wf_id}")
            await expect(other.locator("#wf-title")).to_have_text("No such workflow")
            await expect(other.locator("body")).not_to_contain_text("embed-and-pick")
            await other.goto(batch_url)
            await expect(other.locator("#batch-title")).to_have_text("No such batch")
            await other.goto(f"{base}/ui/#pool")
            await expect(other.locator("#pool-empty")).to_contain_text("Nothing of yours")
            await expect(other.locator("body")).not_to_contain_text("alice")
            await other.screenshot(path=ARTIFACTS / "second-tenant.png")

            ops = await browser.new_page()  # an admin sees every requester and every term
            _watch_errors(ops, errors)
            await _login(ops, base, await harness.tenant("ops", admin=True))
            await ops.goto(batch_url)
            await expect(ops.locator("#batch-items tr")).to_have_count(7)
            await expect(ops.locator("#batch-items")).to_contain_text("alice")
            for term in ("ready", "fairness", "free_workers"):
                await expect(ops.locator("#batch-terms tr", has_text=term).first).to_be_visible()
            await ops.goto(f"{base}/ui/#fleet")
            await expect(ops.locator("#workers")).to_contain_text("play-1")
            cpu = ops.locator("#pools tr", has_text="cpu")
            await expect(cpu).to_have_count(1)
            await expect(cpu.locator("td").nth(5)).to_have_text(re.compile(r"^[1-9]"))  # desired
            await ops.screenshot(path=ARTIFACTS / "fleet.png", full_page=True)
        finally:
            await browser.close()
    # The 404 of a workflow the tenant may not see is logged by chromium as a resource error.
    real = [e for e in errors if "404" not in e]
    assert real == [], real
