"""Typed, immutable values that travel between tenants, the control plane and workers."""

from flowmesh_core.models.item_inputs import (
    ItemBlob,
    ItemInput,
    ItemLiteral,
    ItemManifest,
    referenced_blobs,
)
from flowmesh_core.models.operator import (
    BlobInput,
    LiteralInput,
    ModelRef,
    NodeRef,
    Operator,
    OperatorInput,
)
from flowmesh_core.models.records import (
    Item,
    ItemStatus,
    LineageRecord,
    Requester,
    Satisfaction,
    WorkerProfile,
)
from flowmesh_core.models.workflow import Workflow, WorkflowNode

__all__ = [
    "BlobInput",
    "Item",
    "ItemBlob",
    "ItemInput",
    "ItemLiteral",
    "ItemManifest",
    "ItemStatus",
    "LineageRecord",
    "LiteralInput",
    "ModelRef",
    "NodeRef",
    "Operator",
    "OperatorInput",
    "Requester",
    "Satisfaction",
    "WorkerProfile",
    "Workflow",
    "WorkflowNode",
    "referenced_blobs",
]
