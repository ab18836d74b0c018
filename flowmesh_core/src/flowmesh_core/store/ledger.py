"""The ledger: every transition of an op, a node and a workflow, each one atomic step.

Op: join (cache hit, join in flight, or create), claim into a batch, requeue, complete,
fail. Node: start (with every item joined), finish, fail (with what is downstream).
Workflow: submit, finish (with its last node), fail (with its failing node). Each is one
Lua script (``store/lua/``) behind the generated prelude (``store/_lua.py``), so two
control-plane replicas, or a control plane and a late worker, never interleave halfway
through one; each is raced in the contract tests.

Node and workflow transitions are announced on the outbox stream by the same step that
makes them (``Transition``); the control plane acts on each entry and acknowledges it
only afterwards, so a control plane killed anywhere leaves its successor a complete
to-do list. Nothing here decides what to do next: that is ``control/rules.py``.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

from flowmesh_core.errors import ConflictError, QuotaExceededError
from flowmesh_core.hashing import validate_digest
from flowmesh_core.models import Item, ItemStatus, Requester
from flowmesh_core.models.graph_summary import GraphSummary
from flowmesh_core.settings import DEFAULT_FAIRNESS_HALF_LIFE_S
from flowmesh_core.store._base import ScriptCall, StoreBase
from flowmesh_core.store.records import (
    CancelResult,
    CompleteResult,
    JoinOutcome,
    JoinResult,
    NodeStart,
    SubmitQuota,
    Transition,
    TransitionEvent,
)

__all__ = [
    "BATCH_LOG_TTL_S",
    "DEFAULT_VIRTUAL_COST",
    "IDEMPOTENCY_TTL_S",
    "OUTBOX_GROUP",
    "LedgerMixin",
]

DEFAULT_VIRTUAL_COST = 0.01
"""Seconds of virtual time one item advances its tenant's fair-queuing clock by."""

IDEMPOTENCY_TTL_S = 7 * 24 * 3600
"""How long a submission's idempotency key is remembered."""

BATCH_LOG_TTL_S = 7 * 24 * 3600
"""How long a batch's log (what was decided, and for whom) is kept after its claim."""

OUTBOX_GROUP = "control"
"""The consumer group of control planes on the outbox."""


def signature_meta(item: Item) -> str:
    """What a batch signature means, as stored beside the ready pool (JSON)."""
    model = item.model.canonical() if item.model else None
    meta: dict[str, Any] = {"kind": item.kind, "version": item.version, "model": model}
    if item.weight != 1.0:
        meta["weight"] = item.weight  # one run per signature (KindSpec.weight_input)
    return json.dumps(meta, sort_keys=True)


