"""The demo's runs, each on a fabric of its own, measured the same way.

``shared``: one control plane, two workers, the three tenants' workflows submitted at
once; then a late tenant submits a copy of the first tenant's workflow, which the action
cache answers. ``alone``: one tenant's workflow on a fresh fabric with one cold worker
(priced like the shared run's cheaper worker), as a separate deployment would run it.
Figures come from ``ControlPlane.stats`` and the workflows' own timestamps.

A session never leaves anything running: each fabric is torn down when its run ends,
however it ends (done, failed, timed out, interrupted).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.live import Live

from flowmesh_core.control import NodeState, TenantStats, WorkflowStatus, create_tenant
from flowmesh_core.errors import FlowMeshError
from flowmesh_core.manifest import read_manifest
from flowmesh_core.settings import Settings
from flowmesh_worker.demo.fabric import Fabric, WorkerSpec, open_fabric
from flowmesh_worker.demo.progress import ProgressBoard
from flowmesh_worker.demo.results import (
    DemoOptions,
    LateArrival,
    RunResult,
    Sample,
    TenantRun,
    WorkerRun,
)
from flowmesh_worker.demo.warmup import Warmup
from flowmesh_worker.demo.workload import TenantPlan, workflow_for

__all__ = ["DemoInterrupted", "Session"]

POLL_S = 0.2
LATE_TENANT = "team-late"


class DemoInterrupted(Exception):
    """Ctrl-C (or SIGTERM) arrived; everything started has been stopped."""


@dataclass
class Session:
    """What every run shares: settings, the warm-up, the options and the screen."""

    settings: Settings
    warmup: Warmup
    options: DemoOptions
    console: Console
    interrupt: asyncio.Event | None = None

    async def shared(
        self, plans: list[TenantPlan], specs: list[WorkerSpec], blobs: Path
    ) -> tuple[RunResult, LateArrival | None, Sample | None]:
        """The three tenants at once on one fabric, then the late arrival."""
        teams = [p.name for p in plans]
        hardware = self.warmup.hardware
        async with open_fabric(self.settings, blobs, hardware, specs, teams) as fabric:
            title = f"Shared fabric: {len(plans)} tenants at once, {len(specs)} workers"
            board = ProgressBoard(title, plans)
            result = await self._run(fabric, plans, specs, board)
            if result.failed:
                return result, None, None
            late = await self._late_arrival(fabric, plans[0], result)
            return result, late, await _sample(fabric, result.tenants[0])

    async def alone(self, plan: TenantPlan, spec: WorkerSpec, blobs: Path) -> RunResult:
        """One tenant on a fabric of its own with one cold worker."""
        hardware = self.warmup.hardware
        async with open_fabric(self.settings, blobs, hardware, [spec], [plan.name]) as fabric:
            board = ProgressBoard(f"Alone: {plan.name}, its own fabric, one cold worker", [plan])
            return await self._run(fabric, [plan], [spec], board)

    async def _run(
        self,
        fabric: Fabric,
        plans: Sequence[TenantPlan],
        specs: Sequence[WorkerSpec],
        board: ProgressBoard,
    ) -> RunResult:
        """Submit every plan's workflow at once, follow them to the end, take the stats."""
        plane = fabric.plane
        try:
            with Live(board, console=self.console, refresh_per_second=8):
                cpu_started = time.process_time()
                submitted = await asyncio.gather(
                    *(plane.submit_workflow(fabric.tenants[p.name], workflow_for(p)) for p in plans)
                )
                ids = {p.name: s.workflow_id for p, s in zip(plans, submitted, strict=True)}
                final = await self._follow(fabric, ids, board)
                cpu_s = time.process_time() - cpu_started
        finally:
            self.console.line()
        assert fabric.admin is not None
        stats = await plane.stats(fabric.admin)
        per_tenant = {t.tenant: t for t in stats.tenants}
        tenants = [_tenant_run(p, final[p.name], per_tenant) for p in plans]
        workers = [
            WorkerRun(spec, worker.batches_done, worker.items_done)
            for spec, worker in zip(specs, fabric.worker_objects, strict=True)
        ]
        started = min(s.created_at for s in final.values())
        ended = max(s.finished_at or time.time() for s in final.values())
        return RunResult(tenants, stats, workers, ended - started, cpu_s)

    async def _late_arrival(
        self, fabric: Fabric, plan: TenantPlan, result: RunResult
    ) -> LateArrival:
        """A new tenant submits ``plan``'s exact workflow after everything finished."""
        tenant, _ = await create_tenant(fabric.plane.store, LATE_TENANT)
        fabric.tenants[LATE_TENANT] = tenant
        submitted = await fabric.plane.submit_workflow(tenant, workflow_for(plan))
        board = ProgressBoard(f"Later: {LATE_TENANT} submits {plan.name}'s workflow", [])
        final = await self._follow(fabric, {LATE_TENANT: submitted.workflow_id}, board)
        assert fabric.admin is not None
        stats = await fabric.plane.stats(fabric.admin)
        own = {t.tenant: t for t in stats.tenants}
        run = _tenant_run(plan, final[LATE_TENANT], own, name=LATE_TENANT)
        executed = stats.executed - result.stats.executed
        return LateArrival(LATE_TENANT, plan.name, run, executed)

    async def _follow(
        self, fabric: Fabric, ids: dict[str, str], board: ProgressBoard
    ) -> dict[str, WorkflowStatus]:
        """Poll each workflow until it is done or failed, feeding the board."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.options.timeout_s
        final: dict[str, WorkflowStatus] = {}
        while True:
            fabric.check_running()
            for team, wf_id in ids.items():
                if team not in final:
                    tenant = fabric.tenants[team]
                    status = await fabric.plane.status(tenant, wf_id, with_lineage=False)
                    board.update(team, status)
                    if status.state in (NodeState.DONE, NodeState.FAILED):
                        final[team] = status
            if len(final) == len(ids):
                return final
            if loop.time() > deadline:
                waiting = ", ".join(sorted(set(ids) - set(final)))
                raise FlowMeshError(
                    f"the demo's workflows did not finish within {self.options.timeout_s:.0f}s "
                    f"({waiting} still running); run with -v to see what the workers are doing"
                )
            await self._pause()

    async def _pause(self) -> None:
        """Wait one poll interval; raise DemoInterrupted as soon as a signal arrives."""
        if self.interrupt is None:
            await asyncio.sleep(POLL_S)
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.interrupt.wait(), POLL_S)
        if self.interrupt.is_set():
            raise DemoInterrupted


def _tenant_run(
    plan: TenantPlan,
    status: WorkflowStatus,
    stats: dict[str, TenantStats],
    *,
    name: str | None = None,
) -> TenantRun:
    name = name or plan.name
    error = next((f"node {n.node!r}: {n.error}" for n in status.nodes if n.error), None)
    latency = (status.finished_at or time.time()) - status.created_at
    own = stats.get(name, TenantStats(tenant=name))
    digests = {n.node: n.result_digest for n in status.nodes if n.result_digest}
    return TenantRun(plan, status.state, latency, own, digests, error)


async def _sample(fabric: Fabric, run: TenantRun) -> Sample:
    """The tenant's best generation and its embedding, read back (verified): small results
    from Redis, where they are kept inline, the rest from the CAS."""
    results = fabric.plane.results
    best = json.loads(await results.read(run.digests["top"]))[0]
    manifest = read_manifest(await results.read(run.digests["embed"]))
    vector = json.loads(await results.read(manifest[0]))
    norm = math.sqrt(math.fsum(x * x for x in vector))
    return Sample(run.plan.name, best["prompt"], best["completion"], len(vector), norm)
