"""The workflow rules: from a workflow and its nodes' records to what must happen next.

``next_actions`` is a pure function, in the style of the utility's ``choose``: the
engine reads a workflow's node records, asks it, and carries out each action through
the ledger; the simulator asks it the same way. It is safe to ask again at any time:
an action that was carried out already changes the records so that it is not proposed
again, and each ledger step refuses to apply twice.

The rules, per node in topological order (a final workflow needs nothing):

- started, an item failed for good (``error`` recorded)  -> ``FailNode`` with every node
  downstream of it (the workflow fails with it);
- started, every item has its result (``remaining`` 0)   -> ``RecordResult``;
- not started, every node it reads is done               -> ``StartNode`` with those
  nodes' result digests (a root node reads none: it starts at once).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from flowmesh_core.models import Workflow
from flowmesh_core.models.api import NodeState

__all__ = [
    "Action",
    "FailNode",
    "NodeView",
    "RecordResult",
    "StartNode",
    "downstream",
    "next_actions",
]


@dataclass(frozen=True)
class NodeView:
    """What the rules need of one node's record (``KeySpace.node``)."""

    started: bool = False
    state: NodeState = NodeState.WAITING
    remaining: int = 0
    error: str | None = None
    result_digest: str | None = None

    @classmethod
    def from_record(cls, record: Mapping[str, str]) -> NodeView:
        """The view of a node's hash as stored (empty: not started)."""
        stored = record.get("state")
        return cls(
            started="op_key" in record,
            state=NodeState(stored) if stored in set(NodeState) else NodeState.WAITING,
            remaining=int(record.get("remaining", 0)),
            error=record.get("error"),
            result_digest=record.get("result_digest"),
        )

    @property
    def final(self) -> bool:
        return self.state.final


@dataclass(frozen=True)
class StartNode:
    """Expand the node with these inputs (field -> result digest of the node read; the
    model a ``model: {ref}`` names under ``MODEL_INPUT``)."""

    node: str
    inputs: dict[str, str]


@dataclass(frozen=True)
class RecordResult:
    """Every item of the node has its result: record the node's (a manifest if split)."""

    node: str


@dataclass(frozen=True)
class FailNode:
    """Fail the node, everything downstream of it, and the workflow."""

    node: str
    error: str
    downstream: tuple[str, ...]


Action = StartNode | RecordResult | FailNode


def next_actions(workflow: Workflow, nodes: Mapping[str, NodeView]) -> list[Action]:
    """What must happen next for ``workflow`` whose nodes stand as ``nodes``.

    ``nodes`` maps each node name to its view (a missing name counts as not started).
    """
    views = {name: nodes.get(name, NodeView()) for name in workflow.nodes}
    actions: list[Action] = []
    for name in workflow.topological_order():
        view = views[name]
        if view.final:
            continue
        if view.started:
            if view.error is not None:
                later = tuple(n for n in downstream(workflow, name) if not views[n].final)
                actions.append(FailNode(name, view.error, later))
            elif view.remaining <= 0:
                actions.append(RecordResult(name))
            continue
        reads = workflow.nodes[name].reads()
        if all(views[dep].state is NodeState.DONE for dep in reads.values()):
            inputs = {field: str(views[dep].result_digest) for field, dep in reads.items()}
            actions.append(StartNode(name, inputs))
    return actions


def downstream(workflow: Workflow, name: str) -> list[str]:
    """Every node that reads ``name``, directly or through others, in topological order."""
    found = {name}
    for other in workflow.topological_order():
        if any(dep in found for dep in workflow.nodes[other].dependencies()):
            found.add(other)
    return [n for n in workflow.topological_order() if n in found and n != name]
