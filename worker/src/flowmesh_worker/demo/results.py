"""The demo's options and figures: plain values, filled by ``session``, drawn by ``report``.

Every figure is what the control plane measured (``/v1/stats``, workflow timestamps,
lineage) or what the operating system counted for a worker process (CPU time); $ and Wh
are the control plane's: each batch's busy seconds times its worker's declared $/h and W.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from flowmesh_core.control import NodeState, StatsReport, TenantStats
from flowmesh_worker.demo.fabric import WorkerSpec
from flowmesh_worker.demo.warmup import Warmup
from flowmesh_worker.demo.workload import TenantPlan

__all__ = [
    "DemoOptions",
    "DemoResult",
    "LateArrival",
    "RunResult",
    "Sample",
    "TenantRun",
    "WorkerRun",
]


@dataclass(frozen=True)
class DemoOptions:
    """What ``flowmesh demo`` lets a user choose."""

    per_tenant: int = 32
    isolated: bool = True
    keep_blobs: Path | None = None
    timeout_s: float = 300.0


@dataclass(frozen=True)
class TenantRun:
    """One tenant's workflow in one run: its outcome, latency and attributed stats."""

    plan: TenantPlan
    state: NodeState
    latency_s: float  # submitted -> workflow finished, as the control plane recorded them
    stats: TenantStats
    digests: dict[str, str]  # node -> result digest (a manifest for split nodes)
    error: str | None = None


@dataclass(frozen=True)
class WorkerRun:
    """What one worker process declared and did in one run, and the CPU time it used."""

    spec: WorkerSpec
    batches: int
    items: int
    cpu_s: float = 0.0
    pid: int = 0


@dataclass(frozen=True)
class RunResult:
    """A run's tenants, cluster-wide stats and workers; its wall time (first submission to
    last finish), the CPU time its worker processes used meanwhile (all of them), and
    its control plane's."""

    tenants: list[TenantRun]
    stats: StatsReport
    workers: list[WorkerRun]
    wall_s: float
    cpu_s: float
    plane_cpu_s: float = 0.0

    @property
    def failed(self) -> list[TenantRun]:
        return [t for t in self.tenants if t.state is not NodeState.DONE]


@dataclass(frozen=True)
class LateArrival:
    """A tenant that submits another tenant's exact workflow after the shared run."""

    tenant: str
    copy_of: str
    run: TenantRun
    executed: int  # items the cluster executed for it (0 when all came from the cache)


@dataclass(frozen=True)
class Sample:
    """One result read back (verified): a tenant's best generation and its embedding."""

    tenant: str
    prompt: str
    completion: str
    vector_dims: int
    vector_norm: float


@dataclass(frozen=True)
class DemoResult:
    """Everything the report shows."""

    options: DemoOptions
    warmup: Warmup
    shared: RunResult
    isolated: list[RunResult] = field(default_factory=list)
    late: LateArrival | None = None
    sample: Sample | None = None
    cpu_threads: int | None = None  # torch threads per worker on a CPU (None elsewhere)
    demo_pid: int = 0  # the demo's own process (the workers are others)
