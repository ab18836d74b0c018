"""Values the control plane hands out and takes in: tenants, plans, statuses, stats.

These are the shapes of the HTTP API's bodies too (the API layer returns them as they
are), so the client SDK and the adapters read exactly what the control plane wrote.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field, JsonValue

from flowmesh_core.models import LineageRecord, WorkerProfile
from flowmesh_core.models._base import Digest, FrozenModel, Name, ReplyModel

__all__ = [
    "BatchReport",
    "BlobGrant",
    "BlobGrantRequest",
    "BlobGrants",
    "BlobReceipt",
    "NodePlan",
    "NodeState",
    "NodeStatus",
    "PoolGroup",
    "PoolReport",
    "PoolShare",
    "ResultsReply",
    "ResultsRequest",
    "StatsReport",
    "SubmitResult",
    "Tenant",
    "TenantGrant",
    "TenantGrants",
    "TenantStats",
    "WorkerState",
    "WorkflowStatus",
]


class Tenant(FrozenModel):
    """Who is calling. ``admin`` may see cluster-wide views (workers, everyone's stats).

    ``max_in_flight`` and ``submit_rate`` override the settings' quotas for this tenant
    (None: the settings' ``tenant_max_in_flight`` / ``tenant_submit_rate``; 0: no limit);
    see docs/isolation.md, "Quotas".
    """

    name: Name
    organisation: Name | None = None
    admin: bool = False
    max_in_flight: int | None = Field(default=None, ge=0)
    submit_rate: float | None = Field(default=None, ge=0, allow_inf_nan=False)


class NodeState(StrEnum):
    """Where a workflow node stands."""

    WAITING = "waiting"  # some input is another node's output that is not ready yet
    PENDING = "pending"  # its items are in the ready pool or joined to work in flight
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"  # its tenant cancelled the workflow (DELETE /v1/workflows/{id})

    @property
    def final(self) -> bool:
        """Whether nothing more will happen to it: done, failed or cancelled."""
        return self in (NodeState.DONE, NodeState.FAILED, NodeState.CANCELLED)


class NodePlan(ReplyModel):
    """How a node will be satisfied, as known at submission.

    ``op_key`` is None while the node waits for inputs. ``items`` counts its items
    (1 for a kind that runs whole); the three counters say how many hit the action
    cache, joined work in flight, or were created.
    """

    node: str
    op_key: str | None
    state: NodeState
    items: int = 0
    cache_hits: int = 0
    joined: int = 0
    created: int = 0
    waits_for: list[str] = Field(default_factory=list)


class SubmitResult(ReplyModel):
    """The answer to a submission: the workflow id and a plan per node.

    ``replayed``: the submission repeated an earlier one's idempotency key, so nothing
    new was created and this is the earlier workflow (its plan's counters are zero).
    """

    workflow_id: str
    nodes: list[NodePlan]
    replayed: bool = False


class NodeStatus(ReplyModel):
    """A node's status with its result digest (a manifest for split nodes) and lineage.

    ``progress``, while a training item runs: ``step``, ``steps``, ``loss``, ``eta_s``
    (seconds left), ``worker`` and ``at`` (when reported), as its worker last wrote them.
    While a worker loads the model for the node's items (a cold start): ``phase``
    ``loading``, ``model``, ``worker`` and ``at`` (when the load began); after it,
    ``phase`` ``running``. A split node shows one running item's, a model load first.
    """

    node: str
    state: NodeState
    op_key: str | None = None
    result_digest: str | None = None
    error: str | None = None
    items_total: int = 0
    items_done: int = 0
    depends_on: list[str] = Field(default_factory=list)  # nodes whose outputs it reads
    progress: dict[str, JsonValue] | None = None
    lineage: list[LineageRecord] = Field(default_factory=list)


class WorkflowStatus(ReplyModel):
    """A workflow's status: done when every node is done, failed when any failed."""

    workflow_id: str
    name: str
    state: NodeState
    created_at: float
    finished_at: float | None = None
    nodes: list[NodeStatus]


class WorkerState(ReplyModel):
    """A registered worker as the scheduler sees it."""

    profile: WorkerProfile
    alive: bool
    last_heartbeat: float
    free_slots: int
    warm_models: list[str] = Field(default_factory=list)
    running_batches: int = 0
    draining: bool = False  # finishing what it holds, taking no new batches


class TenantStats(ReplyModel):
    """What one tenant asked for and how it was satisfied, with its attributed cost, and
    what it holds against its upload and grant quotas (docs/isolation.md, "Quotas").

    ``upload_bytes`` never goes down (blobs are never deleted); ``max_upload_bytes`` and
    ``max_grants`` are the limits it is held to (0: none, as for an admin).
    """

    tenant: str
    requested: int = 0
    cache_hits: int = 0
    joins: int = 0
    created: int = 0
    worker_seconds: float = 0.0
    cost_usd: float = 0.0
    energy_wh: float = 0.0
    upload_bytes: int = 0
    max_upload_bytes: int = 0
    grants: int = 0
    max_grants: int = 0


class StatsReport(ReplyModel):
    """Requested vs executed items, batching, and resources: per tenant and in total.

    A tenant sees only its own entry in ``tenants``; cluster-wide figures
    (``executed``, ``batches``...) reveal no tenant's identity.
    """

    tenants: list[TenantStats]
    requested: int = 0
    executed: int = 0
    failed: int = 0
    cache_hits: int = 0
    joins: int = 0
    batches: int = 0
    mean_batch_size: float = 0.0
    worker_seconds: float = 0.0
    cost_usd: float = 0.0
    energy_wh: float = 0.0


class ResultsRequest(FrozenModel):
    """Many results asked for at once (``POST /v1/results/read``)."""

    digests: list[Digest] = Field(min_length=1, max_length=10_000)


class ResultsReply(ReplyModel):
    """Each asked-for result, decoded as JSON (results are JSON documents)."""

    results: dict[str, JsonValue]


class BlobReceipt(ReplyModel):
    """An upload's answer: the digest the bytes were verified against, and their size."""

    digest: Digest
    size: int = Field(ge=0)


class BlobGrantRequest(FrozenModel):
    """A grant asked for (``POST /v1/blobs/{digest}/grants``): the tenant to let read it."""

    tenant: Name


class BlobGrant(ReplyModel):
    """One grant of a blob: ``grantor`` lets ``tenant`` read it."""

    tenant: str
    grantor: str


class BlobGrants(ReplyModel):
    """The grants of a blob the caller made (an admin sees every grantor's)."""

    digest: Digest
    grants: list[BlobGrant]


class TenantGrant(ReplyModel):
    """One grant the caller made: ``tenant`` may read the blob ``digest``."""

    digest: Digest
    tenant: str


class TenantGrants(ReplyModel):
    """A page of the grants the caller made, over every blob (``GET /v1/grants``), sorted
    by digest then tenant; ``next`` is the ``after`` that asks for the next page (None:
    this is the last)."""

    grants: list[TenantGrant]
    next: str | None = None


class PoolShare(ReplyModel):
    """One tenant's items waiting in a ready-pool group, and how long its oldest waited."""

    tenant: str
    items: int
    oldest_wait_s: float


class PoolGroup(ReplyModel):
    """One batch-signature group of the ready pool (``GET /v1/pool``).

    ``size`` counts every tenant's items; it is None for a tenant under the ``tenant``
    dedup domain, where nothing it sees may depend on another tenant's activity.
    ``shares`` holds every tenant's share for an admin, the caller's own otherwise.
    """

    signature: str
    kind: str
    model: str | None = None
    size: int | None = None
    oldest_wait_s: float
    shares: list[PoolShare]


class PoolReport(ReplyModel):
    """The ready pool as it stands: the groups the caller may see, oldest first."""

    at: float
    groups: list[PoolGroup]


class BatchReport(ReplyModel):
    """One batch as it was decided and ran (``GET /v1/batches/{batch_id}``).

    ``items`` are the lineage records of the requesters of its items at the claim:
    every requester for an admin, the caller's own otherwise. ``size`` counts the
    batch's items (every tenant's). ``terms`` are the utility terms of the decision
    that chose this batch and worker (``RoundPlan.terms``).
    """

    batch_id: str
    worker: str
    kind: str
    model: str | None = None
    size: int
    assigned_at: float
    finished_at: float | None = None
    worker_seconds: float | None = None
    cost_usd: float | None = None
    energy_wh: float | None = None
    terms: dict[str, JsonValue] = Field(default_factory=dict)
    items: list[LineageRecord]
