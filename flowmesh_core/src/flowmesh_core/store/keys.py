"""Every Redis key FlowMesh uses. No key string is built anywhere else.

Layout (``{p}`` is the configured prefix, ``fm`` by default; wrap it in braces, e.g.
``{fm}``, to pin every key to one Redis Cluster slot so Lua scripts stay legal there):

    {p}:ac:{domain}:{op_key}           STRING  action cache: op key -> result digest
    {p}:op:{domain}:{op_key}           HASH    in-flight op: status, spec, creator,
                                               created_at, attempts, batch_id, worker
    {p}:op:{domain}:{op_key}:waiters   LIST    lineage keys of every requester waiting
    {p}:inflight                       ZSET    "{domain}|{op_key}" -> created_at; what a
                                               restarted control plane re-plans
    {p}:blob:{digest}                  HASH    size, media_type, created_at
    {p}:blob:{digest}:holders          SET     worker ids holding a local copy
    {p}:wf:{wf_id}                     HASH    tenant, name, status, created_at, spec
    {p}:wf:{wf_id}:nodes               HASH    node -> status
    {p}:wf:{wf_id}:lineage             ZSET    lineage keys of the workflow -> requested_at
    {p}:tenant:{tenant}:workflows      ZSET    wf ids -> created_at
    {p}:lin:{wf_id}:{node}:{index}     HASH    one lineage record (see models.LineageRecord)
    {p}:stats:{tenant}                 HASH    requested, cache_hits, joins, created
    {p}:stats                          HASH    executed, failed, claimed (cluster-wide)
    {p}:probe:{token}                  STREAM  scratch key of `flowmesh doctor`, deleted at once
    {p}:scratch:{token}:...            any     a nested key space for throw-away round trips

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

    def action(self, domain: str, op_key: str) -> str:
        return f"{self.prefix}:ac:{domain}:{op_key}"

    def op(self, domain: str, op_key: str) -> str:
        return f"{self.prefix}:op:{domain}:{op_key}"

    def waiters(self, domain: str, op_key: str) -> str:
        return f"{self.prefix}:op:{domain}:{op_key}:waiters"

    def inflight(self) -> str:
        return f"{self.prefix}:inflight"

    @staticmethod
    def inflight_member(domain: str, op_key: str) -> str:
        return f"{domain}|{op_key}"

    def blob(self, digest: str) -> str:
        return f"{self.prefix}:blob:{digest}"

    def blob_holders(self, digest: str) -> str:
        return f"{self.prefix}:blob:{digest}:holders"

    def workflow(self, wf_id: str) -> str:
        return f"{self.prefix}:wf:{wf_id}"

    def workflow_nodes(self, wf_id: str) -> str:
        return f"{self.prefix}:wf:{wf_id}:nodes"

    def workflow_lineage(self, wf_id: str) -> str:
        return f"{self.prefix}:wf:{wf_id}:lineage"

    def tenant_workflows(self, tenant: str) -> str:
        return f"{self.prefix}:tenant:{tenant}:workflows"

    def lineage(self, wf_id: str, node: str, index: int) -> str:
        return f"{self.prefix}:lin:{wf_id}:{node}:{index}"

    def tenant_stats(self, tenant: str) -> str:
        return f"{self.prefix}:stats:{tenant}"

    def cluster_stats(self) -> str:
        return f"{self.prefix}:stats"

    def probe(self) -> str:
        return f"{self.prefix}:probe:{uuid.uuid4().hex}"

    def scratch(self, token: str) -> KeySpace:
        """A key space nested under this one, for throw-away data (the doctor's round trip)."""
        return KeySpace(f"{self.prefix}:scratch:{token}")

    def pattern(self) -> str:
        """A SCAN pattern matching every key of this installation."""
        return f"{self.prefix}:*"
