"""The next wave from a workflow's graph (docs/autoscaling.md, "The next wave"): which
pending nodes come next, how many items they will have, and how they group."""

from __future__ import annotations

from flowmesh_core.autoscale.wave import Coming, next_wave, wave_groups, waves
from flowmesh_core.models import Workflow
from flowmesh_core.registry import Registry

KINDS = Registry.default()
GEN = {"kind": "llm.generate", "model": "hf:gen", "params": {"n": 2}}


def _chain() -> Workflow:
    return Workflow.model_validate(
        {
            "nodes": {
                "generate": {**GEN, "inputs": {"prompts": ["a", "b", "c"]}},
                "pairs": {"kind": "data.template", "inputs": {"records": {"ref": "generate"}}},
                "score": {
                    "kind": "score",
                    "model": "hf:rm",
                    "inputs": {"pairs": {"ref": "pairs"}},
                },
                "sft": {
                    "kind": "train.sft",
                    "model": "hf:base",
                    "params": {"epochs": 3},
                    "inputs": {"dataset": {"ref": "generate"}},
                },
                "embed": {
                    "kind": "embed",
                    "model": "hf:emb",
                    "inputs": {"texts": {"ref": "score"}},
                },
            }
        }
    )


def test_the_nodes_reading_a_running_node_are_the_next_wave_with_its_items() -> None:
    states = {
        "generate": "running",
        "pairs": "waiting",
        "score": "waiting",
        "sft": "waiting",
        "embed": "waiting",
    }
    wave = next_wave(_chain(), states, {"generate": 6}, KINDS)
    # pairs splits its records: the 6 generations; sft runs whole, weighing 6 x 3 epochs;
    # score reads pairs, which has not started: two stages ahead; embed three
    assert wave == [
        Coming("pairs", "data.template", None, 6),
        Coming("sft", "train.sft", "hf:base", 1, 18.0, alone=True),
        Coming("score", "score", "hf:rm", 6, depth=2),
        Coming("embed", "embed", "hf:emb", 6, depth=3),
    ]


def test_a_sampling_node_multiplies_its_upstream_items() -> None:
    workflow = Workflow.model_validate(
        {
            "nodes": {
                "seed": {"kind": "data.template", "inputs": {"records": ["a", "b"]}},
                "gen": {**GEN, "inputs": {"prompts": {"ref": "seed"}}},
            }
        }
    )
    wave = next_wave(workflow, {"seed": "pending", "gen": "waiting"}, {"seed": 2}, KINDS)
    assert wave == [Coming("gen", "llm.generate", "hf:gen", 4)]


def test_nodes_about_to_start_are_in_no_wave_and_a_finished_workflow_has_none() -> None:
    chain = _chain()
    waiting = dict.fromkeys(chain.nodes, "waiting")
    # generate done: pairs and sft are about to start (the ready pool will show them), so
    # they are in no wave; what reads them is one stage further than they are
    done = {**waiting, "generate": "done"}
    assert [(c.node, c.depth) for c in next_wave(chain, done, {"generate": 6}, KINDS)] == [
        ("score", 1),
        ("embed", 2),
    ]
    cancelled = dict.fromkeys(chain.nodes, "cancelled")
    assert next_wave(chain, cancelled, {"generate": 6}, KINDS) == []
    # pairs and sft started: score next, over the 6 pairs; embed after it
    later = {**done, "pairs": "pending", "sft": "running"}
    assert next_wave(chain, later, {"generate": 6, "pairs": 6, "sft": 1}, KINDS) == [
        Coming("score", "score", "hf:rm", 6),
        Coming("embed", "embed", "hf:emb", 6, depth=2),
    ]
    final = dict.fromkeys(chain.nodes, "done")
    assert next_wave(chain, final, dict.fromkeys(chain.nodes, 6), KINDS) == []


def test_waves_of_many_workflows_group_by_kind_and_model_a_training_run_alone() -> None:
    coming = [
        Coming("pairs", "data.template", None, 6),
        Coming("pairs", "data.template", None, 4),
        Coming("score", "score", "hf:rm", 5),
        Coming("sft", "train.sft", "hf:base", 1, 18.0, alone=True),
        Coming("sft", "train.sft", "hf:base", 1, 18.0, alone=True),
    ]
    groups = {(g.kind, g.model): g for g in wave_groups(coming)}
    assert groups["data.template", None].items == 10
    assert groups["score", "hf:rm"].items == 5
    sft = groups["train.sft", "hf:base"]
    assert (sft.items, sft.max_batch, sft.weight) == (2, 1, 18.0)
    assert groups["score", "hf:rm"].max_batch > 1
    deep = [Coming("embed", "embed", "hf:emb", 6, depth=2), *coming]
    by_depth = waves(deep)
    assert sorted(by_depth) == [1, 2]
    assert [(g.kind, g.items) for g in by_depth[2]] == [("embed", 6)]


def test_a_kind_nobody_registered_is_left_out_and_what_reads_it_stays_a_stage_later() -> None:
    workflow = Workflow.model_validate(
        {
            "nodes": {
                "gen": {**GEN, "inputs": {"prompts": ["a"]}},
                "mine": {"kind": "custom.thing", "inputs": {"records": {"ref": "gen"}}},
                "embed": {"kind": "embed", "model": "hf:emb", "inputs": {"texts": {"ref": "mine"}}},
            }
        }
    )
    states = {"gen": "running", "mine": "waiting", "embed": "waiting"}
    wave = next_wave(workflow, states, {"gen": 2}, KINDS)
    assert [(c.node, c.depth, c.items) for c in wave] == [("embed", 2, 1)]
