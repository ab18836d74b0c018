"""The next waves: work a running workflow's graph says will be ready once its running
nodes end.

Pure: the caller passes a workflow's graph (the workflow, or the summary of it stored
at submission, ``GraphSummary``), each node's status and the item counts of
its started nodes (``Store.active_workflows``). A node that has not started is in the
wave ``depth`` stages ahead when the longest chain of unfinished nodes back to a started
one has ``depth`` unstarted nodes: 1 when a node it reads is running, 2 when such a node
waits for a running one, and so on. A node whose inputs are all done is about to start:
its items will be in the ready pool the observer reads, so it is in no wave. Its expected
items are what the graph says before dedup: the upstream's items (the node it splits, or
the largest input) times the samples it asks for when it splits its list input, one when
it runs whole; a training node's one item stands for its upstream's items times its
epochs (docs/autoscaling.md, "The next wave").

The groups it returns are the ready pool's own shape (``place.Waiting``), grouped by kind
and model, so the observer places and prices each wave across pools as it does the ready
work; the simulator (bench/sim) reads its runs' waves with this same function.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from flowmesh_core.autoscale.place import Waiting
from flowmesh_core.errors import UnknownKindError
from flowmesh_core.models import Workflow
from flowmesh_core.models.api import NodeState
from flowmesh_core.models.graph_summary import GraphSummary
from flowmesh_core.registry import Registry

__all__ = ["Coming", "next_wave", "wave_groups", "waves"]


@dataclass(frozen=True, slots=True)
class Coming:
    """One node of the next wave."""

    node: str
    kind: str
    model: str | None  # None: model-less, or a checkpoint another node trains
    items: int
    weight: float = 1.0  # units of work per item (a training run: examples x epochs)
    alone: bool = False  # a training run: one batch of its own
    depth: int = 1  # stages ahead: 1 once a node it reads is running, 2 after that...


def next_wave(
    workflow: Workflow | GraphSummary,
    states: Mapping[str, str],
    items: Mapping[str, int],
    registry: Registry,
) -> list[Coming]:
    """The nodes of ``workflow`` that become ready as its running nodes finish, each with
    how many stages ahead it is (``depth`` 1: when a running node it reads finishes),
    nearest first, then in the workflow's order.

    ``states`` maps each node to its status, ``items`` each started node to its items. A
    node of a kind ``registry`` does not know is left out (it cannot start either); what
    reads it still counts it as a stage ahead.
    """
    graph = GraphSummary.of(workflow) if isinstance(workflow, Workflow) else workflow
    depth: dict[str, int] = {}  # 0: started, or about to start (every input done)
    est: dict[str, int] = {}
    out = []
    for name in graph.order:
        node = graph.nodes[name]
        if states.get(name, NodeState.WAITING) != NodeState.WAITING:
            depth[name], est[name] = 0, items.get(name, 0)
            continue
        deps = node.deps
        open_deps = [d for d in deps if states.get(d) != NodeState.DONE]
        depth[name] = 1 + max((depth[d] for d in open_deps), default=-1)
        try:
            spec = registry.get(node.kind)
        except UnknownKindError:
            est[name] = 0
            continue
        upstream = max((est[d] for d in deps), default=0)
        source = node.refs.get(spec.batch_input or spec.weight_input or "")
        if source is not None:
            upstream = est[source]
        coming = _coming(node.numbers, spec.batch_input, spec.samples_param, upstream)
        kind, model = node.kind, node.model
        if spec.weight_input is not None and spec.batch_input is None:
            epochs = node.numbers.get("epochs", 1)
            epochs = epochs if isinstance(epochs, int | float) and epochs > 0 else 1
            weight = float(max(1, upstream) * epochs)
            item = Coming(name, kind, model, 1, weight, alone=True, depth=depth[name])
        else:
            item = Coming(name, kind, model, coming, depth=depth[name])
        est[name] = item.items
        if depth[name] > 0:
            out.append(item)
    order = {name: i for i, name in enumerate(graph.nodes)}
    return sorted(out, key=lambda c: (c.depth, order[c.node]))


def _coming(params: Mapping[str, object], split: str | None, samples: str | None, up: int) -> int:
    """Items a node will have: its upstream's times its samples when it splits, else 1."""
    if split is None:
        return 1
    n = params.get(samples or "", 1)
    return max(1, up * (n if isinstance(n, int) and n > 0 else 1))


def waves(coming: Iterable[Coming]) -> dict[int, list[Waiting]]:
    """``wave_groups`` of each depth: the waves one, two... stages ahead."""
    by_depth: dict[int, list[Coming]] = {}
    for c in coming:
        by_depth.setdefault(c.depth, []).append(c)
    return {d: wave_groups(cs) for d, cs in sorted(by_depth.items())}


def wave_groups(coming: Iterable[Coming]) -> list[Waiting]:
    """Nodes coming as the ready pool's groups: one per kind, model and item weight; a
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
