"""The wire between the control plane and workers: assignments out, completion reports back.

An assignment is one entry on the worker's stream (``KeySpace.assignments``), written by
the ``claim_batch`` script with the fields ``batch_id``, ``signature``, ``meta`` and
``items``. A completion report is one entry on the events stream (``KeySpace.events``)
with one field, ``report``: a ``Completion`` as JSON. A worker acks its assignment only
after its results are in the CAS and its report is on the events stream.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from pydantic import Field

from flowmesh_core.models import Item, ModelRef
from flowmesh_core.models._base import Digest, FrozenModel

__all__ = ["AssignedItem", "Assignment", "Completion", "ItemResult"]


class AssignedItem(FrozenModel):
    """One item of a batch: where its result goes (domain, op key) and what to compute."""

    domain: str
    op_key: str
    attempt: int
    spec: Item


class Assignment(FrozenModel):
    """A batch for one worker: items that share kind, version, model and signature params."""

    batch_id: str
    signature: str
    kind: str
    version: str
    model: ModelRef | None = None
    items: list[AssignedItem]

    @classmethod
    def from_stream(cls, fields: Mapping[str, str]) -> Assignment:
        """Parse an assignment stream entry."""
        meta = json.loads(fields["meta"])
        return cls(
            batch_id=fields["batch_id"],
            signature=fields["signature"],
            kind=meta["kind"],
            version=meta["version"],
            model=meta.get("model"),
            items=json.loads(fields["items"]),
        )


class ItemResult(FrozenModel):
    """The outcome of one item: a result digest, or an error (never both).

    A small result travels ``inline`` (its bytes as UTF-8 text: results are canonical
    JSON) and is kept in Redis with its action-cache entry instead of the CAS; ``digest``
    is still its sha256, checked by the control plane.

    An error marked ``deterministic`` is one the item would meet on any worker (its
    executor rejected its inputs or params): the control plane fails it at once instead of
    handing it back for another attempt.
    """

    domain: str
    op_key: str
    digest: Digest | None = None
    error: str | None = None
    inline: str | None = None
    deterministic: bool = False
    size: int | None = Field(default=None, ge=0)  # bytes of a result stored in the CAS


class Completion(FrozenModel):
    """A worker's report on one batch: per-item outcomes and what the batch took.

    ``load_seconds`` is the part of the batch spent loading the model (0 when warm), so
    the throughput model learns execution and loading apart.
    """

    batch_id: str
    worker_id: str
    signature: str
    started_at: float
    finished_at: float
    load_seconds: float = Field(default=0.0, ge=0)
    results: list[ItemResult]

    def to_stream(self) -> dict[str, str]:
        """The events stream entry for this report. Fields at their default are left out,
        so a report without a deterministic error reads the same to an older control plane."""
        return {"report": self.model_dump_json(exclude_defaults=True)}

    @classmethod
    def from_stream(cls, fields: Mapping[str, str]) -> Completion:
        """Parse an events stream entry."""
        return cls.model_validate_json(fields["report"])
