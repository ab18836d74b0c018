"""Workflows through the fabric: validate whole, store, start nodes as their inputs become
known, and record each node's result: a thin driver of the ledger and the rules.

A submission is checked completely (every node's kind, params and inputs; keys of every
node whose inputs are known) before anything is stored, so bad input leaves no partial
state. Storing the workflow and starting each of its root nodes (every item attached:
cache hit, join, or entry into the ready pool) go to Redis in one round trip, each an
atomic ledger step.

After that the engine only reacts: ``advance`` reads a workflow's node records, asks
``rules.next_actions`` what must happen, and carries each action out through the ledger
(``store/ledger.py``). The outbox consumer calls it for every transition announced, so a
control plane killed anywhere is replaced by one that finishes its work; each ledger step
applies once, so asking twice is harmless. See docs/architecture.md.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from flowmesh_core.blobs import BlobStore
from flowmesh_core.checkpoint import model_tree
from flowmesh_core.control.rules import (
    FailNode,
    NodeView,
    RecordResult,
    StartNode,
    downstream,
    next_actions,
)
from flowmesh_core.errors import (
    BlobNotFoundError,
    ConflictError,
    FlowMeshError,
    InvalidInputError,
    InvalidOperatorError,
    NotFoundError,
    ServiceUnavailableError,
)
from flowmesh_core.hashing import digest_bytes
from flowmesh_core.keys import Expansion, expand
from flowmesh_core.manifest import build_manifest
from flowmesh_core.model_names import check_model_path, model_roots
from flowmesh_core.models import (
    BlobInput,
    ModelRef,
    Operator,
    Workflow,
    WorkflowNode,
    referenced_blobs,
)
from flowmesh_core.models.api import NodePlan, NodeState, SubmitResult, Tenant
from flowmesh_core.models.bounds import loads_json
from flowmesh_core.models.graph_summary import GraphSummary
from flowmesh_core.models.workflow import MODEL_INPUT
from flowmesh_core.registry import Registry
from flowmesh_core.results import Prefetched, ResultReader
from flowmesh_core.settings import DedupDomain, Settings
from flowmesh_core.store import NodeStart, Store, SubmitQuota, domain_for

__all__ = ["WorkflowEngine"]

log = logging.getLogger("flowmesh.engine")

_SPEC_CACHE = 4096
"""Parsed workflow specs kept in memory (a spec never changes once stored)."""


@dataclass(frozen=True)
class _Stored:
    """A stored workflow as the engine drives it."""

    tenant: str
    domain: str
    workflow: Workflow
    final: bool


class WorkflowEngine:
    """Submission, expansion, and the advance of workflows as their nodes finish."""

    def __init__(
        self, store: Store, blobs: BlobStore, registry: Registry, settings: Settings
    ) -> None:
        self.store = store
        self.blobs = blobs
        self.registry = registry
        self.settings = settings
        self._specs: OrderedDict[str, _Stored] = OrderedDict()
        self.results = ResultReader(store, blobs)
        self._model_roots = model_roots(settings)

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
        with a different workflow is a ConflictError. The tenant's quotas are checked and
        counted by the step that stores it (QuotaExceededError: nothing was stored).
        """
        wf_id = uuid.uuid4().hex
        ready = await self._validate(tenant, workflow, wf_id)
        domain = self.domain(tenant.name, tenant.organisation)
        spec = workflow.model_dump_json()
        store = self.store
        quota = self._quota(tenant, sum(len(e.items) for e in ready.values()))
        calls = [
            store.submit_call(
                wf_id,
                tenant.name,
                workflow.name or "",
                spec,
                list(workflow.nodes),
                domain,
                idempotency_key,
                quota,
                GraphSummary.of(workflow),  # what the autoscaler reads instead of the spec
            )
        ]
        calls += [self._start_call(tenant.name, domain, wf_id, n, e) for n, e in ready.items()]
        replies = await store.run_scripts(calls)
        earlier = store.submit_outcome(wf_id, replies[0])
        if earlier is not None:
            return await self._replay(earlier, spec)
        self._remember(wf_id, _Stored(tenant.name, domain, workflow, final=False))
        starts = dict(zip(ready, map(store.start_outcome, replies[1:]), strict=True))
        plans = [
            _plan(name, ready.get(name), starts.get(name), node)
            for name, node in workflow.nodes.items()
        ]
        if any(start.done for start in starts.values()):
            # Cached nodes are recorded (and their readers started) before answering, so
            # a cached workflow is done when its submission returns. The outbox entries
            # the same steps wrote make this happen anyway if the process dies here.
            await self.advance(wf_id)
        return SubmitResult(workflow_id=wf_id, nodes=plans)

    def _quota(self, tenant: Tenant, root_items: int) -> SubmitQuota:
        """The tenant's quotas (its own, else the settings'; an admin has none) for a
        submission whose root nodes have ``root_items`` items (docs/isolation.md)."""
        if tenant.admin:
            return SubmitQuota(root_items=root_items)
        limit = tenant.max_in_flight
        limit = self.settings.tenant_max_in_flight if limit is None else limit
        rate = tenant.submit_rate
        rate = self.settings.tenant_submit_rate if rate is None else rate
        if limit and root_items > limit:
            raise InvalidInputError(
                f"the root nodes have {root_items:,} items, more than this tenant may have "
                f"in flight ({limit:,}): split the work into smaller submissions"
            )
        return SubmitQuota(limit, rate, max(2.0 * rate, 1.0), root_items)

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
                await self._check_readable(tenant, referenced_blobs(node.inputs))
                if isinstance(node.model, ModelRef):  # else a training node of this workflow
                    check_model_path(node.model, self._model_roots)
                    await self._check_model(tenant, node.model)
                if node.dependencies():
                    self._check_waiting(node)
                else:
                    expansion = await self._expand(node.to_operator({}), wf_id, name, tenant.name)
                    await self._check_listed(tenant, expansion)
                    ready[name] = expansion
            except FlowMeshError as exc:
                raise type(exc)(f"node {name!r}: {exc}") from exc
        return ready

    async def _check_readable(self, tenant: Tenant, digests: Iterable[str]) -> None:
        """Every digest a worker will read for ``tenant`` must be a result the tenant's
        lineage holds, a blob the tenant uploaded, or one granted to it (docs/isolation.md).

        Otherwise a tenant could compute on another tenant's results or uploads by naming
        their digests. Such a digest and one that does not exist get the same answer, at
        submission, so that the answer is no oracle for whether a digest exists.
        """
        if tenant.admin:
            return
        for digest in await self.store.unreadable_for(tenant.name, sorted(digests)):
            raise NotFoundError(f"no blob {digest} for this tenant")

    async def _check_model(self, tenant: Tenant, model: ModelRef | None, depth: int = 0) -> None:
        """A checkpoint named as a model must be one (a tree) that ``tenant`` may use: a
        result its lineage holds (a checkpoint it trained, or shared by dedup), or one
        it uploaded whose files (and base) it may read (docs/training.md). Refused like
        an unknown digest otherwise, as ``_check_readable`` does.

        A lineage tree's files are trusted whole, but a LoRA tree's base is read again
        at every run, so it is checked against the tenant's rights now, whatever vouched
        for the tree: an adapter trained on a granted checkpoint stops working when that
        grant is revoked, and a grant of the adapter does not pass its base on."""
        if model is None or model.digest is None or tenant.admin:
            return
        digest = model.digest
        await self._check_readable(tenant, [digest])
        try:
            data = await self.results.read(digest)
        except BlobNotFoundError:
            raise NotFoundError(f"no blob {digest} for this tenant") from None
        tree = model_tree(digest, data)
        if depth >= _MAX_BASES:
            raise InvalidOperatorError(
                f"model {digest}: its chain of base checkpoints is over {_MAX_BASES} long"
            )
        if not await self.store.trusted_listings(tenant.name, [digest]):
            await self._check_readable(tenant, tree.digests)
        if tree.format == "lora":  # a full tree is a whole model: its base is history
            await self._check_model(tenant, tree.base, depth + 1)

    async def _check_listed(self, tenant: Tenant, expansion: Expansion) -> None:
        """The digests the manifests an expansion read list (a tenant can upload a
        manifest of its own making, and so can a grantor); a manifest that is a lineage
        result, the tenant's own or one granted by a tenant whose lineage holds it, is
        trusted whole (``Store.trusted_listings``)."""
        if not expansion.manifests or tenant.admin:
            return
        trusted = await self.store.trusted_listings(tenant.name, expansion.manifests)
        listed = (d for m, ds in expansion.manifests.items() if m not in trusted for d in ds)
        await self._check_readable(tenant, dict.fromkeys(listed))

    def _check_waiting(self, node: WorkflowNode) -> None:
        spec = self.registry.get(node.kind)
        spec.normalize_params(node.params)
        spec.check_inputs(node.inputs)

    async def _expand(self, op: Operator, wf_id: str, node: str, tenant: str) -> Expansion:
        salt = None if op.dedup else f"{wf_id}/{node}"
        # Under the tenant domain a batch holds one tenant's items only (keys.expand).
        tenant_only = self.settings.dedup_domain is DedupDomain.TENANT
        scope = self.domain(tenant) if tenant_only else None
        digests = [inp.blob for inp in op.inputs.values() if isinstance(inp, BlobInput)]
        source = Prefetched(self.blobs, await self.results.inline(digests) if digests else {})

        def load_json(digest: str) -> Any:
            return loads_json(source.get_bytes(digest), source=f"blob {digest}")

        return await asyncio.to_thread(
            expand,
            op,
            self.registry,
            max_inline_bytes=self.settings.max_inline_bytes,
            salt=salt,
            load_blob=load_json,
            batch_scope=scope,
        )

    # -- advancing -----------------------------------------------------------------------

    def _start_call(self, tenant: str, domain: str, wf_id: str, name: str, exp: Expansion) -> Any:
        return self.store.start_call(
            tenant, domain, wf_id, name, exp.op_key, exp.items, batched=exp.batched
        )

    async def advance(self, wf_id: str) -> None:
        """Carry out every action the rules ask for, until they ask for none.

        Idempotent, and safe to repeat after a crash anywhere in it. Raises
        ServiceUnavailableError when Redis or the blob store does not answer: nothing
        is lost, and the caller asks again later.
        """
        for _ in range(_MAX_ROUNDS):
            stored = self._specs.get(wf_id) or await self._stored(wf_id)
            if stored is None or stored.final:
                return
            nodes = list(stored.workflow.nodes)
            exists, final, records = await self.store.progress(wf_id, nodes)
            if not exists or final:
                self._forget(wf_id)
                return
            views = {name: NodeView.from_record(r) for name, r in records.items()}
            actions = next_actions(stored.workflow, views)
            if not actions:
                return
            for action in actions:
                if isinstance(action, StartNode):
                    await self._start_dependent(wf_id, stored, action)
                elif isinstance(action, RecordResult):
                    recorded = await self._record_result(wf_id, action.node, records)
                    if recorded is not False:
                        return  # the workflow's last node (True), or it cannot be (None)
                else:
                    await self._fail(wf_id, stored, action)
                    return

    async def _start_dependent(self, wf_id: str, stored: _Stored, action: StartNode) -> None:
        node = stored.workflow.nodes[action.node]
        inputs = dict(action.inputs)
        trained = inputs.pop(MODEL_INPUT, None)
        model = ModelRef(digest=trained) if trained is not None else None
        resolved = {field: BlobInput(blob=digest) for field, digest in inputs.items()}
        tenant = Tenant(name=stored.tenant)
        try:
            op = node.to_operator(resolved, model)
            await self._check_model(tenant, model)
            expansion = await self._expand(op, wf_id, action.node, stored.tenant)
            await self._check_listed(tenant, expansion)
        except ServiceUnavailableError:
            raise  # a blip, not the workflow's fault: the outbox entry is retried
        except FlowMeshError as exc:
            error = f"node {action.node!r}: {exc}"
            later = tuple(downstream(stored.workflow, action.node))
            await self._fail(wf_id, stored, FailNode(action.node, error, later))
            return
        call = self._start_call(stored.tenant, stored.domain, wf_id, action.node, expansion)
        await self.store.run_script(*call)

    async def _record_result(
        self, wf_id: str, name: str, records: dict[str, dict[str, str]]
    ) -> bool | None:
        """Record a node's result (its one item's digest, or a manifest of its items'
        digests); True if that finished the workflow, None if it cannot be recorded (an
        item has no result: a bug, logged; asking again would not help)."""
        record = records[name]
        total = int(record.get("items_total", 0))
        digests = await self.store.item_digests(wf_id, name, total)
        if any(d is None for d in digests):
            log.error("node %s/%s finished with items missing results", wf_id, name)
            return None
        inline: bytes | None = None
        if record.get("batched") == "1":
            manifest = build_manifest([str(d) for d in digests])
            if len(manifest) <= self.settings.inline_result_bytes:
                result, inline = digest_bytes(manifest), manifest  # kept with the node
            else:
                result = (await asyncio.to_thread(self.blobs.put_bytes, manifest)).digest
                await self.store.record_blob(result, len(manifest), "application/json")
        else:
            result = str(digests[0])
        node_now, workflow_now = await self.store.finish_node(wf_id, name, result, inline)
        if node_now:
            log.info("node %s/%s done: %s", wf_id, name, result)
        if workflow_now:
            log.info("workflow %s done", wf_id)
            self._forget(wf_id)
        return workflow_now

    async def _fail(self, wf_id: str, stored: _Stored, action: FailNode) -> None:
        later = action.downstream
        if await self.store.fail_nodes(wf_id, action.node, action.error, later):
            log.warning("workflow %s failed at node %s: %s", wf_id, action.node, action.error)
        self._forget(wf_id)

    # -- stored workflows --------------------------------------------------------------

    async def _stored(self, wf_id: str) -> _Stored | None:
        """The workflow as stored; its parsed spec from memory when seen before."""
        state = await self.store.workflow(wf_id)
        if state is None:
            self._forget(wf_id)
            return None
        final = state.finished_at is not None
        cached = self._specs.get(wf_id)
        if cached is None:
            workflow = Workflow.model_validate_json(state.spec)
            cached = _Stored(state.tenant, state.domain, workflow, final)
            self._remember(wf_id, cached)
        if final:
            self._forget(wf_id)
        return _Stored(cached.tenant, cached.domain, cached.workflow, final)

    def _remember(self, wf_id: str, stored: _Stored) -> None:
        self._specs[wf_id] = stored
        while len(self._specs) > _SPEC_CACHE:
            self._specs.popitem(last=False)

    def _forget(self, wf_id: str) -> None:
        self._specs.pop(wf_id, None)


_MAX_BASES = 16
"""How deep an uploaded checkpoint's chain of checkpoint bases may go."""

_MAX_ROUNDS = 64
"""How many rounds of rules ``advance`` runs at most in one call (each round starts,
finishes or fails at least one node; the outbox brings the workflow back if more is
left)."""


def _plan(
    name: str, exp: Expansion | None, start: NodeStart | None, node: WorkflowNode
) -> NodePlan:
    if exp is None or start is None:
        return NodePlan(
            node=name, op_key=None, state=NodeState.WAITING, waits_for=node.dependencies()
        )
    return NodePlan(
        node=name,
        op_key=exp.op_key,
        state=NodeState.DONE if start.done else NodeState.PENDING,
        items=len(exp.items),
        cache_hits=start.cache_hits,
        joined=start.joined,
        created=start.created,
    )


def _plan_state(stored: str | None, has_inputs: bool) -> NodeState:
    if stored in set(NodeState):
        return NodeState(stored)
    return NodeState.WAITING if has_inputs else NodeState.PENDING
