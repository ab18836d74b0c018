"""The demo's runs, each on a fabric of its own processes, measured the same way.

``shared``: one control plane, two workers, the three tenants' workflows submitted at
once; then a late tenant submits a copy of the first tenant's workflow, which the action
cache answers. ``alone``: one tenant's workflow on its own fabric with one cold worker
(priced like the shared run's cheaper worker), as a separate deployment would run it.
Figures come from the control plane's ``/v1/stats`` (admin), the workflows' own
timestamps and lineage, and each worker process's CPU time as the operating system
counts it.

A session never leaves anything running: the fabrics are stopped when the demo ends,
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

from rich.console import Console
from rich.live import Live

from flowmesh_core.client import AsyncClient
from flowmesh_core.control import TenantStats, WorkflowStatus
from flowmesh_core.errors import FlowMeshError
from flowmesh_core.manifest import read_manifest
from flowmesh_worker.demo.fabric import Fabric
from flowmesh_worker.demo.progress import ProgressBoard
from flowmesh_worker.demo.results import (
    DemoOptions,
    LateArrival,
    RunResult,
    Sample,
    TenantRun,
    WorkerRun,
)
from flowmesh_worker.demo.workload import TenantPlan, workflow_for

__all__ = ["LATE_TENANT", "DemoInterrupted", "Session"]

POLL_S = 0.2
LATE_TENANT = "team-late"


class DemoInterrupted(Exception):
    """Ctrl-C (or SIGTERM) arrived; everything started has been stopped."""


@dataclass
class Session:
    """What every run shares: the options and the screen."""

    options: DemoOptions
    console: Console
    interrupt: asyncio.Event | None = None

    async def shared(
        self, fabric: Fabric, plans: list[TenantPlan]
    ) -> tuple[RunResult, LateArrival | None, Sample | None]:
        """The three tenants at once on one fabric, then the late arrival."""
        title = f"Shared fabric: {len(plans)} tenants at once, {len(fabric.workers)} workers"
        result = await self._run(fabric, plans, ProgressBoard(title, plans))
        if result.failed:
            return result, None, None
        late = await self._late_arrival(fabric, plans[0], result)
        return result, late, await _sample(fabric.clients[plans[0].name], result.tenants[0])

    async def alone(self, fabric: Fabric, plan: TenantPlan) -> RunResult:
        """One tenant on a fabric of its own with one cold worker."""
        board = ProgressBoard(f"Alone: {plan.name}, its own fabric, one cold worker", [plan])
        return await self._run(fabric, [plan], board)

    async def _run(
        self, fabric: Fabric, plans: Sequence[TenantPlan], board: ProgressBoard
    ) -> RunResult:
        """Submit every plan's workflow at once, follow them to the end, take the stats."""
        workers = fabric.workers
        plane = fabric.children[0]
        try:
            with Live(board, console=self.console, refresh_per_second=8):
                cpu_before = [w.cpu_seconds() for w in workers]
                plane_before = plane.cpu_seconds()
                submitted = await asyncio.gather(
                    *(fabric.clients[p.name].submit_workflow(workflow_for(p)) for p in plans)
                )
                ids = {p.name: s.workflow_id for p, s in zip(plans, submitted, strict=True)}
                final = await self._follow(fabric, ids, board)
                cpu = [w.cpu_seconds() - b for w, b in zip(workers, cpu_before, strict=True)]
                plane_cpu = plane.cpu_seconds() - plane_before
        finally:
            self.console.line()
        assert fabric.admin is not None
        stats = await fabric.admin.stats()
        per_tenant = {t.tenant: t for t in stats.tenants}
        tenants = [_tenant_run(p, final[p.name], per_tenant) for p in plans]
        done = await _work_by_worker(fabric, ids)
        runs = [
            WorkerRun(spec, *done.get(spec.worker_id, (0, 0)), cpu_s=c, pid=w.pid)
            for spec, w, c in zip(fabric.plan.workers, workers, cpu, strict=True)
        ]
        started = min(s.created_at for s in final.values())
        ended = max(s.finished_at or time.time() for s in final.values())
        return RunResult(tenants, stats, runs, ended - started, sum(cpu), plane_cpu)

    async def _late_arrival(
        self, fabric: Fabric, plan: TenantPlan, result: RunResult
    ) -> LateArrival:
        """A new tenant submits ``plan``'s exact workflow after everything finished."""
        client = fabric.clients[LATE_TENANT]
        submitted = await client.submit_workflow(workflow_for(plan))
        board = ProgressBoard(f"Later: {LATE_TENANT} submits {plan.name}'s workflow", [])
        final = await self._follow(fabric, {LATE_TENANT: submitted.workflow_id}, board)
        assert fabric.admin is not None
        stats = await fabric.admin.stats()
        own = {t.tenant: t for t in stats.tenants}
        run = _tenant_run(plan, final[LATE_TENANT], own, name=LATE_TENANT)
        executed = stats.executed - result.stats.executed
        return LateArrival(LATE_TENANT, plan.name, run, executed)

    async def _follow(
        self, fabric: Fabric, ids: dict[str, str], board: ProgressBoard
    ) -> dict[str, WorkflowStatus]:
        """Poll each workflow until it is final (done, failed, cancelled), feeding the board."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.options.timeout_s
        final: dict[str, WorkflowStatus] = {}
        while True:
            fabric.check_running()
            for team, wf_id in ids.items():
                if team not in final:
                    status = await fabric.clients[team].status(wf_id, lineage=False)
                    board.update(team, status)
                    if status.state.final:
                        final[team] = status
            if len(final) == len(ids):
                return final
            if loop.time() > deadline:
                waiting = ", ".join(sorted(set(ids) - set(final)))
                raise FlowMeshError(
                    f"the demo's workflows did not finish within {self.options.timeout_s:.0f}s "
                    f"({waiting} still running); the processes' logs are in "
                    f"{fabric.children[0].log.parent}"
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


async def _work_by_worker(fabric: Fabric, ids: dict[str, str]) -> dict[str, tuple[int, int]]:
    """(batches, items) each worker executed for these workflows, from their lineage."""
    batches: dict[str, set[str]] = {}
    items: dict[str, int] = {}
    for team, wf_id in ids.items():
        for record in await fabric.clients[team].lineage(wf_id):
            if record.satisfied_by.value == "executed" and record.worker and record.batch_id:
                batches.setdefault(record.worker, set()).add(record.batch_id)
                items[record.worker] = items.get(record.worker, 0) + 1
    return {w: (len(b), items[w]) for w, b in batches.items()}


async def _sample(client: AsyncClient, run: TenantRun) -> Sample:
    """The tenant's best generation and its embedding, read back through the API (which
    verifies each result against its digest)."""
    best = json.loads(await client.result(run.digests["top"]))[0]
    manifest = read_manifest(await client.result(run.digests["embed"]))
    vector = json.loads(await client.result(manifest[0]))
    norm = math.sqrt(math.fsum(x * x for x in vector))
    return Sample(run.plan.name, best["prompt"], best["completion"], len(vector), norm)
