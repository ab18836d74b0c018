"""The control plane as one object: what the HTTP API calls, and the loops it runs.

Every method takes the calling ``Tenant`` and enforces isolation itself: a tenant sees
only its own workflows, lineage and results, and a workflow of another tenant is
reported as not found (its existence is not revealed). Cluster-wide views need an admin.

``run`` drives the background loops (scheduler and completion applier). Any number of
replicas may serve the API; the scheduler lease makes sure only one assigns work.
Everything is in Redis, so a replica that restarts loses nothing.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections import defaultdict
from collections.abc import Coroutine, Iterator
from typing import Any

from flowmesh_core.blobs import BlobInfo, BlobStore, open_blob_store
from flowmesh_core.control.blobs import BlobAccess
from flowmesh_core.control.completions import CompletionApplier
from flowmesh_core.control.engine import WorkflowEngine
from flowmesh_core.control.outbox import OutboxConsumer
from flowmesh_core.control.scheduler import Scheduler
from flowmesh_core.control.tenants import authenticate
from flowmesh_core.control.views import FabricViews
from flowmesh_core.errors import InvalidInputError, NotFoundError, PermissionDeniedError
from flowmesh_core.hashing import validate_digest
from flowmesh_core.models import ItemStatus, LineageRecord, Operator, Workflow, WorkflowNode
from flowmesh_core.models.api import (
    NodeState,
    NodeStatus,
    StatsReport,
    SubmitResult,
    Tenant,
    TenantStats,
    WorkerState,
    WorkflowStatus,
)
from flowmesh_core.registry import Registry
from flowmesh_core.settings import Settings
from flowmesh_core.store import Store, Transition

__all__ = ["ControlPlane"]

log = logging.getLogger("flowmesh.control")

MAX_RESULTS_READ = 10_000
"""Most digests one ``read_results`` call takes."""

_PROGRESS_ITEMS = 32
"""How many of a split node's running items a status reads the progress of (one MGET)."""

_STATES = {
    "done": NodeState.DONE,
    "failed": NodeState.FAILED,
    "pending": NodeState.PENDING,
    "cancelled": NodeState.CANCELLED,
}
_FINAL_EVENTS = (
    Transition.WORKFLOW_DONE,
    Transition.WORKFLOW_FAILED,
    Transition.WORKFLOW_CANCELLED,
)


