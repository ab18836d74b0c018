"""The next wave: work a running workflow's graph says will be ready once its running nodes end.

Pure: the caller passes a workflow's graph, each node's status and the item counts of
its started nodes (``Store.active_workflows``). A node is in the next wave when it has
not started, every node it reads has started, and at least one of those is not done yet
(a node whose inputs are all done is about to start, and its items will be in the ready
pool the observer reads). Its expected items are what the workflow graph says before
dedup: the upstream's items for a node that splits its list input (times the samples it
asks for), one for a node that runs whole; a training node's one item stands for its
upstream's items times its epochs (docs/autoscaling.md, "The next wave").

The groups it returns are the ready pool's own shape (``place.Waiting``), grouped by kind
and model, so the observer places and prices them across pools exactly as it does the
ready work.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from flowmesh_core.autoscale.place import Waiting
from flowmesh_core.errors import UnknownKindError
from flowmesh_core.models import Workflow
from flowmesh_core.models.api import NodeState
from flowmesh_core.models.operator import ModelRef, NodeRef
from flowmesh_core.registry import Registry

__all__ = ["Coming", "next_wave", "wave_groups"]


@dataclass(frozen=True, slots=True)
class Coming:
    """One node of the next wave."""

    node: str
    kind: str
    model: str | None  # None: model-less, or a checkpoint another node trains
    items: int
    weight: float = 1.0  # units of work per item (a training run: examples x epochs)
    alone: bool = False  # a training run: one batch of its own


def next_wave(
    workflow: Workflow,
    states: Mapping[str, str],
    items: Mapping[str, int],
    registry: Registry,
) -> list[Coming]:
    """The nodes of ``workflow`` that become ready when its running nodes finish.

    ``states`` maps each node to its status, ``items`` each started node to its items. A
    node of a kind ``registry`` does not know is left out (it cannot start either).
    """
    out = []
    for name, node in workflow.nodes.items():
        deps = node.dependencies()
        if states.get(name) != NodeState.WAITING or not deps:
            continue
        if any(states.get(d, NodeState.WAITING) == NodeState.WAITING for d in deps):
            continue  # two stages ahead or more: not the next wave
        if all(states.get(d) == NodeState.DONE for d in deps):
            continue  # about to start: the ready pool shows it
        try:
            spec = registry.get(node.kind)
        except UnknownKindError:
            continue
        upstream = max((items.get(d, 0) for d in deps), default=0)
        source = node.inputs.get(spec.batch_input or spec.weight_input or "")
        if isinstance(source, NodeRef):
            upstream = items.get(source.ref, upstream)
        samples = node.params.get(spec.samples_param or "", 1)
        samples = samples if isinstance(samples, int) and samples > 0 else 1
        epochs = node.params.get("epochs", 1)
        epochs = epochs if isinstance(epochs, int | float) and epochs > 0 else 1
        model = node.model.key if isinstance(node.model, ModelRef) else None
        if spec.batch_input is not None:
            out.append(Coming(name, node.kind, model, max(1, upstream * samples)))
        elif spec.weight_input is not None:
            weight = float(max(1, upstream) * epochs)
            out.append(Coming(name, node.kind, model, 1, weight, alone=True))
        else:
            out.append(Coming(name, node.kind, model, 1))
    return out


def wave_groups(coming: Iterable[Coming]) -> list[Waiting]:
    """The next wave as the ready pool's groups: one per kind, model and item weight; a
    training run is a batch of its own, as its own signature makes it in the ready pool."""
    default = Waiting("", "", None, 0).max_batch
    groups: dict[tuple[str, str, float, bool], int] = {}
    for c in coming:
        key = (c.kind, c.model or "", c.weight, c.alone)
        groups[key] = groups.get(key, 0) + c.items
    return [
        Waiting(
            f"next:{kind}:{model or '-'}:{weight:g}",
            kind,
            model or None,
            count,
            max_batch=1 if alone else default,
            weight=weight,
        )
        for (kind, model, weight, alone), count in sorted(groups.items())
    ]
