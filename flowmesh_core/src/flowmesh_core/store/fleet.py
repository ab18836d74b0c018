"""Workers, the scheduler lease, tenants, the blob index, counters and learned models.

Worker liveness is a heartbeat timestamp in a sorted set, so finding the workers whose
heartbeat lapsed is one range query. The scheduler lease is a fencing token with a TTL:
only its holder's ``claim_batch`` calls assign anything.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

import redis.exceptions

from flowmesh_core.errors import ConflictError, StreamGroupMissingError
from flowmesh_core.hashing import validate_digest
from flowmesh_core.models import WorkerProfile
from flowmesh_core.store._base import StoreBase, strings
from flowmesh_core.store.records import BlobRecord

__all__ = [
    "ASSIGNMENT_GROUP",
    "EVENTS_GROUP",
    "FleetMixin",
    "ReadySummary",
    "RoundView",
    "SignatureInputs",
    "WorkerRecord",
]

ASSIGNMENT_GROUP = "worker"
EVENTS_GROUP = "control"
_UPDATE_ATTEMPTS = 16
"""How many times ``update_json`` retries when other writers keep changing the key."""


def _pairs(flat: Sequence[Any]) -> list[tuple[Any, Any]]:
    """``[a, 1, b, 2]`` as ``[(a, 1), (b, 2)]`` (a flat Lua reply)."""
    return list(zip(flat[::2], flat[1::2], strict=True))


def _error_code(exc: redis.exceptions.ResponseError) -> str:
    """The code a Redis error reply starts with (``NOGROUP``, ``BUSYGROUP``): the part of
    the reply the protocol defines, unlike the words after it."""
    return str(exc).split(" ", 1)[0]


class WorkerRecord:
    """A registered worker as stored: profile, heartbeat, warm models, batches in flight,
    and the checkpoints and input blobs it keeps on local disk (``held``, each most
    recent first).

    A ``draining`` worker is finishing what it holds and takes no new batches.
    """

    __slots__ = ("draining", "heartbeat", "held", "inflight", "profile", "warm")

    def __init__(
        self,
        profile: WorkerProfile,
        heartbeat: float,
        warm: list[str],
        inflight: int,
        draining: bool = False,
        held: list[str] | None = None,
    ) -> None:
        self.profile = profile
        self.heartbeat = heartbeat
        self.warm = warm
        self.inflight = inflight
        self.draining = draining
        self.held = held or []

    @classmethod
    def from_fields(cls, fields: Mapping[str, str]) -> WorkerRecord:
        """The record of a worker's hash (which has a profile); missing fields as at start."""
        return cls(
            WorkerProfile.model_validate_json(fields["profile"]),
            float(fields.get("heartbeat") or 0),
            json.loads(fields.get("warm") or "[]"),
            int(fields.get("inflight") or 0),
            fields.get("draining") == "1",
            json.loads(fields.get("held") or "[]"),
        )


ReadySummary: TypeAlias = list[tuple[str, int, list[tuple[str, float]]]]
"""Each signature with items waiting: (signature, count, first members with their start time)."""


INPUTS_LISTED = 32
"""How many of a signature's input blobs (the largest) a scheduling round reads."""


@dataclass(frozen=True, slots=True)
class SignatureInputs:
    """What a ready-pool group's items read (since its pool last emptied): ``items``
    created, the indexed ``nbytes`` of the blobs they read, and the largest of those
    blobs with the bytes read of each (``blobs``, at most ``INPUTS_LISTED``)."""

    items: int
    nbytes: int
    blobs: dict[str, float]


@dataclass(frozen=True, slots=True)
class RoundView:
    """What a scheduling round reads, as of one moment (``FleetMixin.round_view``)."""

    workers: list[WorkerRecord]
    pool: ReadySummary
    meaning: dict[str, dict[str, Any]]  # signature in the pool -> as ``signature_info``
    tree_bytes: dict[str, int]  # signature -> bytes of its checkpoint model's files, if known
    usage: dict[str, float]  # tenant -> worker-seconds, decayed to the view's time
    inputs: dict[str, SignatureInputs]  # signature -> what its items read, if known


