"""The load: C clients in a closed loop, each submitting a workflow and waiting for it.

Each client has its own ``httpx.AsyncClient`` (one keep-alive connection) to one API
replica (round-robin) with one tenant's token (round-robin too). It takes a ticket from
the shared ``Budget`` (none after the duration, or after the count bound), POSTs the
workflow, then long-polls ``/wait`` until the workflow is done or failed, and records an
``Outcome`` with its monotonic timestamps. A rejected POST (any status but 200/201, or a
transport error) is counted and not retried; a wait that errs is asked again until the
drain deadline, after which the workflow counts as lost.

This module must never count a workflow as finished on anything but a ``done`` state
from the server, nor retry a POST (a retried submission could create a second workflow).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

from bench.loadrun.options import BenchError
from bench.loadrun.workload import Workload

__all__ = ["STATS", "Budget", "Outcome", "Tally", "Target", "read_stats", "run_clients"]

_WAIT_S = 30.0  # one long poll; the server caps it at 300
_SUBMIT_TIMEOUT_S = 60.0
_AFTER_REJECTION_S = 1.0  # a client whose POST failed pauses, so a dead server is not spun on


@dataclass
class Outcome:
    """One submission: what happened to it, and when (time.monotonic seconds)."""

    client: int
    sent_at: float
    answered_at: float
    state: str  # accepted workflows: done, failed or lost; else rejected
    workflow_id: str | None = None
    finished_at: float | None = None
    server_s: float | None = None  # created_at -> finished_at, the control plane's clock
    created: int = 0  # the first node's items, by how the submit plan satisfies them
    cache_hits: int = 0
    joined: int = 0
    error: str | None = None


@dataclass
class Budget:
    """Tickets to submit: none after ``stop_at`` or once ``limit`` were handed out."""

    stop_at: float
    limit: int | None
    issued: int = 0

    def take(self) -> bool:
        spent = self.limit is not None and self.issued >= self.limit
        if spent or time.monotonic() >= self.stop_at:
            return False
        self.issued += 1
        return True


@dataclass
class Tally:
    """Running counts for the progress line, and every outcome."""

    outcomes: list[Outcome] = field(default_factory=list)
    submitted: int = 0
    in_flight: int = 0
    wait_errors: int = 0

    def count(self, state: str) -> int:
        return sum(1 for o in self.outcomes if o.state == state)


@dataclass(frozen=True)
class Target:
    """Where one client sends its requests."""

    url: str
    token: str


async def _submit(
    http: httpx.AsyncClient, document: dict[str, object], client: int, tally: Tally
) -> Outcome:
    sent = time.monotonic()
    tally.submitted += 1
    try:
        response = await http.post("/v1/workflows", json=document, timeout=_SUBMIT_TIMEOUT_S)
    except httpx.HTTPError as exc:
        return Outcome(client, sent, time.monotonic(), "rejected", error=_describe(exc))
    answered = time.monotonic()
    if response.status_code not in (200, 201):
        error = f"HTTP {response.status_code}: {response.text[:200]}"
        return Outcome(client, sent, answered, "rejected", error=error)
    body = response.json()
    first = body["nodes"][0]
    return Outcome(
        client, sent, answered, "lost", workflow_id=body["workflow_id"],
        created=first["created"], cache_hits=first["cache_hits"], joined=first["joined"],
    )  # fmt: skip


async def _wait(http: httpx.AsyncClient, outcome: Outcome, give_up_at: float, tally: Tally) -> None:
    """Long-poll until done or failed (the outcome says which), or lost at ``give_up_at``."""
    path = f"/v1/workflows/{outcome.workflow_id}/wait"
    while (left := give_up_at - time.monotonic()) > 0:
        try:
            response = await http.get(
                path, params={"timeout": f"{min(left, _WAIT_S):.1f}"}, timeout=_WAIT_S + 30
            )
            response.raise_for_status()
        except httpx.HTTPError as exc:
            tally.wait_errors += 1
            outcome.error = _describe(exc)
            await asyncio.sleep(min(1.0, max(left, 0.0)))
            continue
        status = response.json()
        if status["state"] in ("done", "failed", "cancelled"):
            outcome.finished_at = time.monotonic()
            outcome.state = status["state"]
            if status.get("finished_at") is not None:
                outcome.server_s = status["finished_at"] - status["created_at"]
            if status["state"] == "failed":
                errors = [n["error"] for n in status["nodes"] if n.get("error")]
                outcome.error = "; ".join(errors)[:300] or "failed"
            return


STATS = ("requested", "executed", "cache_hits", "joins", "batches", "worker_seconds")
"""The cluster-wide totals of ``GET /v1/stats`` the report differences."""


async def read_stats(target: Target) -> dict[str, float]:
    """The fabric's cluster-wide counters now (``GET /v1/stats``)."""
    headers = {"Authorization": f"Bearer {target.token}"}
    try:
        async with httpx.AsyncClient(base_url=target.url, headers=headers, timeout=30) as http:
            response = await http.get("/v1/stats")
            response.raise_for_status()
            body = response.json()
    except httpx.HTTPError as exc:
        raise BenchError(f"cannot read {target.url}/v1/stats: {_describe(exc)}") from exc
    return {name: float(body[name]) for name in STATS}


def _describe(exc: httpx.HTTPError) -> str:
    return f"{type(exc).__name__}: {exc}"[:300] or type(exc).__name__


async def _client(
    index: int,
    target: Target,
    workload: Workload,
    budget: Budget,
    give_up_at: float,
    tally: Tally,
) -> None:
    headers = {"Authorization": f"Bearer {target.token}"}
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    async with httpx.AsyncClient(base_url=target.url, headers=headers, limits=limits) as http:
        number = 0
        while budget.take():
            outcome = await _submit(http, workload.document(index, number), index, tally)
            number += 1
            tally.outcomes.append(outcome)
            if outcome.workflow_id is None:
                await asyncio.sleep(_AFTER_REJECTION_S)
                continue
            tally.in_flight += 1
            try:
                await _wait(http, outcome, give_up_at, tally)
            finally:
                tally.in_flight -= 1


async def _report_progress(
    tally: Tally, every_s: float, started: float, say: Callable[[str], None]
) -> None:
    last_done, last_at = 0, started
    while True:
        await asyncio.sleep(every_s)
        now = time.monotonic()
        done = tally.count("done")
        rate = (done - last_done) / (now - last_at)
        say(
            f"{now - started:6.1f} s  submitted {tally.submitted:>6}  done {done:>6}  failed "
            f"{tally.count('failed'):>3}  rejected {tally.count('rejected'):>3}  in flight "
            f"{tally.in_flight:>4}  {rate:7.1f} workflows/s"
        )
        last_done, last_at = done, now


async def run_clients(
    targets: list[Target],
    workload: Workload,
    budget: Budget,
    drain_s: float,
    progress_s: float,
    say: Callable[[str], None],
) -> Tally:
    """Run one client per target until the budget is spent and every wait has ended.

    ``budget.stop_at`` is when submitting stops; a workflow still unfinished
    ``drain_s`` after it is lost.
    """
    tally = Tally()
    give_up_at = budget.stop_at + drain_s
    started = time.monotonic()
    progress = asyncio.create_task(_report_progress(tally, progress_s, started, say))
    try:
        clients = [
            _client(i, target, workload, budget, give_up_at, tally)
            for i, target in enumerate(targets)
        ]
        await asyncio.gather(*clients)
    finally:
        progress.cancel()
    return tally
