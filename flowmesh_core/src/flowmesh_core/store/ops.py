"""Reads of ops: the action cache and what is in flight. Their transitions (join, claim,
requeue, complete, fail) are the ledger's (``store/ledger.py``)."""

from __future__ import annotations

from collections.abc import Sequence

from flowmesh_core.store._base import StoreBase, strings

__all__ = ["OpsMixin"]


class OpsMixin(StoreBase):
    """Action cache and in-flight ops."""

    async def cached(self, domain: str, op_key: str) -> str | None:
        """The result digest recorded for ``op_key``, or None."""
        async with self.guard():
            value = await self._redis.get(self.keys.action(domain, op_key))
        return None if value is None else str(value)

    async def cached_many(self, domain: str, op_keys: Sequence[str]) -> list[str | None]:
        """Result digests for many op keys at once (None where absent)."""
        if not op_keys:
            return []
        async with self.guard():
            values = await self._redis.mget([self.keys.action(domain, k) for k in op_keys])
        return [None if v is None else str(v) for v in values]

    async def inline_results(self, digests: Sequence[str]) -> dict[str, bytes]:
        """The bytes of those ``digests`` that are kept inline (``KeySpace.inline``)."""
        if not digests:
            return {}
        async with self.guard():
            values = await self._redis.mget([self.keys.inline(d) for d in digests])
        return {
            d: v.encode() if isinstance(v, str) else bytes(v)
            for d, v in zip(digests, values, strict=True)
            if v is not None
        }

    async def op_state(self, domain: str, op_key: str) -> dict[str, str]:
        """The in-flight op's hash (empty when nothing is in flight)."""
        async with self.guard():
            state = await self._redis.hgetall(self.keys.op(domain, op_key))
        return strings(state)

    async def inflight(self) -> list[tuple[str, str]]:
        """Every op pending or running, oldest first, as (domain, op_key)."""
        async with self.guard():
            members = await self._redis.zrange(self.keys.inflight(), 0, -1)
        return [self.keys.parse_inflight_member(str(m)) for m in members]
