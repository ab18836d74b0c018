"""Reads of workflows, their nodes' progress and lineage, and the events that wake waiting
clients. Their transitions are the ledger's (``store/ledger.py``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from flowmesh_core.models import LineageRecord, Requester
from flowmesh_core.models.api import NodeState
from flowmesh_core.store._base import StoreBase, strings
from flowmesh_core.store.records import ActiveWorkflow, WorkflowState, parse_lineage

__all__ = ["WorkflowsMixin"]


class WorkflowsMixin(StoreBase):
    """Workflow and node records, lineage, per-workflow event streams."""

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

    async def progress(
        self, wf_id: str, nodes: Sequence[str]
    ) -> tuple[bool, bool, dict[str, dict[str, str]]]:
        """(exists, final, node records) of a workflow in one round trip, without its
        spec: what advancing a workflow whose spec is known reads each round."""
        async with self.guard(), self._redis.pipeline(transaction=False) as pipe:
            pipe.hmget(self.keys.workflow(wf_id), ["tenant", "finished_at"])
            for node in nodes:
                pipe.hgetall(self.keys.node(wf_id, node))
            (tenant, finished), *raw = await pipe.execute()
        records = {node: strings(r) for node, r in zip(nodes, raw, strict=True)}
        return tenant is not None, finished is not None, records

    async def active_workflows(self, limit: int) -> list[ActiveWorkflow]:
        """Up to ``limit`` workflows not final yet, oldest first, in three round trips
        whatever their number: the index, then each one's graph summary and node
        statuses, then the item counts of its started nodes. The spec is never read (it
        may be as big as a request body). One finished meanwhile is left out, and so is
        one stored before summaries were (it has none: docs/autoscaling.md)."""
        async with self.guard():
            ids = [
                str(i) for i in await self._redis.zrange(self.keys.active_workflows(), 0, limit - 1)
            ]
            if not ids:
                return []
            async with self._redis.pipeline(transaction=False) as pipe:
                for wf_id in ids:
                    pipe.hget(self.keys.workflow(wf_id), "graph")
                    pipe.hgetall(self.keys.workflow_nodes(wf_id))
                raw = await pipe.execute()
            heads = [
                (wf_id, graph, strings(nodes))
                for wf_id, graph, nodes in zip(ids, raw[::2], raw[1::2], strict=True)
                if graph is not None
            ]
            started = [
                (wf_id, node)
                for wf_id, _, nodes in heads
                for node, status in nodes.items()
                if status != NodeState.WAITING
            ]
            async with self._redis.pipeline(transaction=False) as pipe:
                for wf_id, node in started:
                    pipe.hmget(self.keys.node(wf_id, node), ["items_total", "remaining"])
                counts = await pipe.execute() if started else []
        items: dict[str, dict[str, tuple[int, int]]] = {wf_id: {} for wf_id, _, _ in heads}
        for (wf_id, node), (total, left) in zip(started, counts, strict=True):
            items[wf_id][node] = (int(total or 0), int(left or 0))
        return [
            ActiveWorkflow(wf_id, str(graph), nodes, items[wf_id]) for wf_id, graph, nodes in heads
        ]

    async def may_read(self, tenant: str, digest: str) -> bool:
        """Whether ``tenant``'s lineage holds ``digest``."""
        async with self.guard():
            return bool(await self._redis.sismember(self.keys.tenant_results(tenant), digest))

    async def not_readable_by(self, tenant: str, digests: Sequence[str]) -> list[str]:
        """Those of ``digests`` that ``tenant``'s lineage does not hold (one round trip)."""
        if not digests:
            return []
        async with self.guard():
            held = await self._redis.smismember(self.keys.tenant_results(tenant), list(digests))
        return [d for d, h in zip(digests, held, strict=True) if not h]

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

    async def workflow_events(
        self, wf_id: str, after: str, timeout_s: float
    ) -> tuple[list[str], str]:
        """The workflow's events after ``after`` ('0-0': from the first), blocking up to
        ``timeout_s`` while there are none; (their names, the cursor to read on from)."""
        async with self.guard():
            reply: Any = await self._redis.xread(
                {self.keys.workflow_events(wf_id): after},
                count=1000,
                block=max(int(timeout_s * 1000), 1),
            )
        if not reply:
            return [], after
        entries = reply[0][1]
        return [str(fields.get("event", "")) for _, fields in entries], str(entries[-1][0])
