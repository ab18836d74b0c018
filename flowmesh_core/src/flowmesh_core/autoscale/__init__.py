"""Worker pools and the autoscaler's pure decision (docs/autoscaling.md)."""

from flowmesh_core.autoscale.decide import Decision, PoolView, decide, recommend
from flowmesh_core.autoscale.pools import Market, PoolSpec, check_pool_name

__all__ = ["Decision", "Market", "PoolSpec", "PoolView", "check_pool_name", "decide", "recommend"]
