"""Workflows: a DAG of named nodes whose inputs may reference other nodes' outputs.

Validation here is structural and whole: every reference names a node that exists and the
graph has no cycle. A workflow that fails either check is rejected before anything is
stored, with the node and field to fix in the message.

A node's ``model`` may also be ``{ref: node}``: the checkpoint another node of the same
workflow trains (a ``train.*`` node). The node then waits for that one like for an input.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import Field, JsonValue, field_validator, model_validator

from flowmesh_core.errors import InvalidInputError
from flowmesh_core.models._base import FrozenModel, Name
from flowmesh_core.models.operator import (
    BlobInput,
    LiteralInput,
    ModelRef,
    NodeRef,
    Operator,
    WorkflowInput,
    wrap_input,
)

__all__ = ["MODEL_INPUT", "Workflow", "WorkflowNode"]

MODEL_INPUT = "@model"
"""The name under which a node's ``model: {ref: node}`` is resolved with its inputs (no
input can be named so: names start with a letter or digit)."""


class WorkflowNode(FrozenModel):
    """An operator whose inputs may also be ``{ref: node}``."""

    kind: str = Field(min_length=1, max_length=128)
    version: str | None = Field(default=None, min_length=1, max_length=128)
    model: ModelRef | NodeRef | None = Field(default=None, union_mode="left_to_right")
    params: dict[str, JsonValue] = Field(default_factory=dict)
    inputs: dict[Name, WorkflowInput] = Field(default_factory=dict)
    dedup: bool = True

    @field_validator("model", mode="before")
    @classmethod
    def _model_form(cls, value: Any) -> Any:
        if isinstance(value, dict) and set(value) == {"ref"}:
            return NodeRef.model_validate(value)
        return value

    @field_validator("inputs", mode="before")
    @classmethod
    def _wrap_inputs(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {name: wrap_input(raw, allow_refs=True) for name, raw in value.items()}
        return value

    def reads(self) -> dict[str, str]:
        """Each reference to another node by where it goes: an input's name, or
        ``MODEL_INPUT`` for the model."""
        found = {name: inp.ref for name, inp in self.inputs.items() if isinstance(inp, NodeRef)}
        if isinstance(self.model, NodeRef):
            found[MODEL_INPUT] = self.model.ref
        return found

    def dependencies(self) -> list[str]:
        """Names of the nodes this node reads, in input order (its model's last)."""
        return list(self.reads().values())

    def to_operator(
        self, resolved: Mapping[str, LiteralInput | BlobInput], model: ModelRef | None = None
    ) -> Operator:
        """The operator this node becomes once every reference has a value (``model``:
        the checkpoint its ``model: {ref}`` names)."""
        inputs = {
            name: resolved[name] if isinstance(inp, NodeRef) else inp
            for name, inp in self.inputs.items()
        }
        if isinstance(self.model, NodeRef):
            if model is None:
                raise ValueError(f"the model comes from node {self.model.ref!r}: pass it")
        else:
            model = self.model
        return Operator(
            kind=self.kind,
            version=self.version,
            model=model,
            params=self.params,
            inputs=inputs,
            dedup=self.dedup,
        )


class Workflow(FrozenModel):
    """A tenant's DAG. ``nodes`` keeps the order it was written in."""

    name: str | None = Field(default=None, max_length=256)
    nodes: dict[Name, WorkflowNode] = Field(min_length=1)

    @model_validator(mode="after")
    def _check_graph(self) -> Workflow:
        for name, node in self.nodes.items():
            for field, ref in node.reads().items():
                if ref not in self.nodes:
                    where = "model" if field == MODEL_INPUT else f"input {field!r}"
                    raise ValueError(
                        f"node {name!r}, {where}: refers to node {ref!r}, "
                        f"which this workflow does not define"
                    )
        self.topological_order()
        return self

    def topological_order(self) -> list[str]:
        """Nodes so that each comes after every node it reads; ValueError on a cycle.

        Kahn's algorithm, iterative, so a long chain cannot exhaust the stack.
        """
        waiting = {name: len(set(node.dependencies())) for name, node in self.nodes.items()}
        readers: dict[str, list[str]] = {name: [] for name in self.nodes}
        for name, node in self.nodes.items():
            for dep in set(node.dependencies()):
                readers[dep].append(name)
        ready = [name for name, count in waiting.items() if count == 0]
        order: list[str] = []
        while ready:
            name = ready.pop()
            order.append(name)
            for reader in readers[name]:
                waiting[reader] -= 1
                if waiting[reader] == 0:
                    ready.append(reader)
        if len(order) < len(self.nodes):
            cycle = self._find_cycle({name for name, count in waiting.items() if count > 0})
            raise ValueError(
                f"the workflow has a cycle: {' -> '.join(cycle)}; remove one of these references"
            )
        return order

    def result_node(self, node: str | None = None, *, who: str = "the task") -> str:
        """``node`` if this workflow has it; by default its only final node (one no other
        node reads). InvalidInputError, naming the nodes, otherwise; ``who`` is what
        returns the result, for the message (an adapter's task, step...)."""
        if node is not None:
            if node not in self.nodes:
                raise InvalidInputError(
                    f"node={node!r} is not in the workflow; its nodes are "
                    f"{', '.join(map(repr, self.nodes))}"
                )
            return node
        read = {dep for n in self.nodes.values() for dep in n.dependencies()}
        finals = [name for name in self.nodes if name not in read]
        if len(finals) != 1:
            raise InvalidInputError(
                f"the workflow has {len(finals)} final nodes ({', '.join(map(repr, finals))}): "
                f"pass node= to say whose result {who} returns"
            )
        return finals[0]

    def _find_cycle(self, stuck: set[str]) -> list[str]:
        # Every stuck node reads at least one other stuck node, so walking those reads
        # from any of them must come back to a node already seen: that loop is a cycle.
        path: list[str] = []
        seen: dict[str, int] = {}
        name = min(stuck)
        while name not in seen:
            seen[name] = len(path)
            path.append(name)
            name = next(dep for dep in self.nodes[name].dependencies() if dep in stuck)
        return [*path[seen[name] :], name]
