"""The system of record: action cache, in-flight ops, lineage, workflows, blob index.

Every multi-key change that must be atomic (join-or-create, claim, complete, fail,
workflow creation) is one Lua script (``store/lua/``), so two control-plane replicas, or
a control plane and a late worker, can never interleave halfway through one. The store
holds no state of its own: everything it knows is in Redis, so a process that restarts
loses nothing.

Errors from redis-py are converted here into StoreUnavailableError; callers never see a
redis exception.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any

import redis.asyncio as aioredis
import redis.exceptions

from flowmesh_core.errors import ConflictError, StoreUnavailableError
from flowmesh_core.hashing import validate_digest
from flowmesh_core.models import ItemStatus, LineageRecord, Requester
from flowmesh_core.store.connection import is_embedded, open_redis
from flowmesh_core.store.keys import KeySpace
from flowmesh_core.store.records import (
    BlobRecord,
    CompleteResult,
    JoinOutcome,
    JoinResult,
    WorkflowState,
    parse_lineage,
)

__all__ = ["Store"]

_SCRIPTS = ("join_or_create", "claim", "requeue", "complete", "fail", "create_workflow")


def _strings(raw: Mapping[Any, Any]) -> dict[str, str]:
    # Clients decode responses, so these are str already; this only narrows the type.
    return {str(k): str(v) for k, v in raw.items()}


def _lua(name: str) -> str:
    return resources.files("flowmesh_core.store").joinpath("lua", f"{name}.lua").read_text()


class Store:
    """FlowMesh's state in Redis (a server or the embedded in-process store)."""

    def __init__(self, client: aioredis.Redis, keys: KeySpace, url: str) -> None:
        self._redis = client
        self.keys = keys
        self.url = url
        self._scripts = {name: client.register_script(_lua(name)) for name in _SCRIPTS}

    @classmethod
    def open(cls, url: str, prefix: str = "fm") -> Store:
        """A store on the Redis at ``url`` (``memory://`` for the embedded one). No I/O."""
        return cls(open_redis(url), KeySpace(prefix), url)

    def scratch(self, token: str) -> Store:
        """A store on the same connection under a throw-away key space (see ``purge``)."""
        return Store(self._redis, self.keys.scratch(token), self.url)

    @property
    def embedded(self) -> bool:
        """Whether this store lives in this process."""
        return is_embedded(self.url)

    @asynccontextmanager
    async def _guard(self) -> AsyncIterator[None]:
        try:
            yield
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
            raise StoreUnavailableError(
                f"Redis at {self.url} does not answer ({exc}); start it, or point "
                "FLOWMESH_REDIS_URL at one that runs (memory:// for the embedded store)"
            ) from exc
        except redis.exceptions.RedisError as exc:
            raise StoreUnavailableError(f"Redis at {self.url} refused a command: {exc}") from exc

    async def _run(self, script: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        async with self._guard():
            return await self._scripts[script](keys=list(keys), args=list(args))

    async def ping(self) -> None:
        """Raise StoreUnavailableError unless Redis answers."""
        async with self._guard():
            await self._redis.ping()

    async def server_version(self) -> str:
        """The Redis server's version, or what the embedded store is."""
        if self.embedded:
            from importlib.metadata import version

            return f"embedded (fakeredis {version('fakeredis')}, in-process)"
        async with self._guard():
            info: dict[str, Any] = await self._redis.info("server")
        return str(info.get("redis_version", "unknown"))

    async def check_capabilities(self) -> None:
        """Raise StoreUnavailableError unless this Redis runs our scripts and streams.

        Compiles every FlowMesh Lua script on the server and exercises the stream
        commands that assignments need (consumer groups, XAUTOCLAIM: Redis 6.2+), on a
        scratch key that is deleted afterwards.
        """
        probe = self.keys.probe()
        async with self._guard():
            for script in self._scripts.values():
                await self._redis.script_load(script.script)
            try:
                await self._redis.xadd(probe, {"probe": "1"})
                await self._redis.xgroup_create(probe, "probe", id="0")
                await self._redis.xreadgroup("probe", "c", {probe: ">"}, count=1)
                await self._redis.xautoclaim(probe, "probe", "c", min_idle_time=0)
            finally:
                await self._redis.delete(probe)

    async def purge(self) -> int:
        """Delete every key under this store's prefix; the count deleted.

        For scratch prefixes only (tests, the doctor's round trip): on the production
        prefix this erases the action cache, lineage and every queue.
        """
        deleted = 0
        async with self._guard():
            async for key in self._redis.scan_iter(match=self.keys.pattern(), count=1000):
                deleted += await self._redis.delete(key)
        return deleted

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._redis.aclose()

    # -- action cache ------------------------------------------------------------------

    async def cached(self, domain: str, op_key: str) -> str | None:
        """The result digest recorded for ``op_key``, or None."""
        async with self._guard():
            value = await self._redis.get(self.keys.action(domain, op_key))
        return None if value is None else str(value)

    async def cached_many(self, domain: str, op_keys: Sequence[str]) -> list[str | None]:
        """Result digests for many op keys at once (None where absent)."""
        if not op_keys:
            return []
        async with self._guard():
            values = await self._redis.mget([self.keys.action(domain, k) for k in op_keys])
        return [None if v is None else str(v) for v in values]

    # -- in-flight ops -----------------------------------------------------------------

    async def join_or_create(
        self, domain: str, op_key: str, requester: Requester, spec: str
    ) -> JoinResult:
        """Attach ``requester`` to ``op_key``: cache hit, join, or create (exactly one wins).

        ``spec`` is the item's JSON, stored with the op so the pool can be rebuilt. Asking
        again for the same requester returns where it stands and changes nothing; asking
        with the same requester for a different op key raises ConflictError.
        """
        k = self.keys
        lineage = k.lineage(requester.workflow, requester.node, requester.index)
        keys = [
            k.action(domain, op_key),
            k.op(domain, op_key),
            k.waiters(domain, op_key),
            k.inflight(),
            lineage,
            k.workflow_lineage(requester.workflow),
            k.tenant_stats(requester.tenant),
        ]
        args = [
            k.inflight_member(domain, op_key),
            repr(time.time()),
            spec,
            requester.tenant,
            requester.workflow,
            requester.node,
            requester.index,
            op_key,
        ]
        outcome, status, digest, *_ = await self._run("join_or_create", keys, args)
        if outcome == "conflict":
            raise ConflictError(
                f"{requester.workflow}/{requester.node}[{requester.index}] already asked for "
                f"op {status}, not {op_key}"
            )
        return JoinResult(JoinOutcome(outcome), ItemStatus(status), digest or None)

    async def op_state(self, domain: str, op_key: str) -> dict[str, str]:
        """The in-flight op's hash (empty when nothing is in flight)."""
        async with self._guard():
            state = await self._redis.hgetall(self.keys.op(domain, op_key))
        return _strings(state)

    async def inflight(self) -> list[tuple[str, str]]:
        """Every op pending or running, oldest first, as (domain, op_key)."""
        async with self._guard():
            members = await self._redis.zrange(self.keys.inflight(), 0, -1)
        pairs = (str(m).rsplit("|", 1) for m in members)
        return [(domain, key) for domain, key in pairs]

    async def claim(self, domain: str, op_key: str, batch_id: str, worker: str) -> int:
        """Pending -> running on ``worker``; the attempt number, or 0 if not pending."""
        k = self.keys
        keys = [k.op(domain, op_key), k.waiters(domain, op_key), k.cluster_stats()]
        return int(await self._run("claim", keys, [batch_id, worker, repr(time.time())]))

    async def requeue(self, domain: str, op_key: str, worker: str) -> bool:
        """Running on ``worker`` -> pending again (the worker is gone); False otherwise."""
        keys = [self.keys.op(domain, op_key), self.keys.waiters(domain, op_key)]
        return bool(await self._run("requeue", keys, [worker]))

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
    ) -> CompleteResult:
        """Record ``digest`` for ``op_key`` and release every waiting requester, atomically.

        The first result wins; a later one for the same key is reported as a duplicate
        and changes nothing. ``cost_usd`` and ``energy_wh`` are split across requesters.
        """
        validate_digest(digest)
        k = self.keys
        now = time.time()
        keys = [
            k.action(domain, op_key),
            k.op(domain, op_key),
            k.waiters(domain, op_key),
            k.inflight(),
            k.cluster_stats(),
        ]
        args = [
            k.inflight_member(domain, op_key),
            digest,
            repr(now),
            batch_id,
            worker,
            repr(started_at if started_at is not None else now),
            repr(float(cost_usd)),
            repr(float(energy_wh)),
        ]
        outcome, recorded, *released = await self._run("complete", keys, args)
        return CompleteResult(recorded, outcome == "duplicate", tuple(released))

    async def fail(self, domain: str, op_key: str, error: str) -> tuple[str, ...]:
        """Fail the op for every waiting requester; the lineage keys that were failed."""
        k = self.keys
        keys = [
            k.action(domain, op_key),
            k.op(domain, op_key),
            k.waiters(domain, op_key),
            k.inflight(),
            k.cluster_stats(),
        ]
        args = [k.inflight_member(domain, op_key), error, repr(time.time())]
        return tuple(await self._run("fail", keys, args))

    # -- workflows and lineage ---------------------------------------------------------

    async def create_workflow(
        self, wf_id: str, tenant: str, name: str, spec: str, nodes: Sequence[str]
    ) -> None:
        """Store a workflow and its node states in one step; ConflictError if the id exists."""
        k = self.keys
        keys = [k.workflow(wf_id), k.workflow_nodes(wf_id), k.tenant_workflows(tenant)]
        args = [wf_id, tenant, name, repr(time.time()), spec, *nodes]
        if not await self._run("create_workflow", keys, args):
            raise ConflictError(f"workflow id {wf_id!r} is already taken")

    async def workflow(self, wf_id: str) -> WorkflowState | None:
        """A stored workflow, or None."""
        async with self._guard(), self._redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(self.keys.workflow(wf_id))
            pipe.hgetall(self.keys.workflow_nodes(wf_id))
            head, nodes = await pipe.execute()
        if not head:
            return None
        return WorkflowState(
            id=wf_id,
            tenant=head["tenant"],
            name=head["name"],
            status=head["status"],
            created_at=float(head["created_at"]),
            spec=head["spec"],
            nodes=nodes,
        )

    async def set_node_status(self, wf_id: str, node: str, status: str) -> None:
        """Record a node's status."""
        async with self._guard():
            await self._redis.hset(self.keys.workflow_nodes(wf_id), node, status)

    async def tenant_workflows(self, tenant: str) -> list[str]:
        """The tenant's workflow ids, oldest first."""
        async with self._guard():
            ids = await self._redis.zrange(self.keys.tenant_workflows(tenant), 0, -1)
        return [str(i) for i in ids]

    async def lineage(self, wf_id: str) -> list[LineageRecord]:
        """Every lineage record of a workflow, in request order."""
        async with self._guard():
            keys = await self._redis.zrange(self.keys.workflow_lineage(wf_id), 0, -1)
            async with self._redis.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.hgetall(str(key))
                raw = await pipe.execute()
        return [parse_lineage(_strings(r)) for r in raw if r]

    async def lineage_of(self, requester: Requester) -> LineageRecord | None:
        """One requester's lineage record, or None."""
        key = self.keys.lineage(requester.workflow, requester.node, requester.index)
        async with self._guard():
            raw = await self._redis.hgetall(key)
        return parse_lineage(_strings(raw)) if raw else None

    # -- blob index and stats ----------------------------------------------------------

    async def record_blob(
        self, digest: str, size: int, media_type: str, holder: str | None = None
    ) -> None:
        """Index a blob (idempotent) and, if given, a worker that holds a local copy."""
        validate_digest(digest)
        async with self._guard(), self._redis.pipeline(transaction=True) as pipe:
            key = self.keys.blob(digest)
            pipe.hset(key, mapping={"size": size, "media_type": media_type})
            pipe.hsetnx(key, "created_at", repr(time.time()))
            if holder is not None:
                pipe.sadd(self.keys.blob_holders(digest), holder)
            await pipe.execute()

    async def blob(self, digest: str) -> BlobRecord | None:
        """What the index knows of a blob, or None."""
        validate_digest(digest)
        async with self._guard(), self._redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(self.keys.blob(digest))
            pipe.smembers(self.keys.blob_holders(digest))
            info, holders = await pipe.execute()
        if not info:
            return None
        return BlobRecord(
            digest=digest,
            size=int(info["size"]),
            media_type=info["media_type"],
            created_at=float(info["created_at"]),
            holders=frozenset(holders),
        )

    async def tenant_stats(self, tenant: str) -> dict[str, int]:
        """Per-tenant counters: requested, cache_hits, joins, created."""
        async with self._guard():
            raw = await self._redis.hgetall(self.keys.tenant_stats(tenant))
        return {str(k): int(v) for k, v in raw.items()}

    async def cluster_stats(self) -> dict[str, int]:
        """Cluster-wide counters: executed, failed, claimed."""
        async with self._guard():
            raw = await self._redis.hgetall(self.keys.cluster_stats())
        return {str(k): int(v) for k, v in raw.items()}
