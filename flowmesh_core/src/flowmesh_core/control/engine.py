"""Workflows through the fabric: validate whole, expand nodes into items as their inputs
become available, and advance when nodes finish.

A submission is checked completely (every node's kind, params and inputs; keys of every
node whose inputs are known) before anything is stored, so bad input leaves no partial
state. Each item is then satisfied by, in order: the action cache, an in-flight join, or
entry into the ready pool (one atomic ``join_or_create`` per item). When a node's last
item finishes, the node's result is recorded (a manifest of item digests for split
nodes) and every node whose inputs are now all known starts.

Starting and finishing a node are each exactly-once, even with several control-plane
replicas applying completions: the store decides who wins.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections import Counter
from typing import Any

from flowmesh_core.blobs import BlobStore
from flowmesh_core.errors import ConflictError, FlowMeshError, NotFoundError
from flowmesh_core.hashing import canonical_json
from flowmesh_core.keys import Expansion, expand
from flowmesh_core.models import BlobInput, NodeRef, Operator, Requester, Workflow, WorkflowNode
from flowmesh_core.models.api import NodePlan, NodeState, SubmitResult, Tenant
from flowmesh_core.registry import Registry
from flowmesh_core.settings import Settings
from flowmesh_core.store import JoinOutcome, Store, domain_for

__all__ = ["WorkflowEngine"]

log = logging.getLogger("flowmesh.engine")


class WorkflowEngine:
    """Submission, expansion, and the advance of workflows as their nodes finish."""

    def __init__(
        self, store: Store, blobs: BlobStore, registry: Registry, settings: Settings
    ) -> None:
        self.store = store
        self.blobs = blobs
        self.registry = registry
        self.settings = settings

    def domain(self, tenant: str, organisation: str | None = None) -> str:
        """The dedup domain of ``tenant``'s requests."""
        return domain_for(self.settings.dedup_domain, tenant, organisation)

    # -- submission --------------------------------------------------------------------

    async def submit(
        self, tenant: Tenant, workflow: Workflow, idempotency_key: str | None = None
    ) -> SubmitResult:
        """Validate ``workflow`` whole, store it, and start every node whose inputs are known.

        A repeated ``idempotency_key`` (a retried task) creates nothing: the answer is the
        earlier submission's id and its plan as it stands now (``replayed``). The same key
        with a different workflow is a ConflictError.
        """
        wf_id = uuid.uuid4().hex
        ready = await self._validate(tenant, workflow, wf_id)
        domain = self.domain(tenant.name, tenant.organisation)
        spec = workflow.model_dump_json()
        earlier = await self.store.create_workflow(
            wf_id,
            tenant.name,
            workflow.name or "",
            spec,
            list(workflow.nodes),
            domain,
            idempotency_key=idempotency_key,
        )
        if earlier is not None:
            return await self._replay(earlier, spec)
        plans = {}
        for name, expansion in ready.items():
            plans[name] = await self._start(tenant.name, domain, wf_id, name, expansion)
        for name, node in workflow.nodes.items():
            if name not in plans:
                plans[name] = NodePlan(
                    node=name, op_key=None, state=NodeState.WAITING, waits_for=node.dependencies()
                )
        await self.store.notify(wf_id, "submitted")
        if all(p.state is NodeState.DONE for p in plans.values()):
            await self._finish_workflow(wf_id)
        return SubmitResult(workflow_id=wf_id, nodes=[plans[n] for n in workflow.nodes])

    async def _replay(self, wf_id: str, spec: str) -> SubmitResult:
        """The plan of an earlier submission made with the same idempotency key."""
        state = await self.store.workflow(wf_id)
        if state is None:
            raise ConflictError(
                f"this idempotency key named workflow {wf_id}, which no longer exists; "
                "use a new key"
            )
        if state.spec != spec:
            raise ConflictError(
                f"this idempotency key was used for workflow {wf_id} with a different "
                "workflow; a retry must resubmit the same work, or use a new key"
            )
        workflow = Workflow.model_validate_json(spec)
        records = await self.store.node_records(wf_id, list(workflow.nodes))
        plans = [
            NodePlan(
                node=name,
                op_key=records[name].get("op_key"),
                state=_plan_state(records[name].get("state"), bool(node.dependencies())),
                items=int(records[name].get("items_total", 0)),
                waits_for=node.dependencies(),
            )
            for name, node in workflow.nodes.items()
        ]
        log.info("submission replayed: workflow %s", wf_id)
        return SubmitResult(workflow_id=wf_id, nodes=plans, replayed=True)

    async def _validate(
        self, tenant: Tenant, workflow: Workflow, wf_id: str
    ) -> dict[str, Expansion]:
        """Check every node; the expansions of those that can start now, in order."""
        ready: dict[str, Expansion] = {}
        for name in workflow.topological_order():
            node = workflow.nodes[name]
            try:
                await self._check_blobs(tenant, node)
                if node.dependencies():
                    self._check_waiting(node)
                else:
                    ready[name] = await self._expand(node.to_operator({}), wf_id, name)
            except FlowMeshError as exc:
                raise type(exc)(f"node {name!r}: {exc}") from exc
        return ready

    async def _check_blobs(self, tenant: Tenant, node: WorkflowNode) -> None:
        """A blob input must be uploaded data or a result this tenant's lineage holds.

        Otherwise a tenant could compute on another tenant's results by naming their
        digests; such a digest is reported as not found, like any unknown one.
        """
        for field, inp in node.inputs.items():
            if not isinstance(inp, BlobInput) or tenant.admin:
                continue
            if await self.store.is_result(inp.blob) and not await self.store.may_read(
                tenant.name, inp.blob
            ):
                raise NotFoundError(f"input {field!r}: no blob {inp.blob} for this tenant")

    def _check_waiting(self, node: WorkflowNode) -> None:
        spec = self.registry.get(node.kind)
        spec.normalize_params(node.params)
        spec.check_inputs(node.inputs)

    async def _expand(self, op: Operator, wf_id: str, node: str) -> Expansion:
        salt = None if op.dedup else f"{wf_id}/{node}"
        return await asyncio.to_thread(
            expand,
            op,
            self.registry,
            max_inline_bytes=self.settings.max_inline_bytes,
            salt=salt,
            load_blob=self._load_json,
        )

    def _load_json(self, digest: str) -> Any:
        return json.loads(self.blobs.get_bytes(digest))

    # -- nodes -------------------------------------------------------------------------

    async def _start(
        self, tenant: str, domain: str, wf_id: str, name: str, exp: Expansion
    ) -> NodePlan:
        extra = {"tenant": tenant, "batched": "1" if exp.batched else "0", "state": "pending"}
        await self.store.start_node(wf_id, name, exp.op_key, len(exp.items), extra)
        requests = [
            (Requester(tenant=tenant, workflow=wf_id, node=name, index=i), item)
            for i, item in enumerate(exp.items)
        ]
        results = await self.store.join_many(domain, requests)
        if any(r.outcome is JoinOutcome.CREATED for r in results):
            await self.store.wake_scheduler()
        counts = Counter(r.outcome for r in results)
        done = any(r.node_done for r in results) or not exp.items
        if done:
            await self.finish_node(wf_id, name)
        return NodePlan(
            node=name,
            op_key=exp.op_key,
            state=NodeState.DONE if done else NodeState.PENDING,
            items=len(exp.items),
            cache_hits=counts[JoinOutcome.CACHE_HIT],
            joined=counts[JoinOutcome.JOINED],
            created=counts[JoinOutcome.CREATED],
        )

    async def finish_node(self, wf_id: str, name: str) -> None:
        """Record a node's result once its last item is done, then advance the workflow.

        Idempotent, and safe to repeat after a crash anywhere in it: a node already
        marked done still advances its workflow (the crash may have come in between).
        """
        record = await self.store.node_record(wf_id, name)
        if not record:
            return  # the workflow is gone (purged)
        if record.get("state") == "done":
            await self.advance(wf_id)
            return
        total = int(record.get("items_total", 0))
        digests = await self.store.item_digests(wf_id, name, total)
        if any(d is None for d in digests):
            log.error("node %s/%s finished with items missing results", wf_id, name)
            return
        if record.get("batched") == "1":
            manifest = canonical_json({"manifest": digests})
            result = (await asyncio.to_thread(self.blobs.put_bytes, manifest)).digest
            await self.store.record_blob(result, len(manifest), "application/json")
        else:
            result = str(digests[0])
        if await self.store.finish_node(wf_id, name, "done", result_digest=result):
            await self.store.grant_result(record.get("tenant", ""), result)
            log.info("node %s/%s done: %s", wf_id, name, result)
            await self.store.notify(wf_id, f"node:{name}:done")
        await self.advance(wf_id)

    async def fail_node(self, wf_id: str, name: str, error: str) -> None:
        """Fail a node, the nodes downstream of it, and the workflow (idempotent)."""
        first = await self.store.finish_node(wf_id, name, "failed", error=error)
        workflow = await self._workflow(wf_id)
        for other in _downstream(workflow, name):
            await self.store.finish_node(
                wf_id, other, "failed", error=f"upstream node {name!r} failed: {error}"
            )
        await self.store.set_workflow_status(wf_id, "failed", final=True)
        if first:
            await self.store.notify(wf_id, f"node:{name}:failed")

    async def settle(self, node_key: str, outcome: str) -> None:
        """Apply a node transition recorded in the settle hash, then clear it."""
        wf_id, name = self.store.keys.parse_node(node_key)
        if outcome == "done":
            await self.finish_node(wf_id, name)
        else:
            await self.fail_node(wf_id, name, outcome.partition("\n")[2] or "failed")
        await self.store.settled(node_key)

    async def settle_all(self) -> int:
        """Apply every transition a control plane recorded but did not finish applying
        (it died in between); how many there were."""
        pending = await self.store.unsettled()
        for node_key, outcome in pending.items():
            await self.settle(node_key, outcome)
        return len(pending)

    async def advance(self, wf_id: str) -> None:
        """Start every node whose inputs are all done; finish the workflow when all are."""
        state = await self.store.workflow(wf_id)
        if state is None or state.finished_at is not None:
            return
        workflow = Workflow.model_validate_json(state.spec)
        records = await self.store.node_records(wf_id, list(workflow.nodes))
        if all(r.get("state") == "done" for r in records.values()):
            await self._finish_workflow(wf_id)
            return
        for name, node in workflow.nodes.items():
            deps = node.dependencies()
            if "op_key" in records[name] or not deps:
                continue
            if all(records[d].get("state") == "done" for d in deps):
                await self._start_dependent(state.tenant, state.domain, wf_id, name, node, records)

    async def _start_dependent(
        self,
        tenant: str,
        domain: str,
        wf_id: str,
        name: str,
        node: WorkflowNode,
        records: dict[str, dict[str, str]],
    ) -> None:
        if not await self.store.claim_node_start(wf_id, name):
            return  # another replica is starting it
        resolved = {
            field: BlobInput(blob=records[inp.ref]["result_digest"])
            for field, inp in node.inputs.items()
            if isinstance(inp, NodeRef)
        }
        try:
            expansion = await self._expand(node.to_operator(resolved), wf_id, name)
        except FlowMeshError as exc:
            await self.fail_node(wf_id, name, str(exc))
            return
        await self._start(tenant, domain, wf_id, name, expansion)

    async def _finish_workflow(self, wf_id: str) -> None:
        if await self.store.set_workflow_status(wf_id, "done", final=True):
            log.info("workflow %s done", wf_id)
            await self.store.notify(wf_id, "workflow:done")

    async def _workflow(self, wf_id: str) -> Workflow:
        state = await self.store.workflow(wf_id)
        if state is None:
            raise NotFoundError(f"workflow {wf_id} does not exist")
        return Workflow.model_validate_json(state.spec)


def _downstream(workflow: Workflow, name: str) -> list[str]:
    """Every node that reads ``name``, directly or through others."""
    found: list[str] = []
    frontier = [name]
    while frontier:
        current = frontier.pop()
        for other, node in workflow.nodes.items():
            if current in node.dependencies() and other not in found:
                found.append(other)
                frontier.append(other)
    return found


def _plan_state(stored: str | None, has_inputs: bool) -> NodeState:
    if stored in set(NodeState):
        return NodeState(stored)
    return NodeState.WAITING if has_inputs else NodeState.PENDING
