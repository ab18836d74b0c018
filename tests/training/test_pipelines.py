"""Training through the fabric (docs/training.md): a control plane on the real Redis, a
real worker (``build_worker``'s loop, on its own connection) and a file CAS.

- generate -> score -> top-k -> train.sft, then generation with the checkpoint as model;
- generate 2 samples -> score -> data.pairs -> train.dpo;
- two tenants submitting the same run: it executes once and both hold the checkpoint;
- a tenant naming a checkpoint outside its lineage is refused exactly like an unknown one.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from flowmesh_core.checkpoint import read_tree
from flowmesh_core.control import ControlPlane, NodeState, Tenant
from flowmesh_core.errors import NotFoundError
from flowmesh_core.hashing import digest_bytes
from flowmesh_core.models import Satisfaction
from flowmesh_core.models.api import WorkflowStatus
from flowmesh_core.models.parse import parse_workflow
from flowmesh_worker.weights import TINY_GPT, TINY_REWARD
from tests.integration.conftest import Fabric
from tests.worker.conftest import Workers

# The worker imports torch, transformers, TRL and PEFT on its first training batch.
pytestmark = pytest.mark.timeout(300)

EXAMPLES = Path(__file__).parents[2] / "examples" / "workflows"
PROMPTS = [f"question {i} :" for i in range(4)]
FAST = {"epochs": 2, "learning_rate": 1e-2, "batch_size": 4, "seed": 7}
WAIT_S = 240


async def run(plane: ControlPlane, tenant: Tenant, nodes: dict[str, Any]) -> WorkflowStatus:
    submitted = await plane.submit_workflow(tenant, parse_workflow({"nodes": nodes}))
    status = await plane.wait(tenant, submitted.workflow_id, WAIT_S, with_lineage=True)
    assert status.state == NodeState.DONE, [(n.node, n.state, n.error) for n in status.nodes]
    return status


def node(status: WorkflowStatus, name: str) -> Any:
    return next(n for n in status.nodes if n.node == name)


async def reported_held(plane: ControlPlane, worker_id: str, digest: str) -> bool:
    """Whether ``worker_id``'s heartbeat reports ``digest`` on its disk within 10 s."""
    for _ in range(100):
        (record,) = [r for r in await plane.store.workers() if r.profile.worker_id == worker_id]
        if digest in record.held:
            return True
        await asyncio.sleep(0.1)
    return False


async def test_generate_score_top_k_sft_then_generate_with_the_checkpoint(
    fabric: Fabric, workers: Workers
) -> None:
    plane = await fabric.plane()
    tenant = await fabric.tenant("team-a")
    await workers.start("w-1")
    status = await run(
        plane,
        tenant,
        {
            "gen": {
                "kind": "llm.generate",
                "model": TINY_GPT,
                "params": {"max_new_tokens": 6},
                "inputs": {"prompts": PROMPTS},
            },
            "score": {"kind": "score", "model": TINY_REWARD, "inputs": {"pairs": {"ref": "gen"}}},
            "top": {
                "kind": "data.top_k",
                "params": {"k": 2},
                "inputs": {"items": {"ref": "gen"}, "scores": {"ref": "score"}},
            },
            "sft": {
                "kind": "train.sft",
                "model": TINY_GPT,
                "params": FAST,
                "inputs": {"dataset": {"ref": "top"}},
            },
            # The checkpoint, as the model of a later node of the same workflow.
            "use": {
                "kind": "llm.generate",
                "model": {"ref": "sft"},
                "params": {"max_new_tokens": 4},
                "inputs": {"prompts": ["question 8 :"]},
            },
        },
    )
    checkpoint = node(status, "sft").result_digest
    (used,) = node(status, "use").lineage
    assert json.loads(await plane.results.read(used.result_digest))["tokens"] >= 1
    tree = read_tree(await plane.results.read(checkpoint))
    assert tree.format == "full"
    assert tree.metrics["examples"] == 2 * FAST["epochs"]  # the top 2, twice
    assert tree.metrics["nll_after"] < tree.metrics["nll_before"]
    (record,) = node(status, "sft").lineage
    assert record.satisfied_by == Satisfaction.EXECUTED
    assert record.worker == "w-1"

    # In another workflow, by its digest.
    later = await run(
        plane,
        tenant,
        {
            "gen": {
                "kind": "llm.generate",
                "model": checkpoint,
                "params": {"max_new_tokens": 4},
                "inputs": {"prompts": ["question 9 :"]},
            }
        },
    )
    (item,) = node(later, "gen").lineage
    out = json.loads(await plane.results.read(item.result_digest))
    assert out["prompt"] == "question 9 :"
    assert out["tokens"] >= 1

    # The worker that used it keeps it on disk and says so (the scheduler's locality
    # term); the size of its files was indexed when the tree was stored.
    assert await reported_held(plane, "w-1", checkpoint)
    sizes = [(await asyncio.to_thread(plane.blobs.stat, d)).size for d in tree.digests]
    indexed = await plane.store.redis.hget(plane.store.keys.blob(checkpoint), "tree_bytes")
    assert int(indexed) == sum(sizes)


