"""Typed results of store operations, and the parsing of Redis hashes into records."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from flowmesh_core.models import ItemStatus, LineageRecord
from flowmesh_core.models._base import FrozenModel

__all__ = [
    "ActiveWorkflow",
    "BlobRecord",
    "CancelResult",
    "CompleteResult",
    "JoinOutcome",
    "JoinResult",
    "NodeStart",
    "SubmitQuota",
    "Transition",
    "TransitionEvent",
    "WorkflowState",
    "parse_lineage",
]


class JoinOutcome(StrEnum):
    """What ``join_or_create`` did for a requester."""

    CREATED = "created"  # this requester created the op: the scheduler must plan it
    JOINED = "joined"  # attached to the op already pending or running
    CACHE_HIT = "cache_hit"  # the action cache held the result: nothing to do
    EXISTING = "existing"  # this requester had asked already; nothing changed
    CONFLICT = "conflict"  # this requester had asked for a different op key


class Transition(StrEnum):
    """The typed events of the ledger's outbox (``KeySpace.outbox``).

    Each is written by the same Lua step as the transition it announces, so none is
    ever lost; the control plane acknowledges one only once it has acted on it.
    """

    WORKFLOW_SUBMITTED = "workflow.submitted"  # stored; its root nodes must start
    NODE_ITEMS_DONE = "node.items_done"  # every item has its result: record the node's
    NODE_ITEM_FAILED = "node.item_failed"  # an item failed for good: fail the node
    NODE_DONE = "node.done"  # the node's result is recorded: start what it unblocks
    NODE_FAILED = "node.failed"  # the node failed (its own item, or one upstream)
    WORKFLOW_DONE = "workflow.done"
    WORKFLOW_FAILED = "workflow.failed"
    WORKFLOW_CANCELLED = "workflow.cancelled"  # its tenant cancelled it (an announcement)


@dataclass(frozen=True)
class TransitionEvent:
    """One outbox entry: its stream id, what happened, to which workflow and node."""

    entry_id: str
    transition: Transition
    workflow: str
    node: str = ""
    error: str = ""


@dataclass(frozen=True)
class NodeStart:
    """What starting a node did: how each of its items was satisfied.

    ``started`` is false when the node had been started before (nothing changed) or
    the workflow is gone or finished; ``done`` when every item was a cache hit.
    """

    started: bool
    created: int = 0
    joined: int = 0
    cache_hits: int = 0
    done: bool = False


@dataclass(frozen=True)
class JoinResult:
    """The outcome of ``join_or_create``; ``digest`` is set when the result is known."""

    outcome: JoinOutcome
    status: ItemStatus
    digest: str | None = None
    node_done: bool = False  # this request finished its node (its last item was a hit)


@dataclass(frozen=True)
class SubmitQuota:
    """A tenant's quotas as one submission is checked against them (0: no limit), and
    how many items its root nodes have (reserved against ``max_in_flight``)."""

    max_in_flight: int = 0
    rate: float = 0.0
    burst: float = 1.0
    root_items: int = 0


@dataclass(frozen=True)
class CancelResult:
    """What cancelling a workflow did. ``cancelled`` is true when this call cancelled it;
    otherwise ``status`` is the final status it already had (done, failed, cancelled).
    ``dropped`` items left the ready pool (or were left to finish for nobody);
    ``shared`` items other requesters still wait for."""

    cancelled: bool
    status: str
    dropped: int = 0
    shared: int = 0


@dataclass(frozen=True)
class CompleteResult:
    """The outcome of ``complete``: the recorded digest and who it released.

    ``duplicate`` is true when a result had been recorded before (a late finish); the
    recorded digest is the first one, whatever this call reported. ``finished_nodes``
    counts the nodes whose last pending item this completion was (each announced on the
    outbox as ``node.items_done``).
    """

    digest: str
    duplicate: bool
    released: int = 0
    finished_nodes: int = 0


class BlobRecord(FrozenModel):
    """What the index knows of a blob: its size, media type, and when it was first recorded."""

    digest: str
    size: int
    media_type: str
    created_at: float


class WorkflowState(FrozenModel):
    """A stored workflow: who owns it, its spec as submitted, and each node's status."""

    id: str
    tenant: str
    name: str
    status: str
    created_at: float
    finished_at: float | None = None
    spec: str
    domain: str = "global"
    nodes: dict[str, str]


@dataclass(frozen=True, slots=True)
class ActiveWorkflow:
    """A workflow not final yet, as the autoscaler reads it: its graph summary (JSON of
    ``GraphSummary``, never the spec), each node's status, and the items of each started
    node (items_total, remaining)."""

    id: str
    graph: str
    nodes: dict[str, str]
    items: dict[str, tuple[int, int]]


_FLOAT_FIELDS = (
    "requested_at",
    "started_at",
    "finished_at",
    "cost_usd",
    "energy_wh",
    "worker_seconds",
)


def parse_lineage(raw: dict[str, str]) -> LineageRecord:
    """A lineage record from its Redis hash (all values arrive as strings)."""
    data: dict[str, object] = {k: v for k, v in raw.items() if v != ""}
    for name in _FLOAT_FIELDS:
        if name in data:
            data[name] = float(str(data[name]))
    data["index"] = int(str(data["index"]))
    return LineageRecord.model_validate(data)
