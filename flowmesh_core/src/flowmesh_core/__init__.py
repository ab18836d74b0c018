"""FlowMesh core: operators and keys, the content-addressable store, Redis as system of record.

The public API is what ``__all__`` lists; modules and names starting with ``_`` are
internal. The control plane never imports torch or an orchestrator.
"""

from typing import TYPE_CHECKING, Any

from flowmesh_core.blobs import BlobStore, open_blob_store
from flowmesh_core.errors import FlowMeshError
from flowmesh_core.keys import Expansion, expand
from flowmesh_core.models import (
    Item,
    LineageRecord,
    ModelRef,
    Operator,
    Requester,
    Satisfaction,
    WorkerProfile,
    Workflow,
)
from flowmesh_core.models.parse import parse_document, parse_operator, parse_workflow
from flowmesh_core.registry import KindSpec, Registry
from flowmesh_core.settings import DedupDomain, Settings, load_settings

if TYPE_CHECKING:
    from flowmesh_core.store import Store

__version__ = "0.1.0"

__all__ = [
    "BlobStore",
    "DedupDomain",
    "Expansion",
    "FlowMeshError",
    "Item",
    "KindSpec",
    "LineageRecord",
    "ModelRef",
    "Operator",
    "Registry",
    "Requester",
    "Satisfaction",
    "Settings",
    "Store",
    "WorkerProfile",
    "Workflow",
    "__version__",
    "expand",
    "load_settings",
    "open_blob_store",
    "parse_document",
    "parse_operator",
    "parse_workflow",
]


def __getattr__(name: str) -> Any:
    # The store (and with it redis) loads on first use, so the client SDK and the
    # orchestrator adapters that import it never load the server's dependencies.
    if name == "Store":
        from flowmesh_core.store import Store

        return Store
    raise AttributeError(f"module 'flowmesh_core' has no attribute {name!r}")
