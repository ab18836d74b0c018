"""A workflow's graph without its data: what the autoscaler's next wave reads.

Stored beside the spec at submission (its own field of the workflow hash), so each
autoscale poll reads a few hundred bytes per node instead of a spec that may be as big
as a request body (docs/autoscaling.md, "The next wave"). It keeps, per node, the kind,
the model's key, the nodes it reads (and through which input) and the params that are
plain numbers (a sample count, epochs); it must never keep input values or other
params, which are what makes a spec big.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from flowmesh_core.models.operator import ModelRef, NodeRef
from flowmesh_core.models.workflow import Workflow

__all__ = ["GraphSummary", "NodeSummary"]


@dataclass(frozen=True, slots=True)
class NodeSummary:
    """One node: its kind, model key (None: model-less or another node's checkpoint),
    the nodes it reads in input order, its inputs that read a node, its numeric params."""

    kind: str
    model: str | None
    deps: tuple[str, ...]
    refs: Mapping[str, str] = field(default_factory=dict)
    numbers: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class GraphSummary:
    """The nodes in the workflow's order, and the order they can run in."""

    nodes: Mapping[str, NodeSummary]
    order: tuple[str, ...]  # topological: each node after every node it reads

    @classmethod
    def of(cls, workflow: Workflow) -> GraphSummary:
        """The summary of a valid workflow."""
        nodes = {
            name: NodeSummary(
                kind=node.kind,
                model=node.model.key if isinstance(node.model, ModelRef) else None,
                deps=tuple(node.dependencies()),
                refs={k: v.ref for k, v in node.inputs.items() if isinstance(v, NodeRef)},
                numbers={
                    k: v
                    for k, v in node.params.items()
                    if isinstance(v, int | float) and not isinstance(v, bool)
                },
            )
            for name, node in workflow.nodes.items()
        }
        return cls(nodes, tuple(workflow.topological_order()))

    def to_json(self) -> str:
        """Compact JSON, read back by ``from_json``."""
        nodes = {
            name: [n.kind, n.model, list(n.deps), dict(n.refs), dict(n.numbers)]
            for name, n in self.nodes.items()
        }
        return json.dumps({"nodes": nodes, "order": list(self.order)}, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> GraphSummary:
        """A summary ``to_json`` wrote; ValueError if ``text`` is not one."""
        try:
            raw: Any = json.loads(text)
            nodes = {
                str(name): NodeSummary(str(kind), model, tuple(deps), dict(refs), dict(nums))
                for name, (kind, model, deps, refs, nums) in raw["nodes"].items()
            }
            order = tuple(str(name) for name in raw["order"])
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"not a graph summary: {exc}") from exc
        if set(order) != set(nodes):
            raise ValueError("not a graph summary: its order does not list its nodes")
        return cls(nodes, order)
