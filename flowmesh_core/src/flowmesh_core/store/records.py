"""Typed results of store operations, and the parsing of Redis hashes into records."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from pydantic import Field

from flowmesh_core.models import ItemStatus, LineageRecord
from flowmesh_core.models._base import FrozenModel

__all__ = [
    "BlobRecord",
    "CompleteResult",
    "JoinOutcome",
    "JoinResult",
    "WorkflowState",
    "parse_lineage",
]


class JoinOutcome(StrEnum):
    """What ``join_or_create`` did for a requester."""

    CREATED = "created"  # this requester created the op: the scheduler must plan it
    JOINED = "joined"  # attached to the op already pending or running
    CACHE_HIT = "cache_hit"  # the action cache held the result: nothing to do
    EXISTING = "existing"  # this requester had asked already; nothing changed


@dataclass(frozen=True)
class JoinResult:
    """The outcome of ``join_or_create``; ``digest`` is set when the result is known."""

    outcome: JoinOutcome
    status: ItemStatus
    digest: str | None = None
    node_done: bool = False  # this request finished its node (its last item was a hit)


@dataclass(frozen=True)
class CompleteResult:
    """The outcome of ``complete``: the recorded digest and who it released.

    ``duplicate`` is true when a result had been recorded before (a late finish); the
    recorded digest is the first one, whatever this call reported. ``finished_nodes``
    are the node keys whose last pending item this completion was.
    """

    digest: str
    duplicate: bool
    released: int = 0
    finished_nodes: tuple[str, ...] = field(default_factory=tuple)


class BlobRecord(FrozenModel):
    """What the index knows of a blob: its size, media type, and which workers hold it."""

    digest: str
    size: int
    media_type: str
    created_at: float
    holders: frozenset[str] = Field(default_factory=frozenset)


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
    # node_key is bookkeeping for the scripts, not part of what a requester is shown.
    data: dict[str, object] = {k: v for k, v in raw.items() if v != "" and k != "node_key"}
    for name in _FLOAT_FIELDS:
        if name in data:
            data[name] = float(str(data[name]))
    data["index"] = int(str(data["index"]))
    return LineageRecord.model_validate(data)
