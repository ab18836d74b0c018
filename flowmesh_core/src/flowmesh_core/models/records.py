"""What the fabric records: items, lineage, worker profiles, and their states.

Lineage is per requester: every (workflow, node, item index) that asked for an op key gets
its own record, even when the work ran once for many tenants. That is how provenance
survives de-duplication and batching, and why a tenant never learns who else asked.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field, JsonValue

from flowmesh_core.models._base import Digest, FrozenModel, Name, ReplyModel
from flowmesh_core.models.item_inputs import ItemInput
from flowmesh_core.models.operator import ModelRef

__all__ = [
    "Item",
    "ItemStatus",
    "LineageRecord",
    "Requester",
    "Satisfaction",
    "WorkerProfile",
]


class ItemStatus(StrEnum):
    """Where one requested item stands."""

    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"  # its workflow was cancelled before the item had a result


class Satisfaction(StrEnum):
    """How a requester's item was (or will be) satisfied."""

    EXECUTED = "executed"  # this requester created the work; it ran for it
    CACHE_HIT = "cache_hit"  # the action cache already held the result: no work at all
    JOINED = "joined"  # attached to work already pending or running: no second run


class Item(FrozenModel):
    """The fine-grained operator: what a worker executes and the action cache remembers.

    ``inputs`` holds this item's own inputs (one element of the parent's list, plus any
    inputs shared by every element), each typed literal, blob or manifest: a worker reads
    the CAS only for the typed references, never for a literal that looks like one.
    ``input_digests`` are what the key is built from. ``sample_index`` is set only for
    sampled kinds. ``index`` is the element's position in the parent list and is *not*
    part of the key.
    """

    op_key: str
    signature: str
    kind: str
    version: str
    model: ModelRef | None = None
    params: dict[str, JsonValue]
    inputs: dict[str, ItemInput]
    input_digests: dict[str, Digest]
    sample_index: int | None = None
    index: int = 0
    weight: float = Field(default=1.0, gt=0)


class Requester(FrozenModel):
    """Who asked for an item: the lineage record it owns."""

    tenant: Name
    workflow: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.-]+$")
    node: Name
    index: int = Field(default=0, ge=0)


class LineageRecord(ReplyModel):
    """One requester's view of one item: what it asked for, how and when it was satisfied."""

    tenant: str
    workflow: str
    node: str
    index: int
    op_key: str
    status: ItemStatus
    satisfied_by: Satisfaction
    result_digest: Digest | None = None
    batch_id: str | None = None
    worker: str | None = None
    requested_at: float
    started_at: float | None = None
    finished_at: float | None = None
    cost_usd: float = 0.0
    energy_wh: float = 0.0
    worker_seconds: float = 0.0
    error: str | None = None


class WorkerProfile(FrozenModel):
    """A worker's hardware and price: what the utility function weighs."""

    worker_id: Name
    accelerator: str = Field(min_length=1, max_length=64)  # "cpu", "H100-80GB", ...
    memory_bytes: int = Field(ge=0)
    price_per_hour: float = Field(ge=0)
    watts: float = Field(ge=0)
    slots: int = Field(default=1, ge=1)
    max_batch: int = Field(default=256, ge=1)  # most items per batch its memory allows
    bandwidth_bytes_s: float = Field(default=1e9, gt=0)  # to fetch inputs it lacks
    labels: dict[str, str] = Field(default_factory=dict)