class FleetMixin(StoreBase):
    """Worker registry, lease, tenants, blob index, stats."""

    # -- workers -----------------------------------------------------------------------

    async def register_worker(self, profile: WorkerProfile) -> None:
        """Record a worker that starts, and create its assignment stream's consumer group.

        A start under an id that drained or retired before (a restart after SIGTERM)
        takes work again: its ``draining`` and ``retired`` marks are cleared in the MULTI
        that records the profile, so no reader sees the new registration with old marks.
        """
        await self._record_worker(profile, fresh=True)

    async def rejoin_worker(self, profile: WorkerProfile) -> None:
        """Record a running worker again whose registration or consumer group was lost
        (Redis lost its data, or the control plane took the worker for dead and forgot
        it). Unlike ``register_worker`` it keeps a ``draining`` mark still on record: an
        operator's cordon outlasts the recovery."""
        await self._record_worker(profile, fresh=False)

    async def _record_worker(self, profile: WorkerProfile, *, fresh: bool) -> None:
        k = self.keys
        record = k.worker(profile.worker_id)
        now = time.time()
        async with self.guard():
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.hset(
                    record, mapping={"profile": profile.model_dump_json(), "heartbeat": repr(now)}
                )
                pipe.hsetnx(record, "inflight", 0)
                pipe.hsetnx(record, "warm", "[]")
                if fresh:
                    pipe.hdel(record, "draining", "retired")
                pipe.zadd(k.workers(), {profile.worker_id: now})
                await pipe.execute()
            await self.create_group(k.assignments(profile.worker_id), ASSIGNMENT_GROUP)

    async def heartbeat(
        self,
        worker_id: str,
        warm: Sequence[str] | None = None,
        held: Sequence[str] | None = None,
    ) -> bool:
        """A worker is alive (and, if given, holds these models warm and these checkpoint
        and input-blob digests on its disk, most recent first: the scheduler's locality
        term).

        False, and nothing written, if the worker is not registered (taken for dead and
        forgotten, or Redis lost its data: it registers again when its next read finds
        its stream gone) or a later beat is on record: a beat delayed by a partition and
        delivered late never revives a forgotten worker nor makes a live one look dead.
        """
        keys = [self.keys.worker(worker_id), self.keys.workers()]
        warm_json = "" if warm is None else json.dumps(sorted(warm))
        held_json = "" if held is None else json.dumps(list(held))
        args = [worker_id, repr(time.time()), warm_json, held_json]
        reply = await self.run_script("heartbeat", keys, args)
        return bool(reply)

    async def deregister_worker(self, worker_id: str) -> None:
        """Remove a worker that is shutting down cleanly."""
        async with self.guard(), self._redis.pipeline(transaction=True) as pipe:
            pipe.zrem(self.keys.workers(), worker_id)
            pipe.delete(self.keys.worker(worker_id))
            await pipe.execute()

    async def set_draining(self, worker_id: str, draining: bool = True) -> None:
        """Stop assigning to a worker (it finishes what it holds), or with ``draining``
        false assign to it again: an operator's cordon and uncordon. A retired worker
        stays retired; a stopping worker drains itself and should not be uncordoned."""
        async with self.guard():
            if draining:
                await self._redis.hset(self.keys.worker(worker_id), "draining", "1")
            else:
                await self._redis.hdel(self.keys.worker(worker_id), "draining")

    async def retire_worker(self, worker_id: str) -> None:
        """Hand a stopping worker's remaining batches back: the next reclaim round re-plans
        whatever is still on its stream (read or not) and then removes it.

        One path for "nothing left" and "batches left": a plain deregistration could race
        a batch the scheduler assigned just before it, and strand that batch.
        """
        async with self.guard(), self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(self.keys.worker(worker_id), mapping={"draining": "1", "retired": "1"})
            pipe.zadd(self.keys.workers(), {worker_id: 0})
            await pipe.execute()

    async def is_retired(self, worker_id: str) -> bool:
        """Whether a worker left on purpose (``retire_worker``) rather than went silent."""
        async with self.guard():
            return await self._redis.hget(self.keys.worker(worker_id), "retired") == "1"

    async def read_assignments(
        self, worker_id: str, count: int, block_ms: int | None, *, pending: bool = False
    ) -> list[tuple[str, dict[str, str]]]:
        """Up to ``count`` batches from a worker's stream, as (entry id, fields).

        ``pending`` re-reads the entries this worker was given but never acked (after a
        restart under the same id) instead of new ones; it never blocks. A stream or group
        that is gone raises StreamGroupMissingError (see ``rejoin_worker``).
        """
        stream = self.keys.assignments(worker_id)
        async with self.guard(), self._group_of(stream, ASSIGNMENT_GROUP):
            reply: Any = await self._redis.xreadgroup(
                ASSIGNMENT_GROUP,
                worker_id,
                {stream: "0" if pending else ">"},
                count=count,
                block=None if pending else block_ms,
            )
        return [(str(i), strings(f)) for i, f in (reply[0][1] if reply else []) if f]

    async def report_batch(self, worker_id: str, entry_id: str, report: dict[str, str]) -> None:
        """Put a completion report on the events stream and ack its assignment, atomically.

        The caller has written every result to the CAS already: the ack is the promise
        that nothing of this batch needs doing again.
        """
        async with self.guard(), self._redis.pipeline(transaction=True) as pipe:
            pipe.xadd(self.keys.events(), report)  # type: ignore[arg-type]
            pipe.xack(self.keys.assignments(worker_id), ASSIGNMENT_GROUP, entry_id)
            await pipe.execute()

    async def workers(self) -> list[WorkerRecord]:
        """Every registered worker, alive or not (see ``heartbeat``)."""
        async with self.guard():
            ids = [str(i) for i in await self._redis.zrange(self.keys.workers(), 0, -1)]
            async with self._redis.pipeline(transaction=False) as pipe:
                for worker_id in ids:
                    pipe.hgetall(self.keys.worker(worker_id))
                raw = await pipe.execute()
        return [WorkerRecord.from_fields(f) for f in map(strings, raw) if "profile" in f]

    async def dead_workers(self, cutoff: float) -> list[str]:
        """Workers whose last heartbeat is older than ``cutoff`` (a timestamp)."""
        async with self.guard():
            ids = await self._redis.zrangebyscore(self.keys.workers(), "-inf", cutoff)
        return [str(i) for i in ids]

    async def take_assignments(self, worker_id: str) -> list[tuple[str, str]]:
        """Every batch on a worker's stream, read or not, as (entry id, batch id).

        Used to re-plan a dead worker's work: unread entries are read, read-but-unacked
        ones are claimed, both under the consumer name ``reclaimer``. A stream (or group)
        that is gone holds nothing to take: Redis lost it, or never had it because the
        worker's heartbeat outlived its registration.
        """
        stream = self.keys.assignments(worker_id)
        taken: list[tuple[str, str]] = []
        try:
            async with self.guard(), self._group_of(stream, ASSIGNMENT_GROUP):
                reply: Any = await self._redis.xautoclaim(
                    stream, ASSIGNMENT_GROUP, "reclaimer", min_idle_time=0, count=10_000
                )
                taken += [(str(i), str(f["batch_id"])) for i, f in reply[1] if f]
                fresh: Any = await self._redis.xreadgroup(
                    ASSIGNMENT_GROUP, "reclaimer", {stream: ">"}, count=10_000
                )
        except StreamGroupMissingError:
            return taken
        taken += [(str(i), str(f["batch_id"])) for i, f in (fresh[0][1] if fresh else [])]
        return taken

    async def drop_assignment(self, worker_id: str, entry_id: str, batch_id: str) -> list[str]:
        """Forget one assigned batch; the members ("tenant|domain|op_key") it held."""
        async with self.guard():
            members = await self._redis.hget(self.keys.batch(batch_id), "members")
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.delete(self.keys.batch(batch_id))
                pipe.xack(self.keys.assignments(worker_id), ASSIGNMENT_GROUP, entry_id)
                pipe.xdel(self.keys.assignments(worker_id), entry_id)
                await pipe.execute()
        return str(members).split("\n") if members else []

    async def forget_worker(self, worker_id: str) -> None:
        """Remove a dead worker and its assignment stream."""
        async with self.guard(), self._redis.pipeline(transaction=True) as pipe:
            pipe.zrem(self.keys.workers(), worker_id)
            pipe.delete(self.keys.worker(worker_id), self.keys.assignments(worker_id))
            await pipe.execute()

    async def worker_profile(self, worker_id: str) -> WorkerProfile | None:
        """One worker's profile, or None if it is not registered."""
        async with self.guard():
            raw = await self._redis.hget(self.keys.worker(worker_id), "profile")
        return None if raw is None else WorkerProfile.model_validate_json(str(raw))

    @contextlib.asynccontextmanager
    async def _group_of(self, stream: str, group: str) -> AsyncIterator[None]:
        """Convert Redis's NOGROUP reply to a read of ``stream`` into
        StreamGroupMissingError (inside ``guard``, which converts everything else)."""
        try:
            yield
        except redis.exceptions.ResponseError as exc:
            if _error_code(exc) != "NOGROUP":
                raise
            raise StreamGroupMissingError(
                f"consumer group {group!r} of {stream} is gone: Redis at {self.shown_url} "
                "lost its data (restarted without persistence, or failed over to an empty "
                "replica), or the stream was deleted"
            ) from exc

    async def batch_record(self, batch_id: str) -> dict[str, str]:
        """An assigned batch's record (empty once its report was applied)."""
        async with self.guard():
            return strings(await self._redis.hgetall(self.keys.batch(batch_id)))

    async def signature_info(self, signature: str) -> dict[str, Any]:
        """What a batch signature means: kind, version, model ({} if unknown)."""
        async with self.guard():
            meta = await self._redis.hget(self.keys.signature_meta(signature), "meta")
        return dict(json.loads(str(meta))) if meta else {}

    async def ready_summary(self, head: int) -> ReadySummary:
        """Each signature with items waiting: (signature, count, first ``head`` members).

        Members come with their fair-queuing start time, oldest first.
        """
        async with self.guard():
            sigs = [str(s) for s in await self._redis.zrange(self.keys.ready_signatures(), 0, -1)]
            async with self._redis.pipeline(transaction=False) as pipe:
                for sig in sigs:
                    pipe.zcard(self.keys.ready(sig))
                    pipe.zrange(self.keys.ready(sig), 0, head - 1, withscores=True)
                raw = await pipe.execute()
        summary = []
        for i, sig in enumerate(sigs):
            count = int(raw[2 * i])
            if count:
                members = [(str(m), float(score)) for m, score in raw[2 * i + 1]]
                summary.append((sig, count, members))
        return summary

    async def round_view(self, head: int, now: float, half_life_s: float) -> RoundView:
        """The fleet (as ``workers``), the ready pool (as ``ready_summary(head)``) with what
        each of its signatures means (as ``signature_info``), and every tenant's fair-share
        usage decayed to ``now`` with ``half_life_s``: one round trip that reads them all
        at one moment (``round_view.lua``)."""
        args = [head, repr(now), repr(float(half_life_s)), INPUTS_LISTED]
        workers, pool, usage = await self.run_script("round_view", [], args)
        names = ("profile", "heartbeat", "warm", "inflight", "draining", "held")
        records = [
            WorkerRecord.from_fields(
                {k: str(v) for k, v in zip(names, fields, strict=True) if v is not None}
            )
            for fields in workers
        ]
        summary = [
            (str(sig), int(count), [(str(m), float(s)) for m, s in _pairs(members)])
            for sig, count, members, *_ in pool
        ]
        meaning = {str(sig): dict(json.loads(m)) if m else {} for sig, _, _, m, *_ in pool}
        sizes = {str(sig): int(n) for sig, _, _, _, n, *_ in pool if n}
        usage_now = {str(t): float(u) for t, u in _pairs(usage)}
        inputs = {
            str(sig): SignatureInputs(
                int(items), int(nbytes), {str(d): float(b) for d, b in _pairs(blobs)}
            )
            for sig, _, _, _, _, items, nbytes, blobs in pool
            if items and nbytes
        }
        return RoundView(records, summary, meaning, sizes, usage_now, inputs)

    # -- the scheduler lease -----------------------------------------------------------

    async def new_fence(self) -> str:
        """A fencing token no scheduler has used before."""
        async with self.guard():
            epoch = await self._redis.incr(self.keys.scheduler_epoch())
        return f"{epoch}:{time.time():.6f}"

    async def hold_lease(self, token: str, ttl_s: float) -> bool:
        """Acquire or renew the scheduler lease for ``token``; False if another holds it."""
        return await self.contend_lease(token, ttl_s) is None

    async def contend_lease(self, token: str, ttl_s: float) -> float | None:
        """``hold_lease``, answering None if ``token`` holds the lease now, else the
        seconds until the other holder's lease lapses unless it renews."""
        keys = [self.keys.scheduler_lease()]
        reply = int(await self.run_script("lease", keys, [token, int(ttl_s * 1000)]))
        return None if reply == 1 else -reply / 1000

    async def release_lease(self, token: str) -> None:
        """Give the lease up if ``token`` holds it."""
        await self.run_script("release_lease", [self.keys.scheduler_lease()], [token])

    # -- tenants -----------------------------------------------------------------------

    async def add_tenant(self, token_hash: str, record: str, name: str) -> bool:
        """Store a tenant under its token's hash; False if the name is taken."""
        async with self.guard():
            if not await self._redis.hsetnx(self.keys.tenant(name), "record", record):
                return False
            await self._redis.hset(self.keys.tenant_tokens(), token_hash, record)
        return True

    async def replace_tokens(self, name: str, token_hash: str | None) -> int | None:
        """Every token of tenant ``name`` stops working, at once; with ``token_hash``,
        that token works instead (rotation), without it none does (revocation). How many
        tokens stopped working; None if there is no such tenant (``tenant_tokens.lua``)."""
        args = [name, token_hash or "", repr(time.time())]
        gone = int(await self.run_script("tenant_tokens", [], args))
        return None if gone < 0 else gone

    async def replace_tenant_record(self, name: str, old: str, new: str) -> bool | None:
        """Tenant ``name``'s record ``old`` -> ``new`` everywhere it is kept, in one step;
        False if it is no longer ``old``, None if there is no such tenant."""
        done = int(await self.run_script("tenant_record", [], [name, old, new]))
        return None if done < 0 else bool(done)

    async def tenant_record(self, name: str) -> dict[str, str]:
        """Tenant ``name``'s hash (its record, and ``revoked_at`` once revoked); empty if
        there is no such tenant."""
        async with self.guard():
            raw = await self._redis.hgetall(self.keys.tenant(name))
        return {str(k): str(v) for k, v in raw.items()}

    async def in_flight(self, tenant: str) -> int:
        """How many items ``tenant`` has in flight, as its quota counts them."""
        async with self.guard():
            value = await self._redis.hget(self.keys.quota(tenant), "in_flight")
        return int(value or 0)

    async def tenant_names(self) -> list[str]:
        """Every tenant's name, sorted."""
        async with self.guard():
            records = await self._redis.hvals(self.keys.tenant_tokens())
        return sorted({json.loads(str(r))["name"] for r in records})

    async def tenant_by_token(self, token_hash: str) -> str | None:
        """The tenant record stored for a token's hash, or None."""
        async with self.guard():
            record = await self._redis.hget(self.keys.tenant_tokens(), token_hash)
        return None if record is None else str(record)

    # -- progress of running items -----------------------------------------------------

    async def set_item_progress(
        self, domain: str, op_key: str, progress: Mapping[str, Any], ttl_s: float
    ) -> None:
        """Record how far a running item is (one SET; gone after ``ttl_s`` unless renewed)."""
        key = self.keys.progress(domain, op_key)
        async with self.guard():
            await self._redis.set(key, json.dumps(dict(progress)), px=max(1, int(ttl_s * 1000)))

    async def item_progress(self, domain: str, op_keys: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The recorded progress of those ``op_keys`` that have one (one round trip)."""
        if not op_keys:
            return {}
        async with self.guard():
            raw = await self._redis.mget([self.keys.progress(domain, k) for k in op_keys])
        return {k: dict(json.loads(v)) for k, v in zip(op_keys, raw, strict=True) if v}

    async def set_resume_point(
        self, domain: str, op_key: str, point: Mapping[str, Any], ttl_s: float
    ) -> bool:
        """Record a running item's latest intermediate checkpoint (it outlives its worker
        by ``ttl_s`` so that a reclaimed run finds it); False, and nothing written, when
        the op is no longer in flight (``set_resume.lua``)."""
        args = [domain, op_key, json.dumps(dict(point)), max(1, int(ttl_s * 1000))]
        return bool(await self.run_script("set_resume", [], args))

    async def resume_point(self, domain: str, op_key: str) -> dict[str, Any] | None:
        """The latest intermediate checkpoint recorded for an item, or None."""
        async with self.guard():
            raw = await self._redis.get(self.keys.resume(domain, op_key))
        return dict(json.loads(raw)) if raw else None

    # -- blob index --------------------------------------------------------------------

    async def record_blob(self, digest: str, size: int, media_type: str) -> None:
        """Index a blob (``index_blob.lua``); idempotent, the first record stays."""
        validate_digest(digest)
        await self.run_script("index_blob", [], [digest, size, media_type, repr(time.time())])

    async def record_checkpoint(
        self, tree: str, size: int, files: Sequence[str], nbytes: int
    ) -> None:
        """Index a checkpoint tree (``size`` bytes) a worker stored: the ``nbytes`` of its
        ``files`` (what a worker that lacks it fetches) and, for each file, that ``tree``
        lists it (so the tree's readers may read it; ``unreadable_for``). One Lua step
        (``record_checkpoint.lua``); idempotent, the first index record stays."""
        validate_digest(tree)
        listed = [validate_digest(digest) for digest in dict.fromkeys(files)]
        args = [tree, size, repr(time.time()), nbytes, *listed]
        await self.run_script("record_checkpoint", [], args)

    async def blob(self, digest: str) -> BlobRecord | None:
        """What the index knows of a blob, or None."""
        validate_digest(digest)
        async with self.guard():
            raw = await self._redis.hgetall(self.keys.blob(digest))
        if not raw:
            return None
        info = strings(raw)
        return BlobRecord(
            digest=digest,
            size=int(info["size"]),
            media_type=info["media_type"],
            created_at=float(info["created_at"]),
        )

    # -- counters and learned state ----------------------------------------------------

    async def tenant_stats(self, tenant: str) -> dict[str, float]:
        """Per-tenant counters: requested, cache_hits, joins, created, cost_usd, ..."""
        async with self.guard():
            raw = await self._redis.hgetall(self.keys.tenant_stats(tenant))
        return {str(k): float(v) for k, v in raw.items()}

    async def all_tenant_stats(self) -> dict[str, dict[str, float]]:
        """Every tenant's counters, in two round trips (see ``tenant_stats``)."""
        names = await self.tenant_names()
        async with self.guard(), self._redis.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.hgetall(self.keys.tenant_stats(name))
            raw = await pipe.execute()
        return {
            name: {str(k): float(v) for k, v in stats.items()}
            for name, stats in zip(names, raw, strict=True)
        }

    async def cluster_stats(self) -> dict[str, float]:
        """Cluster-wide counters: executed, failed, claimed, batches, worker_seconds, ..."""
        async with self.guard():
            raw = await self._redis.hgetall(self.keys.cluster_stats())
        return {str(k): float(v) for k, v in raw.items()}

    async def load_json(self, key: str) -> str | None:
        """A JSON document stored whole under ``key`` (the throughput model)."""
        async with self.guard():
            value = await self._redis.get(key)
        return None if value is None else str(value)

    async def save_json(self, key: str, document: str) -> None:
        """Store a JSON document whole under ``key``."""
        async with self.guard():
            await self._redis.set(key, document)

    async def update_json(self, key: str, change: Callable[[str | None], str | None]) -> str | None:
        """Read-modify-write the JSON document under ``key``; the document now stored.

        ``change`` gets the stored document (None if there is none) and returns the one
        to store, or None to leave it as it is. It runs again on what is stored now when
        another writer changed the key in between (WATCH/MULTI), so no write is ever
        lost to a writer that read an older document; it must be pure. ConflictError
        after ``_UPDATE_ATTEMPTS`` such races in a row.
        """
        async with self.guard(), self._redis.pipeline(transaction=True) as pipe:
            for _ in range(_UPDATE_ATTEMPTS):
                try:
                    await pipe.watch(key)
                    stored = await pipe.get(key)
                    document = change(None if stored is None else str(stored))
                    if document is None:  # leaving the pipeline unwatches the key
                        return None if stored is None else str(stored)
                    pipe.multi()  # type: ignore[no-untyped-call]
                    pipe.set(key, document)
                    await pipe.execute()
                    return document
                except redis.exceptions.WatchError:
                    continue
        raise ConflictError(f"{key} changed under each of {_UPDATE_ATTEMPTS} attempts to update it")
