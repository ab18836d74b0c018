"""Workflows, their nodes' progress, lineage, and the events that wake waiting clients."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping, Sequence
from typing import Any

from flowmesh_core.errors import ConflictError
from flowmesh_core.models import LineageRecord, Requester
from flowmesh_core.store._base import StoreBase, strings
from flowmesh_core.store.records import WorkflowState, parse_lineage

IDEMPOTENCY_TTL_S = 7 * 24 * 3600
"""How long a submission's idempotency key is remembered."""

__all__ = ["WorkflowsMixin"]


class WorkflowsMixin(StoreBase):
    """Workflow and node records, lineage, per-workflow event streams."""

    async def create_workflow(
        self,
        wf_id: str,
        tenant: str,
        name: str,
        spec: str,
        nodes: Sequence[str],
        domain: str = "global",
        idempotency_key: str | None = None,
    ) -> str | None:
        """Store a workflow and its node states in one step; ConflictError if the id exists.

        ``domain`` is the dedup domain every item of this workflow is requested in. With
        an ``idempotency_key`` that this tenant used before (within a week), nothing is
        stored and the earlier workflow's id is returned; otherwise None.
        """
        k = self.keys
        key_hash = hashlib.sha256((idempotency_key or "").encode()).hexdigest()
        keys = [
            k.workflow(wf_id),
            k.workflow_nodes(wf_id),
            k.tenant_workflows(tenant),
            k.submission(tenant, key_hash),
        ]
        flag = "1" if idempotency_key is not None else ""
        args = [wf_id, tenant, name, repr(time.time()), spec, domain, flag, IDEMPOTENCY_TTL_S]
        outcome, found = await self.run_script("create_workflow", keys, [*args, *nodes])
        if int(outcome) == 2:
            return str(found)
        if int(outcome) == 0:
            raise ConflictError(f"workflow id {wf_id!r} is already taken")
        return None

    async def workflow(self, wf_id: str) -> WorkflowState | None:
        """A stored workflow, or None."""
        async with self.guard(), self._redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(self.keys.workflow(wf_id))
            pipe.hgetall(self.keys.workflow_nodes(wf_id))
            head, nodes = await pipe.execute()
        if not head:
            return None
        head = strings(head)
        return WorkflowState(
            id=wf_id,
            tenant=head["tenant"],
            name=head["name"],
            status=head["status"],
            created_at=float(head["created_at"]),
            finished_at=float(head["finished_at"]) if "finished_at" in head else None,
            spec=head["spec"],
            domain=head.get("domain", "global"),
            nodes=strings(nodes),
        )

    async def set_workflow_status(self, wf_id: str, status: str, *, final: bool = False) -> bool:
        """Record a workflow's status; with ``final``, only once (False if already final)."""
        key = self.keys.workflow(wf_id)
        async with self.guard():
            first = not final or await self._redis.hsetnx(key, "finished_at", repr(time.time()))
            if not first:
                return False
            await self._redis.hset(key, "status", status)
        return True

    async def set_node_status(self, wf_id: str, node: str, status: str) -> None:
        """Record a node's status in the workflow's summary."""
        async with self.guard():
            await self._redis.hset(self.keys.workflow_nodes(wf_id), node, status)

    async def start_node(
        self, wf_id: str, node: str, op_key: str, items: int, extra: Mapping[str, str]
    ) -> None:
        """Record that a node's items are being requested: ``remaining`` counts them down."""
        fields: dict[Any, Any] = {
            "op_key": op_key,
            "items_total": items,
            "remaining": items,
            **extra,
        }
        async with self.guard(), self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(self.keys.node(wf_id, node), mapping=fields)
            pipe.hset(self.keys.workflow_nodes(wf_id), node, "pending")
            await pipe.execute()

    async def claim_node_start(self, wf_id: str, node: str) -> bool:
        """Exactly one caller may start a waiting node: True for that one."""
        async with self.guard():
            return bool(await self._redis.hsetnx(self.keys.node(wf_id, node), "claimed", "1"))

    async def grant_result(self, tenant: str, digest: str) -> None:
        """Let ``tenant`` read ``digest`` (a node result its lineage holds)."""
        async with self.guard(), self._redis.pipeline(transaction=True) as pipe:
            pipe.sadd(self.keys.tenant_results(tenant), digest)
            pipe.sadd(self.keys.results(), digest)
            await pipe.execute()

    async def is_result(self, digest: str) -> bool:
        """Whether ``digest`` is some requester's result (not a blob someone uploaded)."""
        async with self.guard():
            return bool(await self._redis.sismember(self.keys.results(), digest))

    async def may_read(self, tenant: str, digest: str) -> bool:
        """Whether ``tenant``'s lineage holds ``digest``."""
        async with self.guard():
            return bool(await self._redis.sismember(self.keys.tenant_results(tenant), digest))

    async def wake_scheduler(self) -> None:
        """Nudge the scheduler: there is new work or a freed slot."""
        async with self.guard(), self._redis.pipeline(transaction=False) as pipe:
            pipe.lpush(self.keys.wake(), "1")
            pipe.ltrim(self.keys.wake(), 0, 15)
            await pipe.execute()

    async def wait_wake(self, timeout_s: float) -> bool:
        """Block until nudged or ``timeout_s`` passes; clears the nudges. True if nudged."""
        async with self.guard():
            got = await self._redis.blpop([self.keys.wake()], timeout=timeout_s)
            if got:
                await self._redis.delete(self.keys.wake())
        return bool(got)

    async def node_record(self, wf_id: str, node: str) -> dict[str, str]:
        """A node's progress hash (empty before the node started)."""
        async with self.guard():
            return strings(await self._redis.hgetall(self.keys.node(wf_id, node)))

    async def node_records(self, wf_id: str, nodes: Sequence[str]) -> dict[str, dict[str, str]]:
        """Progress hashes of several nodes in one round trip."""
        async with self.guard(), self._redis.pipeline(transaction=False) as pipe:
            for node in nodes:
                pipe.hgetall(self.keys.node(wf_id, node))
            raw = await pipe.execute()
        return {node: strings(r) for node, r in zip(nodes, raw, strict=True)}

    async def finish_node(self, wf_id: str, node: str, status: str, **fields: str) -> bool:
        """Mark a node done or failed, once; False if it was final already."""
        key = self.keys.node(wf_id, node)
        async with self.guard():
            if not await self._redis.hsetnx(key, "finished_at", repr(time.time())):
                return False
            async with self._redis.pipeline(transaction=True) as pipe:
                mapping: dict[Any, Any] = {"state": status, **fields}
                pipe.hset(key, mapping=mapping)
                pipe.hset(self.keys.workflow_nodes(wf_id), node, status)
                await pipe.execute()
        return True

    async def item_digests(self, wf_id: str, node: str, count: int) -> list[str | None]:
        """The result digest of each item of a node, in item order."""
        async with self.guard(), self._redis.pipeline(transaction=False) as pipe:
            for index in range(count):
                pipe.hget(self.keys.lineage(wf_id, node, index), "result_digest")
            raw = await pipe.execute()
        return [None if d is None else str(d) for d in raw]

    async def tenant_workflows(self, tenant: str) -> list[str]:
        """The tenant's workflow ids, oldest first."""
        async with self.guard():
            ids = await self._redis.zrange(self.keys.tenant_workflows(tenant), 0, -1)
        return [str(i) for i in ids]

    async def lineage(self, wf_id: str) -> list[LineageRecord]:
        """Every lineage record of a workflow, in request order."""
        async with self.guard():
            keys = await self._redis.zrange(self.keys.workflow_lineage(wf_id), 0, -1)
            async with self._redis.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.hgetall(str(key))
                raw = await pipe.execute()
        return [parse_lineage(strings(r)) for r in raw if r]

    async def lineage_of(self, requester: Requester) -> LineageRecord | None:
        """One requester's lineage record, or None."""
        key = self.keys.lineage(requester.workflow, requester.node, requester.index)
        async with self.guard():
            raw = await self._redis.hgetall(key)
        return parse_lineage(strings(raw)) if raw else None

    async def notify(self, wf_id: str, event: str) -> None:
        """Append an event to the workflow's stream (what long-poll waits block on)."""
        async with self.guard():
            await self._redis.xadd(
                self.keys.workflow_events(wf_id), {"event": event}, maxlen=1000, approximate=True
            )

    async def wait_event(self, wf_id: str, after: str, timeout_s: float) -> str:
        """Block until the workflow's stream has an event after ``after``; its id or ``after``."""
        async with self.guard():
            reply: Any = await self._redis.xread(
                {self.keys.workflow_events(wf_id): after}, count=1, block=int(timeout_s * 1000)
            )
        if not reply:
            return after
        return str(reply[0][1][-1][0])

    async def last_event(self, wf_id: str) -> str:
        """The id of the workflow's latest event ('0-0' if none)."""
        async with self.guard():
            reply = await self._redis.xrevrange(self.keys.workflow_events(wf_id), count=1)
        return str(reply[0][0]) if reply else "0-0"