class LedgerMixin(StoreBase):
    """Every op, node and workflow transition."""

    # -- workflows -----------------------------------------------------------------------

    def submit_call(
        self,
        wf_id: str,
        tenant: str,
        name: str,
        spec: str,
        nodes: Sequence[str],
        domain: str,
        idempotency_key: str | None,
        quota: SubmitQuota | None = None,
        graph: GraphSummary | None = None,
    ) -> ScriptCall:
        """The script call that stores a workflow (see ``submit_workflow``)."""
        key_hash = (
            "" if idempotency_key is None else hashlib.sha256(idempotency_key.encode()).hexdigest()
        )
        q = quota or SubmitQuota()
        args = [wf_id, tenant, name, repr(time.time()), spec, domain, key_hash, IDEMPOTENCY_TTL_S]
        args += [q.max_in_flight, repr(float(q.rate)), repr(float(q.burst)), q.root_items]
        summary = "" if graph is None else graph.to_json()
        return ("submit_workflow", [], [*args, summary, *nodes])

    @staticmethod
    def submit_outcome(wf_id: str, reply: Sequence[Any]) -> str | None:
        """The earlier workflow's id if the submission was a replay, else None.

        ConflictError if the id is taken; QuotaExceededError if a quota refused it.
        """
        outcome, found = int(reply[0]), str(reply[1])
        if outcome == 2:
            return found
        if outcome == 0:
            raise ConflictError(f"workflow id {wf_id!r} is already taken")
        if outcome == 3:
            raise _quota_error(found, float(reply[2]), str(reply[3]))
        return None

    async def submit_workflow(
        self,
        wf_id: str,
        tenant: str,
        name: str,
        spec: str,
        nodes: Sequence[str],
        domain: str = "global",
        idempotency_key: str | None = None,
        quota: SubmitQuota | None = None,
        graph: GraphSummary | None = None,
    ) -> str | None:
        """Store a workflow and its node states in one step; ConflictError if the id exists.

        ``domain`` is the dedup domain every item of this workflow is requested in. With
        an ``idempotency_key`` that this tenant used before (within a week), nothing is
        stored and the earlier workflow's id is returned; otherwise None. The workflow
        is announced on the outbox (``workflow.submitted``). ``quota`` is checked and
        counted in the same step (QuotaExceededError: nothing was stored). ``graph`` is
        what the autoscaler reads of it instead of ``spec`` (none: it is not seen ahead).
        """
        call = self.submit_call(
            wf_id, tenant, name, spec, nodes, domain, idempotency_key, quota, graph
        )
        return self.submit_outcome(wf_id, await self.run_script(*call))

    async def cancel_workflow(self, wf_id: str, tenant: str | None) -> CancelResult | None:
        """Cancel a workflow of ``tenant`` (None: of any tenant, for an admin), in one step.

        None if there is no such workflow for ``tenant``. A workflow already final is
        left alone (``cancelled`` false, ``status`` its final status). Items no other
        requester waits for leave the ready pool (or, running, finish for nobody); items
        another requester waits for go on for it unchanged (``cancel_workflow.lua``).
        """
        args = [wf_id, tenant or "", repr(time.time())]
        outcome, status, dropped, shared = await self.run_script("cancel_workflow", [], args)
        if outcome == "unknown":
            return None
        return CancelResult(outcome == "applied", str(status), int(dropped), int(shared))

    # -- nodes ---------------------------------------------------------------------------

    def start_call(
        self,
        tenant: str,
        domain: str,
        wf_id: str,
        node: str,
        op_key: str,
        items: Sequence[Item],
        *,
        batched: bool,
        virtual_cost: float = DEFAULT_VIRTUAL_COST,
    ) -> ScriptCall:
        """The script call that starts a node (see ``start_node``)."""
        signature = items[0].signature if items else ""
        meta = signature_meta(items[0]) if items else "{}"
        args: list[Any] = [
            wf_id,
            node,
            tenant,
            domain,
            repr(time.time()),
            op_key,
            "1" if batched else "0",
            signature,
            meta,
            repr(virtual_cost),
        ]
        for item in items:
            if item.signature != signature:
                raise ValueError("every item of a node shares its batch signature")
            args += [item.model_dump_json(), item.op_key]
        return ("start_node", [], args)

    @staticmethod
    def start_outcome(reply: Sequence[Any]) -> NodeStart:
        started, created, joined, hits, done = (int(x) for x in reply)
        return NodeStart(bool(started), created, joined, hits, bool(done))

    async def start_node(
        self,
        tenant: str,
        domain: str,
        wf_id: str,
        node: str,
        op_key: str,
        items: Sequence[Item],
        *,
        batched: bool,
        virtual_cost: float = DEFAULT_VIRTUAL_COST,
    ) -> NodeStart:
        """Start a node and attach each of its items (cache hit, join or create), at once.

        A node starts once: a repeated call changes nothing (``started`` false). When
        the last item is settled (now, by cache hits, or later by workers), the node is
        announced on the outbox (``node.items_done``).
        """
        call = self.start_call(
            tenant, domain, wf_id, node, op_key, items, batched=batched, virtual_cost=virtual_cost
        )
        return self.start_outcome(await self.run_script(*call))

    async def finish_node(
        self, wf_id: str, node: str, digest: str, inline: bytes | None = None
    ) -> tuple[bool, bool]:
        """Record a node's result (its tenant may read it), finishing the workflow with
        its last node, in one step: (node finished now, workflow finished now). A small
        result's bytes come ``inline`` and are kept in Redis."""
        validate_digest(digest)
        args = [wf_id, node, digest, repr(time.time()), inline if inline is not None else ""]
        reply = await self.run_script("finish_node", [], args)
        return bool(int(reply[0])), bool(int(reply[1]))

    async def fail_nodes(
        self, wf_id: str, node: str, error: str, downstream: Sequence[str]
    ) -> bool:
        """Fail ``node``, the nodes ``downstream`` of it and the workflow, in one step.

        True if this call failed the workflow (False: it was final already).
        """
        args = [wf_id, repr(time.time()), node, error, *downstream]
        return bool(int(await self.run_script("fail_nodes", [], args)))

    # -- ops -----------------------------------------------------------------------------

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
        now = repr(time.time())
        calls: list[ScriptCall] = []
        for requester, item in requests:
            args = [
                requester.tenant,
                domain,
                requester.workflow,
                requester.node,
                requester.index,
                now,
                item.op_key,
                item.signature,
                item.model_dump_json(),
                signature_meta(item),
                repr(virtual_cost),
            ]
            calls.append(("join_or_create", [], args))
        replies = await self.run_scripts(calls)
        return [
            _join_result(req, item, reply)
            for (req, item), reply in zip(requests, replies, strict=True)
        ]

    async def claim_batch(
        self,
        signature: str,
        max_items: int,
        worker: str,
        batch_id: str,
        fence: str,
        terms: Mapping[str, Any] | None = None,
    ) -> int:
        """Move up to ``max_items`` of ``signature`` from the ready pool onto ``worker``.

        Marks them running, records the batch and appends it to the worker's assignment
        stream, in one step. Returns how many items were assigned (0: none pending), or
        -1 if ``fence`` no longer holds the scheduler lease (nothing was assigned).
        ``terms`` (the decision's utility terms) go into the batch's log with its members
        and requesters, kept for ``BATCH_LOG_TTL_S`` (``batch_log``).
        """
        k = self.keys
        keys = [k.assignments(worker), k.scheduler_lease(), k.batch(batch_id), k.worker(worker)]
        args = [fence, max_items, batch_id, worker, repr(time.time()), signature]
        args += [json.dumps(dict(terms or {}), sort_keys=True), BATCH_LOG_TTL_S]
        status, size = await self.run_script("claim_batch", keys, args)
        return -1 if status == "fenced" else int(size)

    async def requeue(self, domain: str, op_key: str, worker: str) -> bool:
        """Running on ``worker`` -> back in the ready pool (the worker is gone)."""
        args = [domain, op_key, worker, repr(time.time())]
        return bool(await self.run_script("requeue", [], args))

    def complete_call(
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
        inline: bytes | None = None,
        half_life_s: float = DEFAULT_FAIRNESS_HALF_LIFE_S,
        finished_at: float | None = None,
        size: int | None = None,
    ) -> ScriptCall:
        """The script call that completes one op (see ``complete``); ``finished_at``
        defaults to now. A result stored in the CAS with its ``size`` known is indexed
        with it (``{p}:blob``), so the items that read it weigh its bytes (docs/
        architecture.md, "Data locality")."""
        validate_digest(digest)
        now = time.time() if finished_at is None else finished_at
        args = [
            domain,
            op_key,
            digest,
            repr(now),
            batch_id,
            worker,
            repr(started_at if started_at is not None else now),
            repr(float(cost_usd)),
            repr(float(energy_wh)),
            repr(float(worker_seconds)),
            inline if inline is not None else "",
            repr(float(half_life_s)),
            "" if size is None or inline is not None else size,
        ]
        return ("complete", [], args)

    @staticmethod
    def complete_outcome(reply: Sequence[Any]) -> CompleteResult:
        outcome, recorded, released, finished = reply
        return CompleteResult(str(recorded), outcome == "duplicate", int(released), int(finished))

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
        inline: bytes | None = None,
        half_life_s: float = DEFAULT_FAIRNESS_HALF_LIFE_S,
        size: int | None = None,
    ) -> CompleteResult:
        """Record ``digest`` for ``op_key`` and release every waiting requester, atomically.

        The first result wins; a later one is reported as a duplicate and changes
        nothing. Cost, energy and worker-seconds are split across the requesters. A node
        whose last item this was is announced on the outbox (``node.items_done``). A
        small result's bytes come ``inline`` and are kept in Redis beside the entry.
        Each requester's tenant is charged its worker-seconds toward its fair share,
        decayed with ``half_life_s`` (``charge_usage`` in the prelude).
        """
        call = self.complete_call(
            domain,
            op_key,
            digest,
            batch_id=batch_id,
            worker=worker,
            started_at=started_at,
            cost_usd=cost_usd,
            energy_wh=energy_wh,
            worker_seconds=worker_seconds,
            inline=inline,
            half_life_s=half_life_s,
            size=size,
        )
        return self.complete_outcome(await self.run_script(*call))

    async def fail(self, domain: str, op_key: str, error: str) -> int:
        """Fail the op for every waiting requester; how many nodes it failed (each is
        announced on the outbox as ``node.item_failed``)."""
        args = [domain, op_key, error, repr(time.time()), node_failure(op_key, error)]
        return int(await self.run_script("fail", [], args))

    def finish_batch_call(
        self, batch_id: str, worker: str, size: int, seconds: float, cost: float, energy: float
    ) -> ScriptCall:
        """The script call that accounts for a batch once (see ``finish_batch``)."""
        k = self.keys
        keys = [k.batch(batch_id), k.worker(worker), k.cluster_stats()]
        args = [size, repr(seconds), repr(cost), repr(energy), batch_id, repr(time.time())]
        return ("finish_batch", keys, args)

    async def finish_batch(
        self, batch_id: str, worker: str, size: int, seconds: float, cost: float, energy: float
    ) -> bool:
        """Free the worker's slot and count the batch, once; False if already done."""
        call = self.finish_batch_call(batch_id, worker, size, seconds, cost, energy)
        return bool(await self.run_script(*call))

    # -- the outbox ----------------------------------------------------------------------

    async def ensure_outbox_group(self) -> bool:
        """The control planes' group on the outbox; True if it had to be created."""
        return await self.create_group(self.keys.outbox(), OUTBOX_GROUP)

    async def read_outbox(
        self, consumer: str, *, pending: bool, count: int, block_ms: int | None
    ) -> list[TransitionEvent]:
        """Entries of the outbox for ``consumer``: its own unacknowledged ones
        (``pending``) or new ones, blocking up to ``block_ms`` when there are none."""
        async with self.guard():
            reply: Any = await self._redis.xreadgroup(
                OUTBOX_GROUP,
                consumer,
                {self.keys.outbox(): "0" if pending else ">"},
                count=count,
                block=None if pending else block_ms,
            )
        return _events(reply[0][1] if reply else [])

    async def adopt_outbox(
        self, consumer: str, *, idle_ms: int, count: int
    ) -> list[TransitionEvent]:
        """Entries other consumers read but left unacknowledged for ``idle_ms`` (a
        control plane that died), now ``consumer``'s."""
        async with self.guard():
            reply: Any = await self._redis.xautoclaim(
                self.keys.outbox(), OUTBOX_GROUP, consumer, min_idle_time=idle_ms, count=count
            )
        return _events(reply[1] if reply else [])

    async def ack_outbox(self, entry_ids: Sequence[str]) -> None:
        """The control plane has acted on these entries: forget them."""
        if not entry_ids:
            return
        stream = self.keys.outbox()
        async with self.guard(), self._redis.pipeline(transaction=True) as pipe:
            pipe.xack(stream, OUTBOX_GROUP, *entry_ids)
            pipe.xdel(stream, *entry_ids)
            await pipe.execute()