class ControlPlane:
    """Submission, status, results and stats for tenants; scheduling in the background."""

    def __init__(
        self,
        settings: Settings,
        *,
        store: Store | None = None,
        blobs: BlobStore | None = None,
        registry: Registry | None = None,
    ) -> None:
        self.settings = settings
        self.store = store or Store.from_settings(settings)
        self.blobs = blobs or open_blob_store(
            settings.blob_url,
            s3_endpoint_url=settings.s3_endpoint_url,
            s3_region=settings.s3_region,
        )
        self.registry = registry or Registry.default()
        self.engine = WorkflowEngine(self.store, self.blobs, self.registry, settings)
        self.results = self.engine.results
        self.blob_access = BlobAccess(
            self.store,
            self.blobs,
            self.results,
            settings.max_upload_bytes,
            settings.max_grants_per_tenant,
            settings.tenant_max_upload_bytes,
        )
        self.scheduler = Scheduler(self.store, settings, exhausted=self._exhausted)
        consumer = f"{socket.gethostname()}-{os.getpid()}"
        self.applier = CompletionApplier(
            self.store,
            consumer=consumer,
            max_attempts=settings.max_attempts,
            observe=self.scheduler.observe,
            adopt_after_s=2.0,  # applying twice is harmless; losing a report is not
            fairness_half_life_s=settings.fairness_half_life_s,
        )
        self.outbox = OutboxConsumer(self.store, self.engine, consumer=consumer)
        self.views = FabricViews(self.store, settings)  # the ready pool and batches

    async def _exhausted(self, domain: str, op_key: str, error: str) -> None:
        await self.store.fail(domain, op_key, error)

    async def authenticate(self, authorization: str | None) -> Tenant:
        """The tenant behind an ``Authorization: Bearer ...`` header value."""
        return await authenticate(self.store, authorization)

    async def run(self, stop: asyncio.Event) -> None:
        """Run the scheduler, the completion applier and the outbox consumer until ``stop``
        is set.

        If any loop dies, ``stop`` is set so the others end too (a scheduler whose
        completions nobody applies must not keep the lease), and the error is raised.
        Loops end by ``stop``, never by cancellation: a cancelled Redis call can hang.
        """

        async def until_done(loop: Coroutine[Any, Any, None]) -> None:
            try:
                await loop
            finally:
                stop.set()

        outcomes = await asyncio.gather(
            until_done(self.scheduler.run(stop)),
            until_done(self.applier.run(stop)),
            until_done(self.outbox.run(stop)),
            return_exceptions=True,
        )
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome

    async def aclose(self) -> None:
        """Close connections."""
        await self.store.aclose()

    # -- submission and status ---------------------------------------------------------

    async def submit_workflow(
        self, tenant: Tenant, workflow: Workflow, idempotency_key: str | None = None
    ) -> SubmitResult:
        """Validate, store and start a workflow (see ``WorkflowEngine.submit``)."""
        return await self.engine.submit(tenant, workflow, idempotency_key)

    async def submit_operator(
        self, tenant: Tenant, operator: Operator, idempotency_key: str | None = None
    ) -> SubmitResult:
        """A single operator, run as a one-node workflow whose node is named ``op``."""
        node = WorkflowNode.model_validate(operator.model_dump())
        workflow = Workflow(name=operator.kind, nodes={"op": node})
        return await self.engine.submit(tenant, workflow, idempotency_key)

    async def status(
        self, tenant: Tenant, wf_id: str, *, with_lineage: bool = True
    ) -> WorkflowStatus:
        """A workflow's status per node, with lineage unless asked not to."""
        state = await self.store.workflow(wf_id)
        if state is None or (state.tenant != tenant.name and not tenant.admin):
            raise NotFoundError(f"no workflow {wf_id!r} for tenant {tenant.name!r}")
        workflow = Workflow.model_validate_json(state.spec)
        records = await self.store.node_records(wf_id, list(workflow.nodes))
        lineage: dict[str, list[LineageRecord]] = defaultdict(list)
        # A pending node is running when one of its items is: lineage says so, so it is
        # read for that even when it is not to be shown.
        states = [_STATES.get(r.get("state", "")) for r in records.values()]
        if with_lineage or NodeState.PENDING in states:
            for record in await self.store.lineage(wf_id):
                lineage[record.node].append(record)
        nodes = [
            _node_status(name, records[name], lineage[name], _after(node), with_lineage)
            for name, node in workflow.nodes.items()
        ]
        nodes = await self._with_progress(state.domain, nodes, records, lineage)
        overall = _STATES.get(state.status, NodeState.PENDING)
        if overall is NodeState.PENDING and any(n.state is NodeState.RUNNING for n in nodes):
            overall = NodeState.RUNNING
        return WorkflowStatus(
            workflow_id=wf_id,
            name=state.name,
            state=overall,
            created_at=state.created_at,
            finished_at=state.finished_at,
            nodes=nodes,
        )

    async def _with_progress(
        self,
        domain: str,
        nodes: list[NodeStatus],
        records: dict[str, dict[str, str]],
        lineage: dict[str, list[LineageRecord]],
    ) -> list[NodeStatus]:
        """Running nodes with what their workers reported: a node of one item (training
        runs whole) its item's progress; a split node that of its running items, a model
        load first (docs/architecture.md, "What a status says")."""
        keys: dict[str, list[str]] = {}
        for n in nodes:
            if n.state is not NodeState.RUNNING or not n.op_key:
                continue
            if records[n.node].get("batched") != "1":
                keys[n.node] = [n.op_key]
            else:
                running = [r.op_key for r in lineage[n.node] if r.status is ItemStatus.RUNNING]
                keys[n.node] = running[:_PROGRESS_ITEMS]
        wanted = sorted({k for ks in keys.values() for k in ks})
        found = await self.store.item_progress(domain, wanted)
        progress = {}
        for node, ks in keys.items():
            reports = [found[k] for k in ks if k in found]
            loading = [r for r in reports if r.get("phase") == "loading"]
            if reports:
                progress[node] = (loading or reports)[0]
        return [
            n.model_copy(update={"progress": progress[n.node]}) if n.node in progress else n
            for n in nodes
        ]

    async def wait(
        self, tenant: Tenant, wf_id: str, timeout_s: float, *, with_lineage: bool = False
    ) -> WorkflowStatus:
        """Block until the workflow is done, failed or cancelled, or ``timeout_s`` passes.

        One blocking read of the workflow's event stream, which the ledger step that
        finishes or fails a workflow writes to: no polling.
        """
        deadline = time.monotonic() + timeout_s
        status = await self.status(tenant, wf_id, with_lineage=False)  # ownership first
        cursor = "0-0"
        while not status.state.final:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            events, cursor = await self.store.workflow_events(wf_id, cursor, min(left, 5.0))
            if any(e in _FINAL_EVENTS for e in events):
                break
        return await self.status(tenant, wf_id, with_lineage=with_lineage)

    async def cancel(self, tenant: Tenant, wf_id: str) -> WorkflowStatus:
        """Cancel one of the tenant's workflows (an admin: anyone's); its status after.

        Idempotent: a workflow already done, failed or cancelled is left as it is and its
        status answered. Another tenant's workflow is reported as not found, exactly like
        an unknown id. What happens to its items: ``Store.cancel_workflow``.
        """
        outcome = await self.store.cancel_workflow(wf_id, None if tenant.admin else tenant.name)
        if outcome is None:
            raise NotFoundError(f"no workflow {wf_id!r} for tenant {tenant.name!r}")
        if outcome.cancelled:
            log.info(
                "workflow %s cancelled by %s: %d items dropped, %d left to other requesters",
                wf_id,
                tenant.name,
                outcome.dropped,
                outcome.shared,
            )
        return await self.status(tenant, wf_id, with_lineage=False)

    async def lineage(self, tenant: Tenant, wf_id: str) -> list[LineageRecord]:
        """Every lineage record of one of the tenant's workflows."""
        await self.status(tenant, wf_id, with_lineage=False)  # ownership check
        return await self.store.lineage(wf_id)

    # -- results, workers, stats -------------------------------------------------------

    async def open_result(self, tenant: Tenant, digest: str) -> tuple[BlobInfo, Iterator[bytes]]:
        """A result's size and verified chunks, if the tenant's lineage holds it."""
        validate_digest(digest)
        if not tenant.admin and not await self.store.may_read(tenant.name, digest):
            raise NotFoundError(f"no result {digest} in tenant {tenant.name!r}'s lineage")
        kept = await self.results.inline([digest])
        if digest in kept:
            return BlobInfo(digest, len(kept[digest])), iter([kept[digest]])
        info = await asyncio.to_thread(self.blobs.stat, digest)
        return info, self.blobs.iter_chunks(digest)

    async def read_results(self, tenant: Tenant, digests: list[str]) -> dict[str, bytes]:
        """Many results' bytes at once (small ones in one Redis round trip), if the
        tenant's lineage holds every one; NotFoundError naming the first that it does
        not (another tenant's result is reported exactly like an unknown digest)."""
        if len(digests) > MAX_RESULTS_READ:
            raise InvalidInputError(
                f"{len(digests):,} digests in one read; ask for at most {MAX_RESULTS_READ:,} "
                "at a time"
            )
        wanted = [validate_digest(d) for d in dict.fromkeys(digests)]
        if not tenant.admin:
            for digest in await self.store.not_readable_by(tenant.name, wanted):
                raise NotFoundError(f"no result {digest} in tenant {tenant.name!r}'s lineage")
        return await self.results.read_many(wanted)

    async def workers(self, tenant: Tenant) -> list[WorkerState]:
        """Every registered worker (admin only)."""
        _require_admin(tenant, "the worker list")
        now = time.time()
        states = []
        for record in await self.store.workers():
            profile = record.profile
            states.append(
                WorkerState(
                    profile=profile,
                    alive=now - record.heartbeat < self.settings.worker_ttl_s,
                    last_heartbeat=record.heartbeat,
                    free_slots=0 if record.draining else max(profile.slots - record.inflight, 0),
                    warm_models=record.warm,
                    running_batches=record.inflight,
                    draining=record.draining,
                )
            )
        return states

    async def stats(self, tenant: Tenant) -> StatsReport:
        """Requested vs executed, batching, worker-seconds, $ and Wh; per tenant and total.

        An admin sees every tenant and the fabric's totals. Any other tenant sees only its
        own figures, the totals included: its own requests, its items created (as
        ``executed``), its attributed worker-seconds, $ and Wh; the fabric-wide counts no
        tenant can be attributed (batches, failures) read 0. Nothing in it depends on
        another tenant's activity (docs/architecture.md, tenant isolation). Each tenant's
        entry also says what it holds against its upload and grant quotas.
        """
        all_stats = await self.store.all_tenant_stats()
        if not tenant.admin:
            usage = await self.blob_access.usage([tenant.name])
            raw = all_stats.get(tenant.name, {})
            own = _tenant_stats(tenant.name, raw).model_copy(update=usage[tenant.name])
            return StatsReport(
                tenants=[own],
                requested=own.requested,
                executed=own.created,
                cache_hits=own.cache_hits,
                joins=own.joins,
                worker_seconds=own.worker_seconds,
                cost_usd=own.cost_usd,
                energy_wh=own.energy_wh,
            )
        usage = await self.blob_access.usage(list(all_stats))
        per_tenant = [
            _tenant_stats(name, raw).model_copy(update=usage[name])
            for name, raw in all_stats.items()
        ]
        cluster = await self.store.cluster_stats()
        batches = cluster.get("batches", 0.0)
        return StatsReport(
            tenants=per_tenant,
            requested=sum(t.requested for t in per_tenant),
            executed=int(cluster.get("executed", 0)),
            failed=int(cluster.get("failed", 0)),
            cache_hits=sum(t.cache_hits for t in per_tenant),
            joins=sum(t.joins for t in per_tenant),
            batches=int(batches),
            mean_batch_size=cluster.get("batched_items", 0.0) / batches if batches else 0.0,
            worker_seconds=cluster.get("worker_seconds", 0.0),
            cost_usd=cluster.get("cost_usd", 0.0),
            energy_wh=cluster.get("energy_wh", 0.0),
        )


