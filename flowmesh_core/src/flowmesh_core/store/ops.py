"""The life of an op in Redis: action cache, join-or-create, claim, requeue, complete, fail.

Every transition that touches more than one key is one Lua script (``store/lua/``), so
two control-plane replicas, or a control plane and a late worker, never interleave
halfway through one. Each script is raced in the contract tests.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence

from flowmesh_core.errors import ConflictError
from flowmesh_core.hashing import validate_digest
from flowmesh_core.models import Item, ItemStatus, Requester
from flowmesh_core.store._base import StoreBase, strings
from flowmesh_core.store.records import CompleteResult, JoinOutcome, JoinResult

__all__ = ["OpsMixin", "node_failure", "signature_meta"]

DEFAULT_VIRTUAL_COST = 0.01
"""Seconds of virtual time one item advances its tenant's fair-queuing clock by."""


def signature_meta(item: Item) -> str:
    """What a batch signature means, as stored beside the ready pool (JSON)."""
    model = item.model.canonical() if item.model else None
    return json.dumps({"kind": item.kind, "version": item.version, "model": model}, sort_keys=True)


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

    async def join_or_create(
        self,
        domain: str,
        requester: Requester,
        item: Item,
        *,
        virtual_cost: float = DEFAULT_VIRTUAL_COST,
    ) -> JoinResult:
        """Attach ``requester`` to ``item``'s op key: cache hit, join, or create.

        Exactly one caller creates the op (and enqueues it in the ready pool); asking
        again for the same requester returns where it stands and changes nothing; asking
        with the same requester for a different op key raises ConflictError.
        """
        (result,) = await self.join_many(domain, [(requester, item)], virtual_cost=virtual_cost)
        return result

    async def join_many(
        self,
        domain: str,
        requests: Sequence[tuple[Requester, Item]],
        *,
        virtual_cost: float = DEFAULT_VIRTUAL_COST,
    ) -> list[JoinResult]:
        """``join_or_create`` for many requests in one round trip (each one atomic)."""
        if not requests:
            return []
        k = self.keys
        now = repr(time.time())
        async with self.guard(), self._redis.pipeline(transaction=False) as pipe:
            for requester, item in requests:
                member = k.ready_member(requester.tenant, domain, item.op_key)
                keys = [
                    k.action(domain, item.op_key),
                    k.op(domain, item.op_key),
                    k.waiters(domain, item.op_key),
                    k.inflight(),
                    k.lineage(requester.workflow, requester.node, requester.index),
                    k.workflow_lineage(requester.workflow),
                    k.tenant_stats(requester.tenant),
                    k.node(requester.workflow, requester.node),
                    k.ready(item.signature),
                    k.ready_signatures(),
                    k.signature_meta(item.signature),
                    k.vclock(),
                    k.tenant_results(requester.tenant),
                ]
                args = [
                    k.inflight_member(domain, item.op_key),
                    now,
                    item.model_dump_json(),
                    requester.tenant,
                    requester.workflow,
                    requester.node,
                    requester.index,
                    item.op_key,
                    item.signature,
                    member,
                    repr(virtual_cost),
                    signature_meta(item),
                ]
                await self.queue_script(pipe, "join_or_create", keys, args)
            replies = await pipe.execute()
        return [
            self._join_result(req, item, reply)
            for (req, item), reply in zip(requests, replies, strict=True)
        ]

    @staticmethod
    def _join_result(requester: Requester, item: Item, reply: list[object]) -> JoinResult:
        outcome, status, digest, node_done = (str(x) for x in reply)
        if outcome == "conflict":
            raise ConflictError(
                f"{requester.workflow}/{requester.node}[{requester.index}] already asked for "
                f"op {status}, not {item.op_key}"
            )
        return JoinResult(
            JoinOutcome(outcome), ItemStatus(status), digest or None, node_done == "1"
        )

    async def op_state(self, domain: str, op_key: str) -> dict[str, str]:
        """The in-flight op's hash (empty when nothing is in flight)."""
        async with self.guard():
            state = await self._redis.hgetall(self.keys.op(domain, op_key))
        return strings(state)

    async def inflight(self) -> list[tuple[str, str]]:
        """Every op pending or running, oldest first, as (domain, op_key)."""
        async with self.guard():
            members = await self._redis.zrange(self.keys.inflight(), 0, -1)
        pairs = (str(m).rsplit("|", 1) for m in members)
        return [(domain, key) for domain, key in pairs]

    async def claim_batch(
        self, signature: str, max_items: int, worker: str, batch_id: str, fence: str
    ) -> int:
        """Move up to ``max_items`` of ``signature`` from the ready pool onto ``worker``.

        Marks them running, records the batch and appends it to the worker's assignment
        stream, in one step. Returns how many items were assigned (0: none pending), or
        -1 if ``fence`` no longer holds the scheduler lease (nothing was assigned).
        """
        k = self.keys
        keys = [
            k.ready(signature),
            k.ready_signatures(),
            k.assignments(worker),
            k.scheduler_lease(),
            k.batch(batch_id),
            k.cluster_stats(),
            k.worker(worker),
            k.signature_meta(signature),
        ]
        args = [
            fence,
            max_items,
            batch_id,
            worker,
            repr(time.time()),
            signature,
            k.op_template(),
        ]
        status, size = await self.run_script("claim_batch", keys, args)
        return -1 if status == "fenced" else int(size)

    async def requeue(self, domain: str, op_key: str, worker: str) -> bool:
        """Running on ``worker`` -> back in the ready pool (the worker is gone)."""
        k = self.keys
        keys = [k.op(domain, op_key), k.waiters(domain, op_key), k.ready_signatures()]
        args = [worker, repr(time.time()), k.ready("")]
        return bool(await self.run_script("requeue", keys, args))

    def _op_keys(self, domain: str, op_key: str) -> list[str]:
        """The keys that ending an op (complete or fail) touches, in script order."""
        k = self.keys
        return [
            k.action(domain, op_key),
            k.op(domain, op_key),
            k.waiters(domain, op_key),
            k.inflight(),
            k.cluster_stats(),
        ]

    async def complete(
        self,
        domain: str,
        op_key: str,
        digest: str,
        *,
        batch_id: str = "",
        worker: str = "",
        started_at: float | None = None,
        cost_usd: float = 0.0,
        energy_wh: float = 0.0,
        worker_seconds: float = 0.0,
    ) -> CompleteResult:
        """Record ``digest`` for ``op_key`` and release every waiting requester, atomically.

        The first result wins; a later one is reported as a duplicate and changes
        nothing. Cost, energy and worker-seconds are split across the requesters.
        ``finished_nodes`` lists the node keys whose last pending item this released.
        """
        validate_digest(digest)
        k = self.keys
        now = time.time()
        keys = [*self._op_keys(domain, op_key), k.results(), k.settle()]
        args = [
            k.inflight_member(domain, op_key),
            digest,
            repr(now),
            batch_id,
            worker,
            repr(started_at if started_at is not None else now),
            repr(float(cost_usd)),
            repr(float(energy_wh)),
            repr(float(worker_seconds)),
            k.stats_template(),
            k.results_template(),
        ]
        outcome, recorded, released, *nodes = await self.run_script("complete", keys, args)
        return CompleteResult(recorded, outcome == "duplicate", int(released), tuple(nodes))

    async def fail(self, domain: str, op_key: str, error: str) -> tuple[str, ...]:
        """Fail the op for every waiting requester; the node keys that failed with it."""
        k = self.keys
        keys = [*self._op_keys(domain, op_key), k.settle()]
        node_error = node_failure(op_key, error)
        args = [
            k.inflight_member(domain, op_key),
            error,
            repr(time.time()),
            k.ready(""),
            node_error,
        ]
        return tuple(await self.run_script("fail", keys, args))

    async def unsettled(self) -> dict[str, str]:
        """Nodes whose last item ended but whose transition is not applied yet (see
        ``KeySpace.settle``): node key -> "done" or "failed\n<error>"."""
        async with self.guard():
            return strings(await self._redis.hgetall(self.keys.settle()))

    async def settled(self, node_key: str) -> None:
        """A node's transition has been applied in full."""
        async with self.guard():
            await self._redis.hdel(self.keys.settle(), node_key)

    async def finish_batch(
        self, batch_id: str, worker: str, size: int, seconds: float, cost: float, energy: float
    ) -> bool:
        """Free the worker's slot and count the batch, once; False if already done."""
        k = self.keys
        keys = [k.batch(batch_id), k.worker(worker), k.cluster_stats()]
        args = [size, repr(seconds), repr(cost), repr(energy)]
        return bool(await self.run_script("finish_batch", keys, args))


def node_failure(op_key: str, error: str) -> str:
    """The error a node records when one of its items fails for good."""
    return f"item {op_key[:12]}: {error}"