def node_failure(op_key: str, error: str) -> str:
    """The error a node records when one of its items fails for good."""
    return f"item {op_key[:12]}: {error}"


def _join_result(requester: Requester, item: Item, reply: Sequence[Any]) -> JoinResult:
    outcome, status, digest, node_done = (str(x) for x in reply)
    if outcome == JoinOutcome.CONFLICT:
        raise ConflictError(
            f"{requester.workflow}/{requester.node}[{requester.index}] already asked for "
            f"op {status}, not {item.op_key}"
        )
    return JoinResult(JoinOutcome(outcome), ItemStatus(status), digest or None, node_done == "1")


def _quota_error(which: str, retry_after: float, limit: str) -> QuotaExceededError:
    if which == "rate":
        message = (
            f"quota: this tenant may submit at most {float(limit):g} workflows per second; "
            f"retry after {retry_after:.2f} s (an admin sets the rate with "
            "`flowmesh tenant create --submit-rate`)"
        )
    else:
        message = (
            f"quota: this tenant may have at most {limit} items in flight, and this "
            "submission's root nodes would pass it; retry once some have finished (or "
            "cancel some: DELETE /v1/workflows/{id})"
        )
    return QuotaExceededError(message, retry_after=retry_after)


def _events(entries: Sequence[Any]) -> list[TransitionEvent]:
    events = []
    for entry_id, fields in entries:
        if not fields:  # deleted while pending
            events.append(TransitionEvent(str(entry_id), Transition.NODE_DONE, ""))
            continue
        events.append(
            TransitionEvent(
                entry_id=str(entry_id),
                transition=Transition(str(fields["event"])),
                workflow=str(fields["workflow"]),
                node=str(fields.get("node", "")),
                error=str(fields.get("error", "")),
            )
        )
    return events
