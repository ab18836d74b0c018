"""The system of record: FlowMesh's state in Redis (a server or the embedded store).

``Store`` joins the parts: the ledger (every op, node and workflow transition, and the
outbox that announces them), reads of ops (action cache, in flight) and of workflows
(nodes, lineage, events), and the fleet (workers, lease, tenants, blob index, counters).
Each part lives in its own module; all share one connection, key space and set of Lua
scripts.
"""

from __future__ import annotations

from flowmesh_core.store.connection import open_redis
from flowmesh_core.store.fleet import FleetMixin
from flowmesh_core.store.keys import KeySpace
from flowmesh_core.store.ledger import LedgerMixin
from flowmesh_core.store.ops import OpsMixin
from flowmesh_core.store.workflows import WorkflowsMixin

__all__ = ["Store"]


class Store(LedgerMixin, OpsMixin, WorkflowsMixin, FleetMixin):
    """FlowMesh's state in Redis."""

    @classmethod
    def open(cls, url: str, prefix: str = "fm") -> Store:
        """A store on the Redis at ``url`` (``memory://`` for the embedded one). No I/O."""
        return cls(open_redis(url), KeySpace(prefix), url)

    def scratch(self, token: str) -> Store:
        """A store on the same connection under a throw-away key space (see ``purge``)."""
        return Store(self._redis, self.keys.scratch(token), self.url)
