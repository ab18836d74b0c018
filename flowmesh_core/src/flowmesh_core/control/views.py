"""What the dashboard shows of shared work: the ready pool and one batch, scoped by tenant.

An admin sees every tenant's share of each ready-pool group and every requester of a
batch. Any other tenant sees only its own items (docs/isolation.md): the pool groups it
has items in, with its own share; a batch that ran one of its items, with its own
lineage records and the batch's aggregate figures. Another tenant's name, items or op
keys never appear, and a batch that holds none of the caller's items answers exactly
like one that does not exist.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from typing import Any

from flowmesh_core.control.scheduler import model_id
from flowmesh_core.errors import NotFoundError
from flowmesh_core.models import LineageRecord
from flowmesh_core.models.api import BatchReport, PoolGroup, PoolReport, PoolShare, Tenant
from flowmesh_core.settings import DedupDomain, Settings
from flowmesh_core.store import Store
from flowmesh_core.store.keys import KeySpace
from flowmesh_core.store.views import ReadyGroup

__all__ = ["AGE_SAMPLE", "TENANT_HIDDEN_TERMS", "FabricViews"]

AGE_SAMPLE = 1000
"""A share's oldest wait is read from its first this many items in queue order (fair-
queuing order follows arrival within a tenant, so the oldest is among them)."""

TENANT_HIDDEN_TERMS = frozenset({"ready", "fairness", "free_workers", "input_bytes", "input_local"})
"""Decision terms that depend on other tenants' activity (the group's size when chosen,
the tenants' fair-share balance, the free fleet, the mean input size of the group's
waiting items, whether earlier work left the inputs on the worker's disk): an admin's
only."""


class FabricViews:
    """The ready pool and batch views over one store, as one tenant may see them."""

    def __init__(self, store: Store, settings: Settings) -> None:
        self.store = store
        self.settings = settings

    async def pool(self, tenant: Tenant) -> PoolReport:
        """The ready pool's groups the caller may see, oldest first (see module doc)."""
        now = time.time()
        groups = await self.store.ready_groups()
        by_tenant = [_split(g) for g in groups]
        wanted = [
            (i, t, member)
            for i, split in enumerate(by_tenant)
            for t, members in split.items()
            if tenant.admin or t == tenant.name
            for member in members[:AGE_SAMPLE]
        ]
        ops = [KeySpace.parse_ready_member(m)[1:] for _, _, m in wanted]
        created = await self.store.ops_created_at(ops)
        oldest: dict[tuple[int, str], float] = {}
        for (i, t, _), at in zip(wanted, created, strict=True):
            if at is not None:
                oldest[(i, t)] = min(oldest.get((i, t), at), at)
        shown_size = tenant.admin or self.settings.dedup_domain is not DedupDomain.TENANT
        report = []
        for i, group in enumerate(groups):
            shares = [
                PoolShare(
                    tenant=t,
                    items=len(members),
                    oldest_wait_s=max(now - oldest.get((i, t), now), 0.0),
                )
                for t, members in sorted(by_tenant[i].items())
                if tenant.admin or t == tenant.name
            ]
            if not shares:
                continue
            wait = max(s.oldest_wait_s for s in shares)
            report.append(
                PoolGroup(
                    signature=group.signature,
                    kind=str(group.meaning.get("kind", "?")),
                    model=model_id(group.meaning.get("model")),
                    size=len(group.members) if shown_size else None,
                    oldest_wait_s=wait,
                    shares=shares,
                )
            )
        report.sort(key=lambda g: -g.oldest_wait_s)
        return PoolReport(at=now, groups=report)

    async def batch(self, tenant: Tenant, batch_id: str) -> BatchReport:
        """One batch: its worker, the decision's terms, its figures and its requesters
        (every one for an admin, the caller's own otherwise)."""
        log = await self.store.batch_log(batch_id)
        records = await self.store.batch_requesters(batch_id)
        if not tenant.admin:
            records = [r for r in records if r.tenant == tenant.name]
        if not log or not records:
            raise NotFoundError(f"no batch {batch_id!r} for tenant {tenant.name!r}")
        meaning = await self.store.signature_info(log["signature"])
        terms = _terms(log.get("terms", "{}"))
        if not tenant.admin:
            terms = {k: v for k, v in terms.items() if k not in TENANT_HIDDEN_TERMS}
        return BatchReport(
            batch_id=batch_id,
            worker=log["worker"],
            kind=str(meaning.get("kind", "?")),
            model=model_id(meaning.get("model")),
            size=int(log["size"]),
            assigned_at=float(log["assigned_at"]),
            finished_at=_float(log.get("finished_at")),
            worker_seconds=_float(log.get("worker_seconds")),
            cost_usd=_float(log.get("cost_usd")),
            energy_wh=_float(log.get("energy_wh")),
            terms=terms,
            items=sorted(records, key=_order),
        )


def _split(group: ReadyGroup) -> dict[str, list[str]]:
    """A group's members by tenant."""
    split: dict[str, list[str]] = defaultdict(list)
    for member in group.members:
        split[KeySpace.parse_ready_member(member)[0]].append(member)
    return split


def _terms(raw: str) -> dict[str, Any]:
    value = json.loads(raw or "{}")
    return dict(value) if isinstance(value, dict) else {}


def _float(raw: str | None) -> float | None:
    return None if raw in (None, "") else float(str(raw))


def _order(record: LineageRecord) -> tuple[str, str, str, int]:
    return (record.tenant, record.workflow, record.node, record.index)
