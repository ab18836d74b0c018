"""What the tenants ask for: prompt sets with a chosen overlap, and their workflow.

Each tenant runs the same five-node post-training data workflow (the demo's shape, on
the demo's models and template; ``data.filter`` keeps the better-scored half instead of
the demo's top 5, so that a prompt two tenants share stays shared at every stage)::

    prompts   data.template   record -> "Explain the ... in one sentence."
    generate  llm.generate    flowmesh/tiny-gpt, greedy
    score     score           flowmesh/tiny-reward over each {prompt, completion}
    filter    data.filter     the generations scored at least FILTER_MIN_SCORE
    embed     embed           all-MiniLM-L6-v2 over the kept completions

Overlap ``o`` %: ``round(P * o / 100)`` of each tenant's P records come from one pool that
every tenant shares; the rest are the tenant's own. Every record spells a number in
one-token words (``bench.batching.WORDS``), so all prompts have one token length; the
number is a hash of a per-run nonce, the variant's code (its salt), the overlap, the
owner (the pool or a tenant) and an index, so no two runs, variants or tenants write the
same record by accident (60 bits), and the words vary from record to record (a salt word
common to all of a variant's records would shift its scores alike, and with them how many
generations pass the filter).

This module is pure: it builds records and workflows, it never runs them.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from typing import Any

from bench.batching import WORDS
from flowmesh_core.models import Workflow
from flowmesh_core.models.parse import parse_workflow
from flowmesh_worker.demo.workload import (
    EMBED_MODEL,
    GENERATE_MODEL,
    MAX_NEW_TOKENS,
    SCORE_MODEL,
    TEMPLATE,
)

__all__ = [
    "EMBED_MODEL",
    "FILTER_MIN_SCORE",
    "GENERATE_MODEL",
    "MAX_NEW_TOKENS",
    "NODES",
    "SCORE_MODEL",
    "TEMPLATE",
    "PromptPlan",
    "new_nonce",
    "plan_prompts",
    "workflow",
]

NODES = ("prompts", "generate", "score", "filter", "embed")
TOPIC_WORDS = 12  # 60 bits, spelled 5 bits a word
MAX_TENANTS = 100
MAX_PROMPTS = 4096
FILTER_MIN_SCORE = -0.044323
"""The median of ``flowmesh/tiny-reward``'s scores over 1,536 of these prompts (its random
weights score every pair within ~3e-4 of -0.0443): about half the generations pass (44%
to 51% in sets of 192)."""


@dataclass(frozen=True)
class PromptPlan:
    """Every tenant's records for one (salt, overlap): ``sets[t]`` is tenant t's list."""

    sets: tuple[tuple[dict[str, str], ...], ...]
    shared: int  # records per tenant taken from the common pool

    @property
    def requested(self) -> int:
        return sum(len(s) for s in self.sets)

    @property
    def distinct(self) -> int:
        return len({r["topic"] for s in self.sets for r in s})


def plan_prompts(tenants: int, prompts: int, overlap_pct: int, salt: int, nonce: int) -> PromptPlan:
    """``tenants`` lists of ``prompts`` records, ``overlap_pct`` % of each from one pool."""
    shared = round(prompts * overlap_pct / 100)

    def record(owner: int, index: int) -> dict[str, str]:
        seed = f"{nonce}/{salt}/{overlap_pct}/{owner}/{index}".encode()
        code = int.from_bytes(hashlib.sha256(seed).digest()[:8], "big")
        words = [WORDS[(code >> (5 * j)) % 32] for j in range(TOPIC_WORDS)]
        return {"task": "Explain", "topic": "the " + " ".join(words)}

    pool = [record(0, i) for i in range(shared)]
    sets = tuple(
        tuple(pool + [record(t + 1, i) for i in range(shared, prompts)]) for t in range(tenants)
    )
    return PromptPlan(sets, shared)


def new_nonce() -> int:
    """The per-run part of every record."""
    return random.getrandbits(64)


def workflow(
    records: tuple[dict[str, str], ...],
    *,
    max_new_tokens: int,
    min_score: float | None = FILTER_MIN_SCORE,
    dedup: bool = True,
    name: str = "multitenant",
) -> Workflow:
    """The five-node workflow over ``records`` (see the module docstring); ``min_score``
    None keeps every generation (the warm-up, so that every model runs); ``dedup`` false
    submits every node ``dedup: false`` (its work is never shared, though it may share
    batches)."""
    nodes: dict[str, Any] = {
        "prompts": {
            "kind": "data.template",
            "params": {"template": TEMPLATE},
            "inputs": {"records": list(records)},
        },
        "generate": {
            "kind": "llm.generate",
            "model": GENERATE_MODEL,
            "params": {"max_new_tokens": max_new_tokens, "temperature": 0.0},
            "inputs": {"prompts": {"ref": "prompts"}},
        },
        "score": {"kind": "score", "model": SCORE_MODEL, "inputs": {"pairs": {"ref": "generate"}}},
        "filter": {
            "kind": "data.filter",
            "params": {"min_score": min_score},
            "inputs": {"items": {"ref": "generate"}, "scores": {"ref": "score"}},
        },
        "embed": {
            "kind": "embed",
            "model": EMBED_MODEL,
            "params": {"field": "completion"},
            "inputs": {"texts": {"ref": "filter"}},
        },
    }
    for node in nodes.values():
        node["dedup"] = dedup
    return parse_workflow({"name": name, "nodes": nodes})