def _tenant_stats(name: str, raw: dict[str, float]) -> TenantStats:
    return TenantStats(
        tenant=name,
        requested=int(raw.get("requested", 0)),
        cache_hits=int(raw.get("cache_hits", 0)),
        joins=int(raw.get("joins", 0)),
        created=int(raw.get("created", 0)),
        worker_seconds=raw.get("worker_seconds", 0.0),
        cost_usd=raw.get("cost_usd", 0.0),
        energy_wh=raw.get("energy_wh", 0.0),
    )


def _require_admin(tenant: Tenant, what: str) -> None:
    if not tenant.admin:
        raise PermissionDeniedError(
            f"{what} is a cluster-wide view: use an admin token "
            "(`flowmesh tenant create NAME --admin`)"
        )


def _after(node: WorkflowNode) -> list[str]:
    """The nodes whose outputs ``node`` reads, each once, in the order its inputs name them."""
    return list(dict.fromkeys(node.dependencies()))


def _node_status(
    name: str,
    record: dict[str, str],
    lineage: list[LineageRecord],
    depends_on: list[str],
    shown: bool,
) -> NodeStatus:
    total = int(record.get("items_total", 0))
    remaining = int(record.get("remaining", total))
    if "state" not in record:
        state = NodeState.WAITING
    else:
        state = _STATES.get(record["state"], NodeState.PENDING)
    if state is NodeState.PENDING and any(r.status == "running" for r in lineage):
        state = NodeState.RUNNING
    return NodeStatus(
        node=name,
        state=state,
        op_key=record.get("op_key"),
        result_digest=record.get("result_digest"),
        error=record.get("error"),
        items_total=total,
        items_done=max(total - remaining, 0),
        depends_on=depends_on,
        lineage=lineage if shown else [],
    )
