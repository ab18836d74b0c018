"""The training stage's workload: the paper's inference -> SFT and inference -> DPO shape.

Each tenant submits one workflow with both pipelines (docs/training.md)::

    prompts   data.template   record -> "Explain the ... in one sentence."
    generate  llm.generate    flowmesh/tiny-gpt, greedy, 32 new tokens
    score     score           flowmesh/tiny-reward over each {prompt, completion}
    best      data.top_k      the better-scored half of the generations
    sft       train.sft       flowmesh/tiny-gpt on them (full fine-tune, 1 epoch)
    samples   llm.generate    flowmesh/tiny-gpt, 2 samples per prompt (temperature 1)
    rate      score           flowmesh/tiny-reward over each sample
    pairs     data.pairs      per prompt, the better sample chosen, the worse rejected
    dpo       train.dpo       flowmesh/tiny-gpt on those pairs (1 epoch)

Overlap comes in two layers. Tenants are paired into groups (tenants 1 and 2, 3 and 4,
...): a group's tenants ask for the same records, so the same two training runs, which
the fabric runs once per group while isolated deployments run them once per tenant.
Between groups, ``OVERLAP_PCT`` of the records come from one common pool, so generation
and scoring share work across groups while their training datasets differ.

This module is pure: it builds records and workflows, it never runs them.
"""

from __future__ import annotations

from typing import Any

from bench.tenancy.workload import (
    GENERATE_MODEL,
    SCORE_MODEL,
    TEMPLATE,
    PromptPlan,
    plan_prompts,
)
from flowmesh_core.models import Workflow
from flowmesh_core.models.parse import parse_workflow

__all__ = [
    "GROUP_SIZE",
    "MAX_NEW_TOKENS",
    "NODES",
    "OVERLAP_PCT",
    "SALT_OFFSET",
    "TRAINING_NODES",
    "TRAIN_PARAMS",
    "groups",
    "plan_training",
    "training_workflow",
]

NODES = ("prompts", "generate", "score", "best", "sft", "samples", "rate", "pairs", "dpo")
TRAINING_NODES = ("sft", "dpo")
GROUP_SIZE = 2  # tenants per group: they submit the same pipeline
OVERLAP_PCT = 50  # records shared between groups
SALT_OFFSET = 10
"""Added to a variant's salt, so that the training stage's records are never the data
stage's (both run in one benchmark, on one prefix)."""
TRAIN_PARAMS: dict[str, Any] = {"epochs": 1, "learning_rate": 5e-4, "batch_size": 4, "seed": 0}
SAMPLE_SEED = 7
MAX_NEW_TOKENS = 32
"""New tokens per generation and sample, as in the example pipelines
(examples/workflows/): the completions are what the training runs train on, and their
length sets the runs' cost."""


def groups(tenants: int) -> int:
    """How many distinct pipelines ``tenants`` tenants ask for."""
    return -(-tenants // GROUP_SIZE)


def plan_training(tenants: int, prompts: int, salt: int, nonce: int) -> PromptPlan:
    """Every tenant's records: a group's tenants get the very same list."""
    plan = plan_prompts(groups(tenants), prompts, OVERLAP_PCT, salt + SALT_OFFSET, nonce)
    sets = tuple(plan.sets[t // GROUP_SIZE] for t in range(tenants))
    return PromptPlan(sets, plan.shared)


def training_workflow(
    records: tuple[dict[str, str], ...],
    *,
    max_new_tokens: int = MAX_NEW_TOKENS,
    dedup: bool = True,
    name: str = "multitenant-training",
) -> Workflow:
    """Both pipelines over ``records`` (see the module docstring); ``dedup`` false submits
    every node ``dedup: false``."""
    generate = {"max_new_tokens": max_new_tokens, "temperature": 0.0}
    sample = {"max_new_tokens": max_new_tokens, "temperature": 1.0, "n": 2, "seed": SAMPLE_SEED}
    nodes: dict[str, Any] = {
        "prompts": {
            "kind": "data.template",
            "params": {"template": TEMPLATE},
            "inputs": {"records": list(records)},
        },
        "generate": _generate(generate),
        "score": _score("generate"),
        "best": {
            "kind": "data.top_k",
            "params": {"k": max(1, len(records) // 2)},
            "inputs": {"items": {"ref": "generate"}, "scores": {"ref": "score"}},
        },
        "sft": _train("train.sft", "best"),
        "samples": _generate(sample),
        "rate": _score("samples"),
        "pairs": {
            "kind": "data.pairs",
            "inputs": {"samples": {"ref": "samples"}, "scores": {"ref": "rate"}},
        },
        "dpo": _train("train.dpo", "pairs"),
    }
    for node in nodes.values():
        node["dedup"] = dedup
    return parse_workflow({"name": name, "nodes": nodes})


def _generate(params: dict[str, Any]) -> dict[str, Any]:
    return {
        "kind": "llm.generate",
        "model": GENERATE_MODEL,
        "params": params,
        "inputs": {"prompts": {"ref": "prompts"}},
    }


def _score(node: str) -> dict[str, Any]:
    return {"kind": "score", "model": SCORE_MODEL, "inputs": {"pairs": {"ref": node}}}


def _train(kind: str, dataset: str) -> dict[str, Any]:
    return {
        "kind": kind,
        "model": GENERATE_MODEL,
        "params": TRAIN_PARAMS,
        "inputs": {"dataset": {"ref": dataset}},
    }