async def test_two_samples_score_pairs_dpo(fabric: Fabric, workers: Workers) -> None:
    plane = await fabric.plane()
    tenant = await fabric.tenant("team-a")
    await workers.start("w-1")
    status = await run(
        plane,
        tenant,
        {
            "gen": {
                "kind": "llm.generate",
                "model": TINY_GPT,
                "params": {"max_new_tokens": 6, "temperature": 1.0, "n": 2, "seed": 3},
                "inputs": {"prompts": PROMPTS},
            },
            "score": {"kind": "score", "model": TINY_REWARD, "inputs": {"pairs": {"ref": "gen"}}},
            "pairs": {
                "kind": "data.pairs",
                "inputs": {"samples": {"ref": "gen"}, "scores": {"ref": "score"}},
            },
            "dpo": {
                "kind": "train.dpo",
                "model": TINY_GPT,
                "params": {**FAST, "learning_rate": 5e-3},
                "inputs": {"dataset": {"ref": "pairs"}},
            },
        },
    )
    pairs = json.loads(await plane.results.read(node(status, "pairs").result_digest))
    assert pairs, "sampled completions scored equal for every prompt"
    assert all(p["chosen"] != p["rejected"] and p["margin"] > 0 for p in pairs)
    tree = read_tree(await plane.results.read(node(status, "dpo").result_digest))
    assert tree.metrics["examples"] == len(pairs) * FAST["epochs"]
    assert tree.metrics["margin_after"] > tree.metrics["margin_before"]


SAME_RUN = {
    "sft": {
        "kind": "train.sft",
        "model": TINY_GPT,
        "params": FAST,
        "inputs": {"dataset": [{"prompt": p, "completion": " blue ."} for p in PROMPTS]},
    }
}


async def test_two_tenants_share_one_training_run_and_others_are_refused(
    fabric: Fabric, workers: Workers
) -> None:
    plane = await fabric.plane()
    team_a, team_b = await fabric.tenant("team-a"), await fabric.tenant("team-b")
    # Both ask before any worker exists: the second joins the first's pending run.
    submitted = [
        await plane.submit_workflow(t, parse_workflow({"nodes": SAME_RUN}))
        for t in (team_a, team_b)
    ]
    await workers.start("w-1")
    a, b = await asyncio.gather(
        *(
            plane.wait(t, s.workflow_id, WAIT_S, with_lineage=True)
            for t, s in zip((team_a, team_b), submitted, strict=True)
        )
    )
    (ra,), (rb,) = node(a, "sft").lineage, node(b, "sft").lineage
    assert ra.result_digest is not None
    assert ra.result_digest == rb.result_digest
    assert sorted([ra.satisfied_by, rb.satisfied_by]) == sorted(
        [Satisfaction.EXECUTED, Satisfaction.JOINED]
    )
    checkpoint = ra.result_digest

    # Both may use the checkpoint as a model; a third tenant may not, and cannot tell
    # it from a digest that names nothing.
    use = {"kind": "llm.generate", "params": {"max_new_tokens": 2}, "inputs": {"prompts": ["q"]}}
    for tenant in (team_a, team_b):
        await run(plane, tenant, {"gen": {**use, "model": checkpoint}})
    team_c = await fabric.tenant("team-c")
    unknown = "sha256:" + "0" * 64
    answers = []
    for digest in (checkpoint, unknown):
        with pytest.raises(NotFoundError) as refused:
            await plane.submit_workflow(
                team_c, parse_workflow({"nodes": {"gen": {**use, "model": digest}}})
            )
        answers.append(str(refused.value).replace(digest, "<digest>"))
    assert answers[0] == answers[1]
    # Its files are covered by its rights: readable by both tenants that hold it, and
    # answered to a third exactly like a digest that names nothing.
    tree = read_tree(await plane.results.read(checkpoint))
    for tenant in (team_a, team_b):
        for digest in tree.digests:
            info, chunks = await plane.blob_access.open(tenant, digest)
            assert digest_bytes(b"".join(chunks)) == digest == info.digest
    some_file = tree.digests[0]
    dedup = {"kind": "data.dedup"}
    refusals = []
    for digest in (some_file, unknown):
        with pytest.raises(NotFoundError) as refused:
            await plane.blob_access.open(team_c, digest)
        refusals.append(str(refused.value).replace(digest, "<digest>"))
        with pytest.raises(NotFoundError) as refused:
            await plane.submit_workflow(
                team_c,
                parse_workflow({"nodes": {"n": {**dedup, "inputs": {"items": {"blob": digest}}}}}),
            )
        refusals.append(str(refused.value).replace(digest, "<digest>"))
    assert refusals[:2] == refusals[2:]
    # Training on it is refused the same way.
    with pytest.raises(NotFoundError, match="no blob"):
        await plane.submit_workflow(
            team_c,
            parse_workflow({"nodes": {"sft": {**SAME_RUN["sft"], "model": checkpoint}}}),
        )


