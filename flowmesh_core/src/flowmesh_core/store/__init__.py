"""Redis as FlowMesh's system of record (a server, or the embedded in-process store)."""

from flowmesh_core.store.keys import KeySpace, domain_for
from flowmesh_core.store.records import (
    BlobRecord,
    CancelResult,
    CompleteResult,
    JoinOutcome,
    JoinResult,
    NodeStart,
    SubmitQuota,
    Transition,
    TransitionEvent,
    WorkflowState,
)
from flowmesh_core.store.store import Store

__all__ = [
    "BlobRecord",
    "CancelResult",
    "CompleteResult",
    "JoinOutcome",
    "JoinResult",
    "KeySpace",
    "NodeStart",
    "Store",
    "SubmitQuota",
    "Transition",
    "TransitionEvent",
    "WorkflowState",
    "domain_for",
]
