"""Every Redis key FlowMesh uses. No key string is built anywhere else.

Layout (``{p}`` is the configured prefix, ``fm`` by default; wrap it in braces, e.g.
``{fm}``, to pin every key to one Redis Cluster slot so Lua scripts stay legal there):

    {p}:ac:{domain}:{op_key}           STRING  action cache: op key -> result digest
    {p}:op:{domain}:{op_key}           HASH    in-flight op: status, spec, creator,
                                               created_at, attempts, batch_id, worker
    {p}:op:{domain}:{op_key}:waiters   LIST    lineage keys of every requester waiting
    {p}:progress:{domain}:{op_key}     STRING  a running item's progress (JSON: step, steps,
                                               loss, eta_s, worker, at), written by its
                                               worker; expires when no longer refreshed
    {p}:resume:{domain}:{op_key}       STRING  a training item's latest intermediate
                                               checkpoint (JSON: digest, step, worker, at);
                                               a reclaimed run resumes from it. Written only
                                               while the op is in flight, deleted with it
                                               (complete, fail, cancel, a dropped requeue)
    {p}:inflight                       ZSET    "{domain}|{op_key}" -> created_at; what a
                                               restarted control plane re-plans
    {p}:outbox                         STREAM  the ledger's outbox: one typed entry per node
                                               and workflow transition (group "control"); a
                                               restarted or standby control plane consumes
                                               what the one before it did not acknowledge
    {p}:inline:{digest}                STRING  a small result's bytes, kept with its action-
                                               cache entry instead of in the CAS (never
                                               expires, like the action cache)
    {p}:blob:{digest}                  HASH    size, media_type, created_at (uploads, results
                                               stored in the CAS, manifests, checkpoint trees;
                                               all through index_blob in lua/_prelude.lua,
                                               so the first record stays)
    {p}:blob:{digest}:trees            SET     checkpoint trees that list this file blob (a
                                               tree's readers may read its files); a tree's
                                               own {p}:blob hash holds tree_bytes, the sum
                                               of its files' sizes (what a worker fetches)
    {p}:blob:{digest}:owners           SET     tenants that uploaded the blob (PUT /v1/blobs)
    {p}:blob:{digest}:grant:{grantee}  SET     tenants that granted the blob to grantee
                                               (POST /v1/blobs/{digest}/grants)
    {p}:blob:{digest}:grantees         SET     tenants with at least one grant of the blob
    {p}:wf:{wf_id}                     HASH    tenant, name, status, created_at, spec,
                                               graph (the spec's GraphSummary, which the
                                               autoscaler reads instead of the spec)
    {p}:wf:{wf_id}:nodes               HASH    node -> status
    {p}:wf:{wf_id}:lineage             ZSET    lineage keys of the workflow -> requested_at
    {p}:tenant:{tenant}:workflows      ZSET    wf ids -> created_at
    {p}:workflows:active               ZSET    wf ids not final yet -> created_at: added by
                                               the submission, removed by the step that
                                               finishes, fails or cancels the workflow (what
                                               the autoscaler reads the next wave from)
    {p}:tenant:{tenant}:submission:{h} STRING  wf id of the submission whose idempotency key
                                               hashes to h (sha256); expires after a week
    {p}:lin:{wf_id}:{node}:{index}     HASH    one lineage record (see models.LineageRecord)
    {p}:stats:{tenant}                 HASH    requested, cache_hits, joins, created
    {p}:stats                          HASH    executed, failed, claimed (cluster-wide)
    {p}:wf:{wf_id}:node:{node}         HASH    node progress: state, op_key, items_total,
                                               remaining, result_digest, error, finished_at
    {p}:wf:{wf_id}:events              STREAM  node and workflow transitions (long-poll waits)
    {p}:ready                          ZSET    signatures with items waiting -> first enqueue
    {p}:ready:{signature}              ZSET    "{tenant}|{domain}|{op_key}" -> virtual start
                                               time (fair queuing across tenants)
    {p}:sig:{signature}                HASH    meta (JSON: kind, version, model, params: what
                                               it means); input_items, input_bytes: items
                                               created since its ready pool last emptied, and
                                               the indexed bytes of the blobs they read
                                               (halved at 4,096 items: _prelude.lua)
    {p}:sig:{signature}:inputs         ZSET    blob digest -> bytes those items read of it
                                               (the scheduler's data-locality inputs; the
                                               256 largest)
    {p}:vclock                         HASH    tenant -> its fair-queuing virtual clock
    {p}:workers                        ZSET    worker id -> last heartbeat
    {p}:worker:{worker_id}             HASH    profile (JSON), warm (JSON), held (JSON: the
                                               checkpoint digests it keeps on local disk,
                                               most recent first, then the input blobs in
                                               its local cache, likewise), inflight,
                                               heartbeat
    {p}:assign:{worker_id}             STREAM  batches assigned to one worker (group "worker")
    {p}:events                         STREAM  completion reports from workers (group "control")
    {p}:batch:{batch_id}               HASH    an assigned batch: worker, signature, members
    {p}:batchlog:{batch_id}            HASH    a batch as it was decided, kept a week after the
                                               claim (the dashboard's batch page): worker,
                                               signature, assigned_at, size, terms (JSON:
                                               the decision's utility terms);
                                               finished_at, worker_seconds, cost_usd,
                                               energy_wh once done
    {p}:batchlog:{batch_id}:lineage    SET     lineage keys of the batch's requesters: those
                                               waiting at the claim, and those that joined
                                               while it ran (added as their item completes)
    {p}:lease:scheduler                STRING  fencing token of the one scheduler that may assign
    {p}:lease:scheduler:epoch          STRING  counter that makes each token unique
    {p}:throughput                     STRING  the learned throughput model (JSON)
    {p}:usage                          HASH    tenant -> decayed worker-seconds (fairness), as
                                               of the time in {p}:usage:at
    {p}:usage:at                       HASH    tenant -> when its usage was last decayed
    {p}:tenant:{tenant}:results        SET     result digests the tenant may read
    {p}:results                        SET     every digest that is some requester's result
    {p}:tenant:{tenant}:uploads        SET     digests the tenant uploaded (it owns them)
    {p}:tenant:{tenant}:granted        SET     digests granted to the tenant (by anyone)
    {p}:tenant:{tenant}:grants         SET     grants the tenant made, "{digest}|{grantee}"
    {p}:wake                           LIST    nudges that wake the scheduler (new work, free slots)
    {p}:tenants                        HASH    sha256(token) -> tenant record (JSON)
    {p}:tenant:{tenant}                HASH    tenant record (JSON, field "record"), and
                                               revoked_at once its tokens were revoked
    {p}:quota:{tenant}                 HASH    in_flight (items requested and not settled,
                                               plus root items of admitted submissions not
                                               yet started), tokens and at (the submission
                                               rate's token bucket), upload_bytes (the sizes
                                               of the blobs the tenant owns)
    {p}:probe:{token}                  STREAM  scratch key of `flowmesh doctor`, deleted at once
    {p}:scratch:{token}:...            any     a nested key space for throw-away round trips

Member formats: a ready-pool member is ``{tenant}|{domain}|{op_key}``, an inflight member
``{domain}|{op_key}`` (``ready_member`` / ``parse_ready_member`` and friends below), a
grant member ``{digest}|{grantee}`` (``grant_member``).

Lua scripts build no key or member themselves: every script runs behind a prelude
generated from this module (``lua_templates``) and from the status enums (see
``store/_lua.py``), so a script that reaches a key named inside data (a waiter's lineage
key, the op a ready-pool member names) formats it with this module's template.

``domain`` is the dedup domain a request belongs to: ``global``, ``org:{org}`` or
``tenant:{tenant}`` (see ``domain_for``). Op keys are 64 hex digits; digests, tenant,
node and workflow names are validated before they reach this module, so a key never
contains a ':' from user input where a separator is expected.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from flowmesh_core.settings import DedupDomain

__all__ = ["KeySpace", "domain_for"]


def domain_for(mode: DedupDomain, tenant: str, organisation: str | None = None) -> str:
    """The dedup domain of a request by ``tenant`` under the configured ``mode``."""
    if mode is DedupDomain.GLOBAL:
        return "global"
    if mode is DedupDomain.ORGANISATION:
        return f"org:{organisation or tenant}"
    return f"tenant:{tenant}"


@dataclass(frozen=True)
class KeySpace:
    """Builds the keys of one FlowMesh installation (one prefix)."""

    prefix: str = "fm"

    def __post_init__(self) -> None:
        if not self.prefix or any(c in self.prefix for c in "%|*?[] "):
            raise ValueError(
                f"key prefix {self.prefix!r} must be non-empty and hold none of % | * ? [ ] "
                "or spaces"
            )

    def action(self, domain: str, op_key: str) -> str:
        return f"{self.prefix}:ac:{domain}:{op_key}"

    def op(self, domain: str, op_key: str) -> str:
        return f"{self.prefix}:op:{domain}:{op_key}"

    def waiters(self, domain: str, op_key: str) -> str:
        return f"{self.prefix}:op:{domain}:{op_key}:waiters"

    def progress(self, domain: str, op_key: str) -> str:
        return f"{self.prefix}:progress:{domain}:{op_key}"

    def resume(self, domain: str, op_key: str) -> str:
        return f"{self.prefix}:resume:{domain}:{op_key}"

    def inflight(self) -> str:
        return f"{self.prefix}:inflight"

    def outbox(self) -> str:
        return f"{self.prefix}:outbox"

    @staticmethod
    def inflight_member(domain: str, op_key: str) -> str:
        return f"{domain}|{op_key}"

    @staticmethod
    def parse_inflight_member(member: str) -> tuple[str, str]:
        """(domain, op key) of a member made by ``inflight_member``."""
        domain, _, op_key = member.rpartition("|")
        return domain, op_key

    def blob(self, digest: str) -> str:
        return f"{self.prefix}:blob:{digest}"

    def inline(self, digest: str) -> str:
        return f"{self.prefix}:inline:{digest}"

    def blob_owners(self, digest: str) -> str:
        return f"{self.prefix}:blob:{digest}:owners"

    def blob_grantors(self, digest: str, grantee: str) -> str:
        return f"{self.prefix}:blob:{digest}:grant:{grantee}"

    def blob_grantees(self, digest: str) -> str:
        return f"{self.prefix}:blob:{digest}:grantees"

    def blob_trees(self, digest: str) -> str:
        return f"{self.prefix}:blob:{digest}:trees"

    def workflow(self, wf_id: str) -> str:
        return f"{self.prefix}:wf:{wf_id}"

    def workflow_nodes(self, wf_id: str) -> str:
        return f"{self.prefix}:wf:{wf_id}:nodes"

    def workflow_lineage(self, wf_id: str) -> str:
        return f"{self.prefix}:wf:{wf_id}:lineage"

    def tenant_workflows(self, tenant: str) -> str:
        return f"{self.prefix}:tenant:{tenant}:workflows"

    def active_workflows(self) -> str:
        return f"{self.prefix}:workflows:active"

    def submission(self, tenant: str, key_hash: str) -> str:
        return f"{self.prefix}:tenant:{tenant}:submission:{key_hash}"

    def lineage(self, wf_id: str, node: str, index: int) -> str:
        return f"{self.prefix}:lin:{wf_id}:{node}:{index}"

    def tenant_stats(self, tenant: str) -> str:
        return f"{self.prefix}:stats:{tenant}"

    def cluster_stats(self) -> str:
        return f"{self.prefix}:stats"

    def node(self, wf_id: str, node: str) -> str:
        return f"{self.prefix}:wf:{wf_id}:node:{node}"

    def workflow_events(self, wf_id: str) -> str:
        return f"{self.prefix}:wf:{wf_id}:events"

    def ready_signatures(self) -> str:
        return f"{self.prefix}:ready"

    def ready(self, signature: str) -> str:
        return f"{self.prefix}:ready:{signature}"

    @staticmethod
    def ready_member(tenant: str, domain: str, op_key: str) -> str:
        return f"{tenant}|{domain}|{op_key}"

    @staticmethod
    def parse_ready_member(member: str) -> tuple[str, str, str]:
        """(tenant, domain, op key) of a member made by ``ready_member``."""
        tenant, domain, op_key = member.split("|", 2)
        return tenant, domain, op_key

    def signature_meta(self, signature: str) -> str:
        return f"{self.prefix}:sig:{signature}"

    def signature_inputs(self, signature: str) -> str:
        return f"{self.prefix}:sig:{signature}:inputs"

    def vclock(self) -> str:
        return f"{self.prefix}:vclock"

    def workers(self) -> str:
        return f"{self.prefix}:workers"

    def worker(self, worker_id: str) -> str:
        return f"{self.prefix}:worker:{worker_id}"

    def assignments(self, worker_id: str) -> str:
        return f"{self.prefix}:assign:{worker_id}"

    def events(self) -> str:
        return f"{self.prefix}:events"

    def batch(self, batch_id: str) -> str:
        return f"{self.prefix}:batch:{batch_id}"

    def batch_log(self, batch_id: str) -> str:
        return f"{self.prefix}:batchlog:{batch_id}"

    def batch_lineage(self, batch_id: str) -> str:
        return f"{self.prefix}:batchlog:{batch_id}:lineage"

    def scheduler_lease(self) -> str:
        return f"{self.prefix}:lease:scheduler"

    def scheduler_epoch(self) -> str:
        return f"{self.prefix}:lease:scheduler:epoch"

    def throughput(self) -> str:
        return f"{self.prefix}:throughput"

    def usage(self) -> str:
        return f"{self.prefix}:usage"

    def usage_at(self) -> str:
        return f"{self.prefix}:usage:at"

    def tenant_tokens(self) -> str:
        return f"{self.prefix}:tenants"

    def tenant(self, tenant: str) -> str:
        return f"{self.prefix}:tenant:{tenant}"

    def quota(self, tenant: str) -> str:
        return f"{self.prefix}:quota:{tenant}"

    def tenant_results(self, tenant: str) -> str:
        return f"{self.prefix}:tenant:{tenant}:results"

    def results(self) -> str:
        return f"{self.prefix}:results"

    def tenant_uploads(self, tenant: str) -> str:
        return f"{self.prefix}:tenant:{tenant}:uploads"

    def tenant_granted(self, tenant: str) -> str:
        return f"{self.prefix}:tenant:{tenant}:granted"

    def tenant_grants(self, tenant: str) -> str:
        return f"{self.prefix}:tenant:{tenant}:grants"

    @staticmethod
    def grant_member(digest: str, grantee: str) -> str:
        """A member of ``tenant_grants``: one grant of ``digest`` to ``grantee``."""
        return f"{digest}|{grantee}"

    @staticmethod
    def parse_grant_member(member: str) -> tuple[str, str]:
        """(digest, grantee) of a member made by ``grant_member``."""
        digest, _, grantee = member.partition("|")
        return digest, grantee

    def wake(self) -> str:
        return f"{self.prefix}:wake"

    def probe(self) -> str:
        return f"{self.prefix}:probe:{uuid.uuid4().hex}"

    def scratch(self, token: str) -> KeySpace:
        """A key space nested under this one, for throw-away data (the doctor's round trip)."""
        return KeySpace(f"{self.prefix}:scratch:{token}")

    def lua_templates(self) -> dict[str, str]:
        """The keys and members Lua scripts reach, as ``string.format`` templates.

        Each is the method of the same name with every argument replaced by ``%s``, so
        the layout above stays the only place a name is decided; ``ready_member_pattern``
        is the Lua pattern that takes a ready member apart (as ``parse_ready_member``).
        """
        s = "%s"
        return {
            "action": self.action(s, s),
            "inline": self.inline(s),
            "blob": self.blob(s),
            "op": self.op(s, s),
            "resume": self.resume(s, s),
            "waiters": self.waiters(s, s),
            "inflight": self.inflight(),
            "inflight_member": self.inflight_member(s, s),
            "workflow": self.workflow(s),
            "workflow_nodes": self.workflow_nodes(s),
            "workflow_lineage": self.workflow_lineage(s),
            "workflow_events": self.workflow_events(s),
            "lineage": self.lineage(s, s, s),  # type: ignore[arg-type]
            "node": self.node(s, s),
            "tenant_stats": self.tenant_stats(s),
            "tenant_results": self.tenant_results(s),
            "tenant_uploads": self.tenant_uploads(s),
            "blob_owners": self.blob_owners(s),
            "blob_trees": self.blob_trees(s),
            "tenant_granted": self.tenant_granted(s),
            "tenant_grants": self.tenant_grants(s),
            "grant_member": self.grant_member(s, s),
            "blob_grantors": self.blob_grantors(s, s),
            "blob_grantees": self.blob_grantees(s),
            "tenant_workflows": self.tenant_workflows(s),
            "active_workflows": self.active_workflows(),
            "tenant": self.tenant(s),
            "tenant_tokens": self.tenant_tokens(),
            "quota": self.quota(s),
            "submission": self.submission(s, s),
            "results": self.results(),
            "cluster_stats": self.cluster_stats(),
            "batch_log": self.batch_log(s),
            "batch_lineage": self.batch_lineage(s),
            "ready": self.ready(s),
            "ready_signatures": self.ready_signatures(),
            "ready_member": self.ready_member(s, s, s),
            "ready_member_pattern": "^([^|]*)|([^|]*)|(.*)$",
            "signature_meta": self.signature_meta(s),
            "signature_inputs": self.signature_inputs(s),
            "vclock": self.vclock(),
            "workers": self.workers(),
            "worker": self.worker(s),
            "usage": self.usage(),
            "usage_at": self.usage_at(),
            "outbox": self.outbox(),
            "wake": self.wake(),
        }

    def pattern(self) -> str:
        """A SCAN pattern matching every key of this installation."""
        return f"{self.prefix}:*"
