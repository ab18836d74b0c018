"""FlowMesh's answers as Dagster metadata: plan, dedup status, lineage summary and cost.

Every key starts with ``flowmesh/`` so it sorts together in the Dagster UI and never
collides with a user's own metadata. Counts cover the whole submitted workflow (for one
operator: its items); ``op_key`` and ``result_digest`` are those of the result node.

This module must never fetch anything: it formats what the client already returned.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol

import dagster as dg

from flowmesh_core.models import LineageRecord, Satisfaction

__all__ = ["NodePlanLike", "NodeStatusLike", "result_metadata", "submission_metadata"]

PREFIX = "flowmesh/"


class NodePlanLike(Protocol):
    """The fields of the client's per-node submission plan that the metadata shows."""

    @property
    def node(self) -> str: ...
    @property
    def items(self) -> int: ...
    @property
    def cache_hits(self) -> int: ...
    @property
    def joined(self) -> int: ...
    @property
    def created(self) -> int: ...


class NodeStatusLike(Protocol):
    """The fields of the client's per-node status that the metadata shows."""

    @property
    def node(self) -> str: ...
    @property
    def state(self) -> str: ...
    @property
    def op_key(self) -> str | None: ...
    @property
    def error(self) -> str | None: ...
    @property
    def lineage(self) -> list[LineageRecord]: ...


def submission_metadata(
    workflow_id: str,
    node: str,
    op_key: str | None,
    plan: Sequence[NodePlanLike],
    *,
    replayed: bool,
) -> dict[str, dg.MetadataValue]:
    """What is known at submission: the workflow, and how its items will be satisfied."""
    meta: dict[str, dg.MetadataValue] = {
        "workflow_id": dg.MetadataValue.text(workflow_id),
        "node": dg.MetadataValue.text(node),
        "items": dg.MetadataValue.int(sum(p.items for p in plan)),
        "planned_cache_hits": dg.MetadataValue.int(sum(p.cache_hits for p in plan)),
        "planned_joined": dg.MetadataValue.int(sum(p.joined for p in plan)),
        "planned_created": dg.MetadataValue.int(sum(p.created for p in plan)),
        "reattached": dg.MetadataValue.bool(replayed),
    }
    if op_key is not None:
        meta["op_key"] = dg.MetadataValue.text(op_key)
    return _prefixed(meta)


def result_metadata(
    workflow_id: str,
    node: str,
    op_key: str | None,
    result_digest: str,
    nodes: Sequence[NodeStatusLike],
    *,
    replayed: bool,
) -> dict[str, dg.MetadataValue]:
    """What a finished workflow reports: dedup status, lineage summary, attributed cost."""
    records = [record for status in nodes for record in status.lineage]
    how = _satisfied(records)
    meta: dict[str, dg.MetadataValue] = {
        "workflow_id": dg.MetadataValue.text(workflow_id),
        "node": dg.MetadataValue.text(node),
        "op_key": dg.MetadataValue.text(op_key or ""),
        "result_digest": dg.MetadataValue.text(result_digest),
        "items": dg.MetadataValue.int(len(records)),
        "executed": dg.MetadataValue.int(how[Satisfaction.EXECUTED]),
        "cache_hit": dg.MetadataValue.int(how[Satisfaction.CACHE_HIT]),
        "joined": dg.MetadataValue.int(how[Satisfaction.JOINED]),
        "batches": dg.MetadataValue.int(len({r.batch_id for r in records if r.batch_id})),
        "workers": dg.MetadataValue.text(", ".join(sorted(_workers(records)))),
        "cost_usd": dg.MetadataValue.float(float(sum(r.cost_usd for r in records))),
        "energy_wh": dg.MetadataValue.float(float(sum(r.energy_wh for r in records))),
        "lineage": dg.MetadataValue.md(_lineage_table(nodes)),
        "reattached": dg.MetadataValue.bool(replayed),
    }
    seconds = _worker_seconds(records)
    if seconds is not None:
        meta["worker_seconds"] = dg.MetadataValue.float(seconds)
    return _prefixed(meta)


def _prefixed(meta: dict[str, dg.MetadataValue]) -> dict[str, dg.MetadataValue]:
    return {PREFIX + key: value for key, value in meta.items()}


def _satisfied(records: Iterable[LineageRecord]) -> dict[Satisfaction, int]:
    counts = dict.fromkeys(Satisfaction, 0)
    for record in records:
        counts[record.satisfied_by] += 1
    return counts


def _workers(records: Iterable[LineageRecord]) -> set[str]:
    return {record.worker for record in records if record.worker}


def _worker_seconds(records: Sequence[LineageRecord]) -> float | None:
    """The worker-seconds attributed to these records, where lineage carries them."""
    # Older control planes record $ and Wh per requester but not the seconds behind them.
    shares = [getattr(record, "worker_seconds", None) for record in records]
    if not records or any(share is None for share in shares):
        return None
    return float(sum(share for share in shares if share is not None))


def _lineage_table(nodes: Sequence[NodeStatusLike]) -> str:
    """One markdown row per node: its op key and how its items were satisfied."""
    rows = [
        "| node | op key | items | executed | cache hit | joined | batches | $ | Wh |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for status in nodes:
        records = status.lineage
        how = _satisfied(records)
        key = f"`{status.op_key[:23]}…`" if status.op_key else "-"
        rows.append(
            f"| {status.node} | {key} | {len(records)} | {how[Satisfaction.EXECUTED]} | "
            f"{how[Satisfaction.CACHE_HIT]} | {how[Satisfaction.JOINED]} | "
            f"{len({r.batch_id for r in records if r.batch_id})} | "
            f"{sum(r.cost_usd for r in records):.6f} | {sum(r.energy_wh for r in records):.4f} |"
        )
    return "\n".join(rows)
