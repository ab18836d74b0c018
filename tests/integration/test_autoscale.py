"""The autoscaler in the product (docs/autoscaling.md): what it reads from the store, the
recommendation `flowmesh autoscale` prints and `/v1/autoscale` serves to KEDA."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from flowmesh_core.autoscale import PoolSpec
from flowmesh_core.autoscale.observe import observe_and_recommend
from flowmesh_core.control.throughput import Observation, ThroughputModel
from flowmesh_core.keys import expand
from flowmesh_core.models import Operator, WorkerProfile
from flowmesh_core.registry import Registry
from flowmesh_core.settings import load_settings
from flowmesh_core.store import Store
from tests.contract.test_store_scheduling import SIGNATURE, enqueue, requester
from tests.integration.api_harness import Harness

pytestmark = pytest.mark.timeout(30)

FLOWMESH = str(Path(sys.executable).with_name("flowmesh"))

POOLS = {
    "cpu": {"usd_per_hour": 0.1, "min_replicas": 1, "max_replicas": 20},
    "gpu-l4": {"accelerator": "L4", "usd_per_hour": 0.8, "max_replicas": 4},
}


@pytest.fixture
def store_url(redis_url: str) -> str:
    return redis_url


@pytest.fixture
async def harness(
    store: Store, store_url: str, key_prefix: str, tmp_path: Path
) -> AsyncIterator[Harness]:
    async with contextlib.AsyncExitStack() as stack:
        yield Harness(store, store_url, key_prefix, f"file://{tmp_path / 'blobs'}", stack)


async def _worker(store: Store, worker_id: str, pool: str | None) -> None:
    labels = {"pool": pool} if pool else {}
    profile = WorkerProfile(
        worker_id=worker_id,
        accelerator="cpu",
        memory_bytes=1 << 30,
        price_per_hour=0.1,
        watts=10,
        labels=labels,
    )
    await store.register_worker(profile)
    await store.heartbeat(worker_id)


async def test_backlog_raises_the_recommendation_and_it_falls_back_to_min(
    store: Store, store_url: str, key_prefix: str
) -> None:
    settings = load_settings(
        redis_url=store_url, key_prefix=key_prefix, pools=POOLS, autoscale_drain_s=0.1
    )
    await _worker(store, "w-cpu", "cpu")
    await _worker(store, "w-none", None)
    idle = await observe_and_recommend(store, settings, time.time())
    assert idle.decisions["cpu"].desired == 1
    assert idle.decisions["gpu-l4"].desired == 0
    assert idle.unpooled_workers == 1
    assert idle.views["cpu"].replicas == 1

    await enqueue(store, 400)
    busy = await observe_and_recommend(store, settings, time.time())
    assert busy.waiting_items == 400
    assert sum(v.backlog_s for v in busy.views.values()) > 0
    # the work is placed on the cheaper pool per item first; its one ready replica drains
    # it long before a new one could boot and load (60 s + the learned load): none bought
    seconds = busy.views["cpu"].backlog_s
    lead = settings.pools["cpu"].boot_s + busy.views["cpu"].load_s
    assert busy.views["cpu"].load_s > 0
    assert seconds < lead
    assert busy.decisions["cpu"].desired == 1, busy.to_json()
    assert f"lead {lead:.0f}s" in busy.decisions["cpu"].reason

    # the same backlog once that replica is gone (its heartbeat too old): the pool is
    # asked to grow, never to more replicas than batches to give them
    later = time.time() + settings.worker_ttl_s + 5
    cold = await observe_and_recommend(store, settings, later)
    batches = cold.views["cpu"].batches
    assert batches == 7  # 400 items, 64 a batch
    wanted = min(20, batches, max(1, -int(-seconds // 0.1)))
    assert cold.decisions["cpu"].desired == wanted, cold.to_json()
    assert cold.decisions["cpu"].desired > 1, cold.to_json()
    assert cold.decisions["gpu-l4"].desired == 0

    # a cheap pool that cannot drain it in time spills the rest onto the pricier one
    small = {**POOLS, "cpu": {**POOLS["cpu"], "max_replicas": 2}}
    spill = await observe_and_recommend(
        store,
        settings.model_copy(
            update={"pools": {n: PoolSpec.model_validate(v) for n, v in small.items()}}
        ),
        later,
    )
    assert spill.decisions["cpu"].desired == 2
    assert spill.decisions["gpu-l4"].desired > 0, spill.to_json()

    await store.redis.delete(store.keys.ready(SIGNATURE), store.keys.ready_signatures())
    after = await observe_and_recommend(store, settings, time.time())
    assert {n: d.desired for n, d in after.decisions.items()} == {"cpu": 1, "gpu-l4": 0}


async def test_a_training_run_weighs_its_examples_in_the_backlog(
    store: Store, store_url: str, key_prefix: str
) -> None:
    # The throughput model knows training per example (docs/training.md); a waiting run
    # is that many examples of work, on the learned model's own key.
    settings = load_settings(redis_url=store_url, key_prefix=key_prefix, pools=POOLS)
    op = Operator(
        kind="train.sft",
        model="flowmesh/tiny-gpt",
        params={"epochs": 3},
        inputs={"dataset": [{"prompt": f"q{i}", "completion": "a"} for i in range(8)]},
    )
    (run,) = expand(op, Registry.default(), max_inline_bytes=1 << 20).items
    await store.join_many("global", [(requester(0), run)])
    learned = ThroughputModel()
    learned.learn(Observation("cpu", "train.sft", "flowmesh/tiny-gpt", 1, 0.5))  # s / example
    await store.save_json(store.keys.throughput(), json.dumps(learned.to_dict()))

    rec = await observe_and_recommend(store, settings, time.time())
    assert rec.views["cpu"].backlog_s == pytest.approx(24 * 0.5)  # 8 examples x 3 epochs


async def test_dead_workers_are_not_counted(store: Store, store_url: str, key_prefix: str) -> None:
    settings = load_settings(redis_url=store_url, key_prefix=key_prefix, pools=POOLS)
    await _worker(store, "w-cpu", "cpu")
    later = time.time() + settings.worker_ttl_s + 5
    rec = await observe_and_recommend(store, settings, later)
    assert rec.views["cpu"].replicas == 0


async def test_endpoint_serves_keda_shape_and_gauges_to_admins_only(harness: Harness) -> None:
    app = await harness.app(run_scheduler=False, pools=POOLS)
    admin = await harness.client(app, await harness.tenant("ops", admin=True))
    plain = await harness.client(app, await harness.tenant("team-a"))
    await enqueue(harness.store, 50)

    body = (await admin.get("/v1/autoscale")).json()
    assert set(body["pools"]) == {"cpu", "gpu-l4"}
    assert body["pools"]["cpu"]["desired"] >= 1
    assert body["waiting_items"] == 50
    text = (await admin.get("/v1/autoscale/metrics")).text
    assert 'flowmesh_pool_desired_replicas{pool="cpu"}' in text
    assert 'flowmesh_pool_backlog_seconds{pool="gpu-l4"}' in text

    for path in ("/v1/autoscale", "/v1/autoscale/metrics"):
        response = await plain.get(path)
        assert response.status_code == 403, response.text
        assert "admin token" in response.text


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("FLOWMESH_")}
    return subprocess.run(
        [FLOWMESH, *args],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.timeout(120)  # three CLI processes on a loaded 2-core machine
def test_cli_prints_the_recommendation_and_mistakes_are_one_line(
    redis_url: str, key_prefix: str, tmp_path: Path
) -> None:
    config = tmp_path / "flowmesh.toml"
    config.write_text(
        "[flowmesh]\n"
        f'redis_url = "{redis_url}"\n'
        f'key_prefix = "{key_prefix}"\n'
        "[flowmesh.pools.cpu]\nmin_replicas = 1\n"
        '[flowmesh.pools.gpu-l4]\naccelerator = "L4"\nusd_per_hour = 0.8\n'
    )
    env = {"FLOWMESH_CONFIG": str(config)}
    shown = _cli("autoscale", "--json", env=env)
    assert shown.returncode == 0, shown.stderr
    pools = json.loads(shown.stdout)["pools"]
    assert {n: p["desired"] for n, p in pools.items()} == {"cpu": 1, "gpu-l4": 0}
    none = _cli("autoscale", env={"FLOWMESH_REDIS_URL": redis_url})
    assert none.returncode != 0
    assert "[flowmesh.pools.NAME]" in none.stderr
    assert "Traceback" not in none.stderr
    unknown = _cli("worker", "--pool", "h100", env=env)
    assert unknown.returncode == 2
    assert "'h100' is not a pool in settings (cpu, gpu-l4)" in unknown.stderr
    assert "Traceback" not in unknown.stderr


async def test_the_next_stage_raises_its_pool_before_its_items_are_ready(
    harness: Harness,
) -> None:
    # docs/autoscaling.md, "The next wave": generate has started (its items wait in the
    # ready pool); score, which reads it, has no item yet. The learned rates put generate
    # on the cpu pool and score on the L4 pool, so only the next wave can grow the L4 pool.
    pools = {
        "cpu": {"usd_per_hour": 0.1, "max_replicas": 20},
        "gpu-l4": {"accelerator": "L4", "usd_per_hour": 0.8, "max_replicas": 4},
    }
    app = await harness.app(run_scheduler=False, pools=pools, autoscale_drain_s=1.0)
    admin = await harness.client(app, await harness.tenant("ops", admin=True))
    team = await harness.client(app, await harness.tenant("team-a"))
    learned = ThroughputModel()
    model = "flowmesh/tiny-gpt"
    for acc, gen_s, score_s in (("cpu", 0.01, 50.0), ("L4", 5.0, 0.5)):
        learned.learn(Observation(acc, "llm.generate", model, 1, gen_s))
        learned.learn(Observation(acc, "score", model, 1, score_s))
    await harness.store.save_json(harness.store.keys.throughput(), json.dumps(learned.to_dict()))
    before = (await admin.get("/v1/autoscale")).json()["pools"]
    assert before["gpu-l4"]["desired"] == 0

    workflow = {
        "nodes": {
            "generate": {
                "kind": "llm.generate",
                "model": model,
                "inputs": {"prompts": [f"p{i}" for i in range(8)]},
            },
            "score": {"kind": "score", "model": model, "inputs": {"pairs": {"ref": "generate"}}},
        }
    }
    submitted = await team.post("/v1/workflows", json=workflow)
    assert submitted.status_code == 201, submitted.text
    wf_id = submitted.json()["workflow_id"]
    # the poll reads the graph summary stored at submission, never the spec
    head = harness.store.keys.workflow(wf_id)
    spec = await harness.store.redis.hget(head, "spec")
    await harness.store.redis.hset(head, "spec", "not read")
    body = (await admin.get("/v1/autoscale")).json()
    await harness.store.redis.hset(head, "spec", spec)
    assert body["waiting_items"] == 8  # generate's items only: score has none yet
    l4 = body["pools"]["gpu-l4"]
    assert (l4["backlog_s"], l4["ahead_batches"]) == (0.0, 1), body
    assert l4["ahead_s"] == pytest.approx(8 * 0.5, rel=0.3), body
    assert l4["desired"] > 0, body
    assert "next wave" in l4["reason"]
    assert body["pools"]["cpu"]["ahead_s"] == 0.0
    gauges = (await admin.get("/v1/autoscale/metrics")).text.splitlines()
    (line,) = [g for g in gauges if g.startswith('flowmesh_pool_ahead_seconds{pool="gpu-l4"}')]
    assert float(line.split()[-1]) == pytest.approx(l4["ahead_s"], abs=1e-3)

    # cancelled: out of the index, and the L4 pool is no longer asked for
    assert (await team.delete(f"/v1/workflows/{wf_id}")).status_code == 200
    assert await harness.store.active_workflows(10) == []
    after = (await admin.get("/v1/autoscale")).json()["pools"]
    assert after["gpu-l4"]["desired"] == 0