async def test_a_model_ref_to_a_node_that_is_no_training_fails_clearly(
    fabric: Fabric, workers: Workers
) -> None:
    plane = await fabric.plane()
    tenant = await fabric.tenant("team-a")
    await workers.start("w-1")
    nodes = {
        "prompts": {
            "kind": "data.template",
            "params": {"template": "say {x}"},
            "inputs": {"records": [{"x": "hi"}]},
        },
        "dedup": {"kind": "data.dedup", "inputs": {"items": {"ref": "prompts"}}},
        "gen": {"kind": "llm.generate", "model": {"ref": "dedup"}, "inputs": {"prompts": ["q"]}},
    }
    submitted = await plane.submit_workflow(tenant, parse_workflow({"nodes": nodes}))
    status = await plane.wait(tenant, submitted.workflow_id, 60)
    assert status.state == NodeState.FAILED
    error = node(status, "gen").error
    assert "not a checkpoint" in error, error


@pytest.mark.parametrize("example", ["sft-pipeline.yaml", "dpo-pipeline.yaml"])
async def test_the_example_pipelines_run(fabric: Fabric, workers: Workers, example: str) -> None:
    plane = await fabric.plane()
    tenant = await fabric.tenant("team-a")
    await workers.start("w-1")
    spec = yaml.safe_load((EXAMPLES / example).read_text())
    status = await run(plane, tenant, spec["nodes"])
    last = status.nodes[-1]
    assert last.result_digest is not None
    if last.node == "dpo":
        assert read_tree(await plane.results.read(last.result_digest)).format == "full"


async def test_a_running_training_shows_its_progress_in_workflow_status(
    fabric: Fabric, workers: Workers
) -> None:
    plane = await fabric.plane()
    tenant = await fabric.tenant("team-a")
    await workers.start("w-1")
    rows = [{"prompt": f"q{i} :", "completion": " blue ."} for i in range(8)]
    nodes = {
        "sft": {
            "kind": "train.sft",
            "model": TINY_GPT,
            "params": {"epochs": 8, "batch_size": 1, "seed": 5},
            "inputs": {"dataset": rows},
        }
    }
    submitted = await plane.submit_workflow(tenant, parse_workflow({"nodes": nodes}))
    seen: list[dict[str, Any]] = []
    for _ in range(int(WAIT_S / 0.1)):
        status = await plane.status(tenant, submitted.workflow_id, with_lineage=False)
        (sft,) = status.nodes
        # A cold worker first reports its model load (phase loading, then running).
        if sft.progress is not None and "step" in sft.progress:
            seen.append(sft.progress)
        if status.state in (NodeState.DONE, NodeState.FAILED) or len(seen) >= 3:
            break
        await asyncio.sleep(0.1)
    assert seen, "no progress was ever shown while the run went on"
    assert all(p["steps"] == 64 and 0 < p["step"] <= 64 for p in seen)
    assert all(isinstance(p["loss"], float) and p["eta_s"] >= 0 for p in seen)
    assert {p["worker"] for p in seen} == {"w-1"}
    assert sft.state is NodeState.RUNNING
    done = await plane.wait(tenant, submitted.workflow_id, WAIT_S)
    assert done.state == NodeState.DONE
    assert done.nodes[0].progress is None  # only a running item shows progress
