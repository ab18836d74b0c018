"""What the demo's tenants ask for: overlapping windows of one shipped prompt set.

``prompts.json`` (in this package) holds 48 short instruction records. Tenant ``i`` takes
``per_tenant`` consecutive records from ``i * (per_tenant // 2)`` on, wrapping around, so
neighbouring tenants share half their records. Every tenant runs the same five-node
workflow over its window::

    prompts   data.template   record -> "Explain ... in one sentence."
    generate  llm.generate    flowmesh/tiny-gpt, greedy
    score     score           flowmesh/tiny-reward over {prompt, completion}
    top       data.top_k      the best ``top_k`` generations by score
    embed     embed           all-MiniLM-L6-v2 over the top generations' completions

so a record two tenants share is the same item at every split stage (same template and
record, hence the same prompt, the same completion, the same pair), and the fabric can
run it once. This module is pure: it builds workflows, it never runs them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from flowmesh_core.errors import InvalidInputError
from flowmesh_core.models import Workflow
from flowmesh_core.models.parse import parse_workflow

__all__ = [
    "EMBED_MODEL",
    "GENERATE_MODEL",
    "NODES",
    "SCORE_MODEL",
    "TEAMS",
    "TenantPlan",
    "load_records",
    "plan_tenants",
    "workflow_for",
]

GENERATE_MODEL = "flowmesh/tiny-gpt"
SCORE_MODEL = "flowmesh/tiny-reward"
EMBED_MODEL = "all-MiniLM-L6-v2"
TEAMS = ("team-search", "team-support", "team-research")
NODES = ("prompts", "generate", "score", "top", "embed")
TEMPLATE = "{task} {topic} in one sentence."
MAX_NEW_TOKENS = 96
TOP_K = 5


@cache
def load_records() -> tuple[dict[str, str], ...]:
    """The shipped prompt records, in order."""
    text = resources.files(__package__).joinpath("prompts.json").read_text("utf-8")
    records: list[dict[str, str]] = json.loads(text)
    return tuple(records)


@dataclass(frozen=True)
class TenantPlan:
    """One tenant of the demo and the records (by index) its workflow covers."""

    name: str
    indices: tuple[int, ...]

    @property
    def window(self) -> str:
        """The records as readable ranges, e.g. ``p00-p31`` or ``p32-p47+p00-p15``."""
        records = load_records()
        runs: list[list[int]] = []
        for index in self.indices:
            if runs and index == runs[-1][-1] + 1:
                runs[-1].append(index)
            else:
                runs.append([index])
        ids = [(records[run[0]]["id"], records[run[-1]]["id"]) for run in runs]
        return "+".join(first if first == last else f"{first}-{last}" for first, last in ids)


def plan_tenants(per_tenant: int, teams: tuple[str, ...] = TEAMS) -> list[TenantPlan]:
    """Each team's window: ``per_tenant`` records, shifted by half a window per team."""
    total = len(load_records())
    if not 2 <= per_tenant <= total:
        raise InvalidInputError(
            f"--prompts must be between 2 and {total} (the records shipped with the demo), "
            f"got {per_tenant}"
        )
    stride = max(1, per_tenant // 2)
    return [
        TenantPlan(team, tuple((i * stride + j) % total for j in range(per_tenant)))
        for i, team in enumerate(teams)
    ]


def workflow_for(plan: TenantPlan) -> Workflow:
    """The five-node workflow of one tenant (see the module docstring)."""
    records = [load_records()[i] for i in plan.indices]
    nodes: dict[str, Any] = {
        "prompts": {
            "kind": "data.template",
            "params": {"template": TEMPLATE},
            "inputs": {"records": records},
        },
        "generate": {
            "kind": "llm.generate",
            "model": GENERATE_MODEL,
            "params": {"max_new_tokens": MAX_NEW_TOKENS, "temperature": 0.0},
            "inputs": {"prompts": {"ref": "prompts"}},
        },
        "score": {
            "kind": "score",
            "model": SCORE_MODEL,
            "inputs": {"pairs": {"ref": "generate"}},
        },
        "top": {
            "kind": "data.top_k",
            "params": {"k": min(TOP_K, len(records))},
            "inputs": {"items": {"ref": "generate"}, "scores": {"ref": "score"}},
        },
        "embed": {
            "kind": "embed",
            "model": EMBED_MODEL,
            "params": {"field": "completion"},
            "inputs": {"texts": {"ref": "top"}},
        },
    }
    return parse_workflow({"name": f"demo-{plan.name}", "nodes": nodes})
