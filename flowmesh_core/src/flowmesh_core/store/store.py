"""The system of record: FlowMesh's state in Redis (a server or the embedded store).

``Store`` joins the parts: the ledger (every op, node and workflow transition, and the
outbox that announces them), reads of ops (action cache, in flight) and of workflows
(nodes, lineage, events), the fleet (workers, lease, tenants, blob index, counters), the
rights to read digests (blob owners, grants), and the dashboard's views (the ready pool,
batch logs). Each part lives in its own module; all share one connection, key space and set of
Lua scripts.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from flowmesh_core.store.connection import open_redis
from flowmesh_core.store.fleet import FleetMixin
from flowmesh_core.store.grants import GrantsMixin
from flowmesh_core.store.keys import KeySpace
from flowmesh_core.store.ledger import LedgerMixin
from flowmesh_core.store.ops import OpsMixin
from flowmesh_core.store.rights import RightsMixin
from flowmesh_core.store.views import ViewsMixin
from flowmesh_core.store.workflows import WorkflowsMixin

if TYPE_CHECKING:
    from flowmesh_core.settings import Settings

__all__ = ["Store"]


class Store(
    LedgerMixin, OpsMixin, WorkflowsMixin, FleetMixin, RightsMixin, GrantsMixin, ViewsMixin
):
    """FlowMesh's state in Redis."""

    @classmethod
    def open(cls, url: str, prefix: str = "fm", state_dir: Path | None = None) -> Store:
        """A store on the Redis at ``url``. No I/O, except for ``memory://``: the embedded
        server of ``state_dir`` is started there if it does not run yet."""
        return cls(open_redis(url, state_dir), KeySpace(prefix), url, state_dir)

    @classmethod
    def from_settings(cls, settings: Settings) -> Store:
        """The store ``settings`` name: redis_url, key_prefix, state_dir."""
        return cls.open(settings.redis_url, settings.key_prefix, settings.state_dir)

    def scratch(self, token: str) -> Store:
        """A store on the same connection under a throw-away key space (see ``purge``)."""
        return Store(self._redis, self.keys.scratch(token), self.url, self.state_dir)
