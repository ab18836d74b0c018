"""Worker pools: named classes of worker the autoscaler may grow and shrink.

A pool is declared in settings (``[flowmesh.pools.NAME]`` in the config file) and a worker
joins one with ``flowmesh worker --pool NAME``. This module only describes pools; what to
do with them is decided in ``flowmesh_core.autoscale.decide`` (docs/autoscaling.md).
"""

from __future__ import annotations

import re
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["Market", "PoolSpec", "check_pool_name"]

_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$")


class Market(StrEnum):
    """How a pool's machines are bought."""

    ON_DEMAND = "on-demand"
    PREEMPTIBLE = "preemptible"


def check_pool_name(name: str) -> str:
    """``name`` if it is a valid pool name (a DNS label of at most 32 characters: it names
    a Kubernetes Deployment), else ``ValueError`` saying what to fix."""
    if not _NAME.match(name):
        raise ValueError(
            f"pool name {name!r} must be 1-32 lowercase letters, digits or '-', "
            "starting and ending with a letter or digit"
        )
    return name


class PoolSpec(BaseModel):
    """One pool: what its workers run on, what they cost and how far it may scale."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    accelerator: str = Field(default="cpu", description="e.g. cpu, L4, A100, H100")
    usd_per_hour: float = Field(default=0.0, ge=0.0, description="$ per replica-hour")
    watts: float = Field(default=0.0, ge=0.0, description="board power of one replica")
    boot_s: float = Field(default=60.0, ge=0.0, description="seconds from request to ready")
    min_replicas: int = Field(default=0, ge=0, description="0 lets the pool scale to zero")
    max_replicas: int = Field(default=10, ge=0)
    market: Market = Market.ON_DEMAND

    @model_validator(mode="after")
    def _bounds(self) -> PoolSpec:
        if self.min_replicas > self.max_replicas:
            raise ValueError(
                f"min_replicas ({self.min_replicas}) exceeds max_replicas ({self.max_replicas})"
            )
        return self

    @property
    def gpu(self) -> bool:
        """Whether the pool's workers need an accelerator other than a CPU."""
        return self.accelerator.lower() != "cpu"
