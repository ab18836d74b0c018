"""Which pool should run the waiting work: the cheapest per item first, overflow onwards.

Pure: the caller passes the waiting groups and how many seconds an item takes on each
pool's accelerator (from the scheduler's learned throughput model). A pool is offered work
up to what ``max_replicas`` replicas drain within ``drain_s``; the rest overflows to the
next pool by $ per item (then Wh per item), so a burst spills onto pricier pools only when
the cheap one is full (docs/autoscaling.md).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from flowmesh_core.autoscale.pools import PoolSpec

__all__ = ["Waiting", "place"]


@dataclass(frozen=True, slots=True)
class Waiting:
    """A group of ready items that batch together (one signature)."""

    signature: str
    kind: str
    model: str | None
    items: int
    max_batch: int = 64
    weight: float = 1.0  # units of work per item (a training run: examples x epochs)


SecondsPerItem = Callable[[PoolSpec, Waiting], float]


def place(
    pools: Mapping[str, PoolSpec],
    waiting: Sequence[Waiting],
    seconds_per_item: SecondsPerItem,
    drain_s: float,
) -> dict[str, tuple[float, int]]:
    """Each pool's share of the backlog: (seconds of its accelerator, batches)."""
    out = {name: (0.0, 0) for name in pools}
    room = {name: spec.max_replicas * drain_s for name, spec in pools.items()}
    for group in sorted(waiting, key=lambda w: (-w.items, w.signature)):
        left = group.items
        rates = {name: seconds_per_item(spec, group) for name, spec in pools.items()}
        order = sorted(
            (n for n in pools if room[n] > 0),
            key=lambda n: (pools[n].usd_per_hour * rates[n], pools[n].watts * rates[n], n),
        )
        for i, name in enumerate(order):
            last = i == len(order) - 1
            take = left if last else min(left, int(room[name] // max(rates[name], 1e-9)))
            if take <= 0:
                continue
            seconds = take * rates[name]
            room[name] -= seconds
            held, batches = out[name]
            out[name] = (held + seconds, batches + math.ceil(take / group.max_batch))
            left -= take
            if not left:
                break
    return out
