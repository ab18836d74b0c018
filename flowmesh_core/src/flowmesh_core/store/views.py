"""Reads for the dashboard's shared views: the ready pool as it stands, and batch logs.

Reads only, each one round trip or two: nothing here changes state, so none of it needs
a script. Who may see what of these is the control plane's (``control/views.py``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from flowmesh_core.models import LineageRecord
from flowmesh_core.store._base import StoreBase, strings
from flowmesh_core.store.records import parse_lineage

__all__ = ["ReadyGroup", "ViewsMixin"]


@dataclass(frozen=True, slots=True)
class ReadyGroup:
    """One batch-signature group of the ready pool: its members in fair-queuing order,
    and what the signature means."""

    signature: str
    members: list[str]  # KeySpace.ready_member
    meaning: dict[str, Any]


class ViewsMixin(StoreBase):
    """The ready pool and the batch logs, as the dashboard reads them."""

    async def ready_groups(self) -> list[ReadyGroup]:
        """Every signature group with items waiting, with all of its members."""
        async with self.guard():
            sigs = [str(s) for s in await self._redis.zrange(self.keys.ready_signatures(), 0, -1)]
            async with self._redis.pipeline(transaction=False) as pipe:
                for sig in sigs:
                    pipe.zrange(self.keys.ready(sig), 0, -1)
                    pipe.hget(self.keys.signature_meta(sig), "meta")
                raw = await pipe.execute()
        groups = []
        for i, sig in enumerate(sigs):
            members, meta = raw[2 * i], raw[2 * i + 1]
            if members:
                meaning = dict(json.loads(str(meta))) if meta else {}
                groups.append(ReadyGroup(sig, [str(m) for m in members], meaning))
        return groups

    async def ops_created_at(self, ops: Sequence[tuple[str, str]]) -> list[float | None]:
        """When each (domain, op key) was created, None for one that is gone."""
        async with self.guard(), self._redis.pipeline(transaction=False) as pipe:
            for domain, op_key in ops:
                pipe.hget(self.keys.op(domain, op_key), "created_at")
            raw = await pipe.execute()
        return [None if r is None else float(r) for r in raw]

    async def batch_log(self, batch_id: str) -> dict[str, str]:
        """A batch's log as ``claim_batch`` and ``finish_batch`` wrote it ({} if none)."""
        async with self.guard():
            return strings(await self._redis.hgetall(self.keys.batch_log(batch_id)))

    async def batch_requesters(self, batch_id: str) -> list[LineageRecord]:
        """The lineage records of a batch's requesters (``batch_lineage``) that name the
        batch: a requeued item's record names the batch it ran in at last."""
        async with self.guard():
            keys = sorted(map(str, await self._redis.smembers(self.keys.batch_lineage(batch_id))))
            async with self._redis.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.hgetall(key)
                raw = await pipe.execute()
        records = [parse_lineage(strings(r)) for r in raw if r]
        return [r for r in records if r.batch_id == batch_id]
