"""What each client submits: a three-node workflow of cheap ``data.*`` kinds, no model.

::

    render   data.template   one line per record: "Summarise {name} (record {n})."
    unique   data.dedup      render's lines, repeats dropped (one item: the whole list)
    label    data.template   "{text} [checked]" over unique's lines

``render`` is known at submission (its items are the records); ``unique`` waits for it
and ``label`` for ``unique``, so every workflow goes through the scheduler and a worker
three times, one stage after the other.

Records are unique by default: every field is spelled from a hash of the run's nonce,
the client and its workflow's number, so no item is a cache hit or joins work in flight.
With overlap ``o``, each record is instead, with probability ``o``, one of ``pool``
records every client shares (a fixed draw per client and workflow, so a run is
reproducible from its seed): those items are cache hits or joins after their first
run, and a workflow whose every record came from the pool in the same order repeats
whole.

This module is pure: it builds documents, it never sends them.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from typing import Any

__all__ = ["NODES", "Workload"]

NODES = ("render", "unique", "label")
_WORDS = (
    "river", "engine", "quiet", "lantern", "orbit", "copper", "meadow", "signal", "harbor",
    "velvet", "thunder", "pixel", "garden", "mirror", "falcon", "ledger", "candle", "summit",
    "prism", "anchor", "willow", "cobalt", "ocean", "glacier", "stone", "cloud", "bright",
    "forest", "silver", "window", "music", "paper",
)  # fmt: skip


def _name(*parts: object) -> str:
    """Twelve words spelled from a hash of ``parts`` (60 bits, 5 a word)."""
    digest = hashlib.sha256("/".join(map(str, parts)).encode()).digest()
    code = int.from_bytes(digest[:8], "big")
    return " ".join(_WORDS[(code >> (5 * j)) % 32] for j in range(12))


@dataclass(frozen=True)
class Workload:
    """The documents of one run: ``records`` per workflow, ``overlap`` of them from a
    ``pool`` shared by every client; ``nonce`` makes a run's own records its own."""

    nonce: int
    records: int = 3
    overlap: float = 0.0
    pool: int = 16

    def record_list(self, client: int, number: int) -> list[dict[str, Any]]:
        """The records of client ``client``'s workflow ``number``."""
        draw = random.Random(f"{self.nonce}/{client}/{number}")
        records = []
        for index in range(self.records):
            if self.overlap > 0 and draw.random() < self.overlap:
                shared = draw.randrange(self.pool)
                records.append({"name": _name(self.nonce, "pool", shared), "n": shared})
            else:
                name = _name(self.nonce, client, number, index)
                records.append({"name": name, "n": number * self.records + index})
        return records

    def document(self, client: int, number: int) -> dict[str, Any]:
        """The workflow to POST to ``/v1/workflows``, as JSON."""
        return {
            "name": f"load-{client}-{number}",
            "nodes": {
                "render": {
                    "kind": "data.template",
                    "params": {"template": "Summarise {name} (record {n})."},
                    "inputs": {"records": self.record_list(client, number)},
                },
                "unique": {"kind": "data.dedup", "inputs": {"items": {"ref": "render"}}},
                "label": {
                    "kind": "data.template",
                    "params": {"template": "{text} [checked]"},
                    "inputs": {"records": {"ref": "unique"}},
                },
            },
        }
