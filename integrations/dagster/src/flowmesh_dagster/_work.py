"""What a Dagster step asks FlowMesh to do: the work, the node it returns, its retry key.

The work (an operator or a workflow) is parsed here, before anything is sent, so a bad
document fails the step with FlowMesh's own validation message. The idempotency key names
one submission of one step of one run: a step retry sends the same key and gets its
earlier workflow back instead of a second one.

This module must never talk to the network: it only reads the Dagster context it is given.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import dagster as dg

from flowmesh_core.errors import InvalidInputError
from flowmesh_core.hashing import canonical_json
from flowmesh_core.models import Operator, Workflow
from flowmesh_core.models.parse import parse_document, parse_operator, parse_workflow

__all__ = ["OPERATOR_NODE", "Context", "Work", "idempotency_key", "op_context", "parse_work"]

OPERATOR_NODE = "op"
"""The node name FlowMesh gives a single submitted operator."""

Context = dg.AssetExecutionContext | dg.OpExecutionContext
"""The contexts ``FlowMeshResource`` accepts: an asset's or an op's."""


@dataclass(frozen=True)
class Work:
    """A parsed submission and the node whose result the step returns."""

    document: Operator | Workflow
    node: str


def parse_work(work: Operator | Workflow | Mapping[str, Any] | str, node: str | None) -> Work:
    """Parse ``work`` (a model, a mapping, or YAML/JSON text) and pick its result node.

    A mapping with ``nodes`` is a workflow, anything else an operator. ``node`` defaults
    to ``op`` for an operator and to the workflow's only final node (one no other node
    reads); InvalidInputError when there are several, or ``node`` names none.
    """
    document = _document(work)
    if isinstance(document, Operator):
        if node not in (None, OPERATOR_NODE):
            raise InvalidInputError(
                f"node={node!r} was given for a single operator, whose only node is "
                f"{OPERATOR_NODE!r}; leave node= out"
            )
        return Work(document, OPERATOR_NODE)
    return Work(document, document.result_node(node, who="this step"))


def _document(work: Operator | Workflow | Mapping[str, Any] | str) -> Operator | Workflow:
    if isinstance(work, Operator | Workflow):
        return work
    data = parse_document(work, "the FlowMesh work") if isinstance(work, str) else work
    if isinstance(data, Mapping) and "nodes" in data:
        return parse_workflow(dict(data))
    return parse_operator(dict(data) if isinstance(data, Mapping) else data)


def op_context(context: Context) -> dg.OpExecutionContext:
    """The op-level context behind an asset's or an op's context."""
    if isinstance(context, dg.AssetExecutionContext):
        return context.op_execution_context
    return context


def idempotency_key(context: Context, work: Work) -> str | None:
    """The key of this submission: the run, the step, its assets and partition, the work.

    A step retry (same run, same step, same work) reproduces it and re-attaches; a new
    run, another step or other work gets another key. The work is part of it so that one
    step may submit several different things, each under a key of its own. None for an
    asset or op invoked directly (a unit test): no run, no step, nothing to re-attach to.
    """
    ctx = op_context(context)
    try:
        step = ctx.get_step_execution_context().step.key
    except dg.DagsterError:  # DagsterInvalidPropertyError: invoked directly, no step
        return None
    parts = {
        "step": step,
        "assets": sorted(key.to_user_string() for key in ctx.selected_asset_keys)
        if ctx.has_assets_def
        else [],
        "partition": _partition(ctx),
        "work": hashlib.sha256(canonical_json(work.document.model_dump(mode="json"))).hexdigest(),
    }
    scope = hashlib.sha256(canonical_json(parts)).hexdigest()[:32]
    return f"dagster:{ctx.run_id}:{scope}"


def _partition(ctx: dg.OpExecutionContext) -> str | None:
    if ctx.has_partition_key:
        return ctx.partition_key
    if ctx.has_partition_key_range:
        window = ctx.partition_key_range
        return f"{window.start}..{window.end}"
    return None
