"""Scheduler benchmark: how fast the control plane assigns work, and what one operator costs.

Runs against a real Redis under a fresh random key prefix, purged at the end. Two parts:

1. Scheduling throughput. W worker profiles are registered, N ``embed`` items are submitted
   as workflows from several tenants (two models and two params, so four batch
   signatures), then the real ``Scheduler.run`` loop assigns them until the ready pool is
   empty. Submission and assignment are timed apart; the end-to-end rate spans the first
   submission to the last assignment. Methods are wrapped from the outside (nothing in
   ``flowmesh_core`` is edited) to show where the time goes, and Redis' own
   ``INFO commandstats`` / ``INFO cpu`` say how much of it the server spent.
2. Overhead of one operator: a control plane (``ControlPlane.run``) and one worker that
   does no work run in this process; sequential one-item operators (distinct inputs, so
   no cache hit) are timed from submit to ``wait`` returning done to the result read back
   from the blob store. The same over HTTP when ``flowmesh_core.api`` exists.

Nothing here asserts a time: it prints figures and writes them to a CSV.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import datetime
import inspect
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from flowmesh_core.blobs import BlobStore
from flowmesh_core.control import ControlPlane, NodeState, Tenant, create_tenant
from flowmesh_core.control.planning import RoundPlan
from flowmesh_core.hashing import canonical_json
from flowmesh_core.manifest import read_manifest
from flowmesh_core.models import Operator, WorkerProfile, Workflow
from flowmesh_core.protocol import Assignment, Completion, ItemResult
from flowmesh_core.settings import Settings
from flowmesh_core.store import Store
from flowmesh_core.store.fleet import ASSIGNMENT_GROUP

RESULTS = Path(__file__).resolve().parent / "results" / "scheduler.csv"
MODELS = ("all-MiniLM-L6-v2", "bge-small-en-v1.5")
FLEET = (  # accelerator, $/hour, watts, max_batch: a mixed fleet, so choose() has work to do
    ("H100", 4.0, 700.0, 256),
    ("A100", 2.5, 400.0, 256),
    ("L4", 0.8, 72.0, 128),
    ("cpu", 0.1, 100.0, 64),
)
WORKFLOW_ITEMS = 1_000  # items per submitted workflow (two nodes of 500)
TARGET_RATE = 20_000.0
RAY_RATE, DASK_RATE = 8_000.0, 4_000.0
TARGET_P50_MS = 5.0

FIGURES = """\
figures:
  submission rate       items/s through ControlPlane.submit_workflow (validate, expand to
                        items, create workflow, join_many into the ready pool), scheduler idle
  assignment rate       items/s through the scheduler (Scheduler.run: lease, fleet and pool
                        reads, utility choose, claim_batch Lua) until the pool is empty;
                        target >= 20,000/s (Ray single client ~8,000/s, Dask ~4,000/s)
  end-to-end rate       items / (last assignment - first submission)
  breakdown rows        time inside each wrapped call (perf_counter) as a share of its
                        phase, Lua time from Redis INFO commandstats, CPU of this process
                        and of redis-server
  operator overhead     submit -> wait() done -> result read from the blob store, one
                        no-op item per operator, sequential, p50/p90/p99 in ms; target
                        p50 < 5 ms. Stages come from the item's lineage timestamps.
  http overhead         the same through flowmesh_core.api over httpx.ASGITransport and a
                        loopback uvicorn server (skipped with a note if there is no API)
"""


# -- timing from the outside ---------------------------------------------------------------


class Timers:
    """Named accumulators of perf_counter intervals; ``wrap`` instruments a bound method."""

    def __init__(self) -> None:
        self.total: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)

    def add(self, name: str, seconds: float) -> None:
        self.total[name] += seconds
        self.calls[name] += 1

    @contextmanager
    def time(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.add(name, time.perf_counter() - start)

    def wrap(self, owner: object, attr: str, name: str | None = None) -> None:
        """Replace ``owner.attr`` (on the instance) with a timed version of itself.

        A name the object no longer has is skipped: the benchmark follows the code, it
        does not pin its private method names.
        """
        fn = getattr(owner, attr, None)
        if fn is None:
            return
        label = name or attr
        if inspect.iscoroutinefunction(fn):

            async def timed_async(*args: Any, **kwargs: Any) -> Any:
                with self.time(label):
                    return await fn(*args, **kwargs)

            setattr(owner, attr, timed_async)
        else:

            def timed(*args: Any, **kwargs: Any) -> Any:
                with self.time(label):
                    return fn(*args, **kwargs)

            setattr(owner, attr, timed)

    def wrap_scripts(self, store: Store) -> None:
        """Time ``run_script`` per script name (``script:claim_batch``...)."""
        run = store.run_script

        async def timed(script: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
            with self.time(f"script:{script}"):
                return await run(script, keys, args)

        store.run_script = timed  # type: ignore[method-assign]


class TimedPolicy:
    """A policy that times the policy it stands for."""

    def __init__(self, inner: Any, timers: Timers) -> None:
        self.inner = inner
        self.name = inner.name
        self.timers = timers

    def choose(self, *args: Any, **kwargs: Any) -> Any:
        with self.timers.time("policy.choose"):
            return self.inner.choose(*args, **kwargs)


@dataclass
class ServerStats:
    """Redis' own view of one phase: per-command calls and µs, and its CPU seconds."""

    usec: dict[str, float] = field(default_factory=dict)
    calls: dict[str, float] = field(default_factory=dict)
    cpu_s: float = 0.0

    @classmethod
    async def read(cls, store: Store) -> ServerStats:
        commands: dict[str, Any] = await store.redis.info("commandstats")
        cpu: dict[str, Any] = await store.redis.info("cpu")
        stats = cls(cpu_s=float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"]))
        for name, values in commands.items():
            command = name.removeprefix("cmdstat_")
            stats.usec[command] = float(values["usec"])
            stats.calls[command] = float(values["calls"])
        return stats

    def minus(self, before: ServerStats) -> ServerStats:
        return ServerStats(
            {k: v - before.usec.get(k, 0.0) for k, v in self.usec.items()},
            {k: v - before.calls.get(k, 0.0) for k, v in self.calls.items()},
            self.cpu_s - before.cpu_s,
        )


@dataclass
class Phase:
    """One timed phase: wall and CPU seconds, its timers and the server's share."""

    name: str
    items: int
    wall_s: float
    cpu_s: float
    timers: Timers
    server: ServerStats

    @property
    def rate(self) -> float:
        return self.items / self.wall_s if self.wall_s > 0 else 0.0


async def measured(
    name: str, items: int, store: Store, timers: Timers, body: Callable[[], Awaitable[float]]
) -> Phase:
    """Run ``body`` (which returns its own end time) and collect what it cost."""
    before = await ServerStats.read(store)
    cpu, start = time.process_time(), time.perf_counter()
    end = await body()
    cpu = time.process_time() - cpu
    server = (await ServerStats.read(store)).minus(before)
    return Phase(name, items, end - start, cpu, timers, server)


# -- part 1: scheduling throughput ---------------------------------------------------------


@dataclass
class Throughput:
    submit: Phase
    assign: Phase
    end_to_end_s: float
    items: int
    batches: int
    workers: int
    stalled: str | None = None


def workflows(run: str, tenants: int, items: int) -> list[tuple[int, Workflow]]:
    """The submissions: (tenant index, workflow), every text distinct across the run."""
    out = []
    for t in range(tenants):
        mine = items // tenants + (1 if t < items % tenants else 0)
        for w, start in enumerate(range(0, mine, WORKFLOW_ITEMS)):
            size = min(WORKFLOW_ITEMS, mine - start)
            halves = {"a": (size + 1) // 2, "b": size // 2}
            nodes = {
                name: {
                    "kind": "embed",
                    "model": MODELS[(t + (name == "b")) % 2],
                    "params": {"normalize": name == "a"},
                    "inputs": {"texts": [f"{run} t{t} w{w} {name} {i}" for i in range(n)]},
                }
                for name, n in halves.items()
                if n
            }
            out.append((t, Workflow.model_validate({"name": f"bench-{w}", "nodes": nodes})))
    return out


async def register_fleet(store: Store, count: int, items: int) -> None:
    """Enough slots that the whole pool fits at once (a worker takes one batch per slot)."""
    capacity = sum(FLEET[i % len(FLEET)][3] for i in range(count))
    slots = max(1, -(-items // capacity))
    profiles = [
        WorkerProfile(
            worker_id=_worker_id(i),
            accelerator=acc,
            memory_bytes=80 << 30,
            price_per_hour=price,
            watts=watts,
            slots=slots,
            max_batch=batch,
        )
        for i, (acc, price, watts, batch) in ((i, FLEET[i % len(FLEET)]) for i in range(count))
    ]
    for start in range(0, count, 50):
        await asyncio.gather(*(store.register_worker(p) for p in profiles[start : start + 50]))
    await heartbeat_fleet(store, count)


def _worker_id(i: int) -> str:
    return f"w{i:05d}"


async def heartbeat_fleet(store: Store, count: int) -> None:
    """Fresh heartbeats; each worker holds one of the two models warm."""
    for start in range(0, count, 200):
        await asyncio.gather(
            *(
                store.heartbeat(_worker_id(i), warm=[MODELS[(i // len(FLEET)) % len(MODELS)]])
                for i in range(start, min(start + 200, count))
            )
        )


async def throughput(
    args: argparse.Namespace, prefix: str, blob_root: Path, progress: Progress
) -> Throughput:
    settings = _settings(args, prefix, blob_root)
    plane = ControlPlane(settings)
    store = plane.store
    try:
        await store.check_capabilities()
        tenants = [(await create_tenant(store, f"tenant-{t:02d}"))[0] for t in range(args.tenants)]
        await register_fleet(store, args.workers, args.items)
        submissions = workflows(uuid.uuid4().hex[:8], args.tenants, args.items)
        submit_timers, assign_timers = Timers(), Timers()
        _instrument_submit(plane, submit_timers)
        created = 0

        async def submit_all() -> float:
            nonlocal created
            task = progress.add_task("submitting", total=args.items)
            for t, workflow in submissions:
                result = await plane.submit_workflow(tenants[t], workflow)
                created += sum(node.created for node in result.nodes)
                progress.advance(task, sum(node.items for node in result.nodes))
            return time.perf_counter()

        first_submit = time.perf_counter()
        submit = await measured("submission", args.items, store, submit_timers, submit_all)
        await heartbeat_fleet(store, args.workers)  # the submission may outlast a TTL
        outcome: dict[str, Any] = {}
        assign = await measured(
            "assignment",
            created,
            store,
            assign_timers,
            lambda: _schedule(plane, created, assign_timers, progress, outcome),
        )
        stats = await store.cluster_stats()
        batches = await _count_batches(store, args.workers)
        left = await type(store).ready_summary(store, 1)  # not through the timed wrapper
        stalled = outcome.get("stalled")
        if int(stats.get("claimed", 0)) != created or left:
            stalled = stalled or f"claimed {int(stats.get('claimed', 0))} of {created}"
        return Throughput(
            submit,
            assign,
            outcome.get("done", time.perf_counter()) - first_submit,
            created,
            batches,
            args.workers,
            stalled,
        )
    finally:
        await purge(store)
        await plane.aclose()


def _instrument_submit(plane: ControlPlane, timers: Timers) -> None:
    engine, store = plane.engine, plane.store
    timers.wrap(plane, "submit_workflow", "submit (total)")
    timers.wrap(engine, "_validate", "validate + expand (thread)")
    timers.wrap(store, "run_scripts", "ledger: submit + start root nodes (one round trip)")
    timers.wrap(store, "start_call", "ledger: start-node arguments")


async def _schedule(
    plane: ControlPlane,
    expected: int,
    timers: Timers,
    progress: Progress,
    outcome: dict[str, Any],
) -> float:
    """Run ``Scheduler.run`` until ``expected`` items are assigned; the time of the last."""
    scheduler, store = plane.scheduler, plane.store
    for attr in ("round", "_free_workers"):
        timers.wrap(scheduler, attr, f"scheduler.{attr}")
    # the round's bookkeeping after each claim (a new RoundPlan per round: wrap the class)
    timers.wrap(RoundPlan, "account", "plan.account")
    for attr in ("hold_lease", "round_view", "claim_batch", "wait_wake"):
        timers.wrap(store, attr, f"store.{attr}")
    timers.wrap_scripts(store)
    scheduler.policy = TimedPolicy(scheduler.policy, timers)
    stop = asyncio.Event()
    task = progress.add_task("scheduling", total=expected)
    assigned = 0
    last_progress = time.perf_counter()
    round_ = scheduler.round

    async def counting_round() -> int:
        nonlocal assigned, last_progress
        got = await round_()
        now = time.perf_counter()
        if got:
            assigned += got
            last_progress = now
            progress.update(task, completed=assigned)
        if assigned >= expected:
            outcome["done"] = now
            stop.set()
        elif now - last_progress > 10.0:
            outcome["stalled"] = f"no assignment for 10 s at {assigned} of {expected}"
            stop.set()
        return got

    scheduler.round = counting_round  # type: ignore[method-assign]
    if expected:
        await scheduler.run(stop)
    return float(outcome.get("done", time.perf_counter()))


async def _count_batches(store: Store, workers: int) -> int:
    async with store.redis.pipeline(transaction=False) as pipe:
        for i in range(workers):
            pipe.xlen(store.keys.assignments(_worker_id(i)))
        return sum(int(n) for n in await pipe.execute())


# -- part 2: overhead of one operator ------------------------------------------------------


class NoopWorker:
    """A worker that does no work: the real protocol, a constant-size result per item."""

    def __init__(self, store: Store, blobs: BlobStore, worker_id: str = "noop-1") -> None:
        self.store, self.blobs = store, blobs
        self.profile = WorkerProfile(
            worker_id=worker_id,
            accelerator="cpu",
            memory_bytes=1 << 30,
            price_per_hour=0.1,
            watts=100.0,
            slots=1,
            max_batch=64,
        )
        self.put_s: list[float] = []
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.store.register_worker(self.profile)
        await self.store.heartbeat(self.profile.worker_id, warm=[MODELS[0]])
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        """Stop between reads: cancelling a blocked XREADGROUP can leave it retrying."""
        self._stopping.set()
        if self._task is not None:
            await _finish(self._task, "the no-op worker")

    async def _loop(self) -> None:
        stream = self.store.keys.assignments(self.profile.worker_id)
        beat = 0.0
        while not self._stopping.is_set():
            if time.monotonic() - beat > 1.0:  # a timer, as a real worker's would be
                await self.store.heartbeat(self.profile.worker_id, warm=[MODELS[0]])
                beat = time.monotonic()
            reply: Any = await self.store.redis.xreadgroup(
                ASSIGNMENT_GROUP, self.profile.worker_id, {stream: ">"}, count=1, block=200
            )
            for entry_id, fields in reply[0][1] if reply else []:
                await self._run(Assignment.from_stream(fields))
                await self.store.redis.xack(stream, ASSIGNMENT_GROUP, entry_id)

    async def _run(self, assignment: Assignment) -> None:
        started = time.time()
        results = []
        for assigned in assignment.items:
            value = canonical_json({"op": assigned.op_key, "vector": [0.0] * 8})
            put = time.perf_counter()
            digest = self.blobs.put_bytes(value).digest
            self.put_s.append(time.perf_counter() - put)
            results.append(
                ItemResult(domain=assigned.domain, op_key=assigned.op_key, digest=digest)
            )
        report = Completion(
            batch_id=assignment.batch_id,
            worker_id=self.profile.worker_id,
            signature=assignment.signature,
            started_at=started,
            finished_at=time.time(),
            results=results,
        )
        fields: dict[Any, Any] = report.to_stream()
        await self.store.redis.xadd(self.store.keys.events(), fields)


@dataclass
class Overhead:
    label: str
    samples_ms: list[float]
    stages_ms: dict[str, list[float]] = field(default_factory=dict)
    round_trips: dict[str, int] = field(default_factory=dict)  # per command, all loops
    note: str | None = None


Submitter = Callable[[Operator], Awaitable[tuple[float, float]]]
"""Runs one operator end to end; returns (wall clock at submit, seconds to result)."""


class RoundTrips:
    """Counts the commands and pipelines a Redis client sends (one count per round trip)."""

    def __init__(self, store: Store) -> None:
        self.counts: dict[str, int] = defaultdict(int)
        client: Any = store.redis
        execute, pipeline = client.execute_command, client.pipeline

        async def counted(*args: Any, **kwargs: Any) -> Any:
            self.counts[str(args[0]).upper()] += 1
            return await execute(*args, **kwargs)

        def counted_pipeline(*args: Any, **kwargs: Any) -> Any:
            pipe = pipeline(*args, **kwargs)
            run = pipe.execute

            async def execute_pipe(*a: Any, **kw: Any) -> Any:
                self.counts["(pipeline)"] += 1
                return await run(*a, **kw)

            pipe.execute = execute_pipe
            return pipe

        client.execute_command = counted
        client.pipeline = counted_pipeline

    def snapshot(self) -> dict[str, int]:
        return dict(self.counts)

    def since(self, before: dict[str, int]) -> dict[str, int]:
        return {k: v - before.get(k, 0) for k, v in self.counts.items() if v > before.get(k, 0)}


@dataclass
class Probe:
    """What one overhead sample runs against: the plane, its worker and a tenant."""

    plane: ControlPlane
    worker: NoopWorker
    tenant: Tenant
    trips: RoundTrips
    run: str
    progress: Progress


async def overhead(
    args: argparse.Namespace, prefix: str, blob_root: Path, progress: Progress
) -> list[Overhead]:
    settings = _settings(args, prefix, blob_root)
    plane = ControlPlane(settings)
    store = plane.store
    stop = asyncio.Event()
    worker = NoopWorker(store, plane.blobs)
    runner: asyncio.Task[None] | None = None
    try:
        await store.check_capabilities()
        tenant, token = await create_tenant(store, "bench")
        await worker.start()
        runner = asyncio.create_task(plane.run(stop))
        probe = Probe(plane, worker, tenant, RoundTrips(store), uuid.uuid4().hex[:8], progress)
        direct = await _sample("in-process", args.ops, probe, _direct(plane, tenant))
        return [direct, *await _http(args.ops, probe, token)]
    finally:
        stop.set()
        if runner is not None:
            await _finish(runner, "the control plane's loops")
        await worker.stop()
        await purge(store)
        await plane.aclose()


def _direct(plane: ControlPlane, tenant: Tenant) -> Submitter:
    async def one(op: Operator) -> tuple[float, float]:
        wall, start = time.time(), time.perf_counter()
        submitted = await plane.submit_operator(tenant, op)
        status = await plane.wait(tenant, submitted.workflow_id, timeout_s=30.0)
        digest = status.nodes[0].result_digest
        if status.state is not NodeState.DONE or digest is None:
            raise RuntimeError(f"operator ended {status.state}: {status.nodes[0].error}")
        for item in read_manifest(await _read(plane, tenant, digest)):
            await _read(plane, tenant, item)
        return wall, time.perf_counter() - start

    return one


async def _read(plane: ControlPlane, tenant: Tenant, digest: str) -> bytes:
    _, chunks = await plane.open_result(tenant, digest)
    return b"".join(chunks)


async def _sample(label: str, ops: int, probe: Probe, submit: Submitter) -> Overhead:
    """``ops`` sequential operators after a short warm-up, with their lineage stages."""
    warmup = min(10, ops)
    task = probe.progress.add_task(f"overhead ({label})", total=warmup + ops)
    result = Overhead(label, [])
    stages: dict[str, list[float]] = defaultdict(list)
    baseline: dict[str, int] = {}
    not_ours: dict[str, int] = defaultdict(int)  # the stage reads below, after the clock
    puts = 0
    for i in range(warmup + ops):
        if i == warmup:
            baseline, puts = probe.trips.snapshot(), len(probe.worker.put_s)
        text = f"{probe.run} {label} {i}"
        op = Operator.model_validate(
            {"kind": "embed", "model": MODELS[0], "inputs": {"texts": [text]}}
        )
        wall, seconds = await submit(op)
        probe.progress.advance(task)
        if i >= warmup:
            result.samples_ms.append(seconds * 1000)
            before = probe.trips.snapshot()
            await _stages(probe.plane, probe.tenant, wall, seconds, stages)
            for name, n in probe.trips.since(before).items():
                not_ours[name] += n
    trips = probe.trips.since(baseline)
    result.round_trips = {k: v - not_ours[k] for k, v in trips.items() if v > not_ours[k]}
    stages["worker: blob put"] = [s * 1000 for s in probe.worker.put_s[puts:]]
    result.stages_ms = dict(stages)
    return result


async def _stages(
    plane: ControlPlane,
    tenant: Tenant,
    wall: float,
    seconds: float,
    out: dict[str, list[float]],
) -> None:
    """Split one operator's time by its lineage timestamps (wall clock, same host)."""
    ids = await plane.store.tenant_workflows(tenant.name)
    records = await plane.store.lineage(ids[-1])
    rec = records[0] if records else None
    if rec is None or rec.started_at is None or rec.finished_at is None:
        return
    out["submit -> in ready pool"].append((rec.requested_at - wall) * 1000)
    out["ready pool -> claimed"].append((rec.started_at - rec.requested_at) * 1000)
    out["claimed -> result recorded"].append((rec.finished_at - rec.started_at) * 1000)
    out["result recorded -> result read"].append((wall + seconds - rec.finished_at) * 1000)


async def _http(ops: int, probe: Probe, token: str) -> list[Overhead]:
    """The same over HTTP, if the API package exists; otherwise a note saying why not."""
    try:
        from flowmesh_core.api import create_app
    except ImportError as exc:
        note = f"skipped: flowmesh_core.api.create_app is not there yet ({exc})"
        return [Overhead("http (ASGI)", [], note=note)]
    import httpx
    import uvicorn

    # This plane's loops already run (ControlPlane.run above); the app must not start more.
    app = create_app(probe.plane, run_scheduler=False)
    headers = {"Authorization": f"Bearer {token}"}
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://asgi", headers=headers) as c:
        out = [await _sample("http (ASGI)", ops, probe, _over_http(c))]
    port = _free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    try:
        for _ in range(500):  # uvicorn exposes a flag, not an event
            if server.started:
                break
            await asyncio.sleep(0.01)
        url = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=url, headers=headers) as c:
            out.append(await _sample("http (uvicorn)", ops, probe, _over_http(c)))
    finally:
        server.should_exit = True
        await _finish(serving, "the uvicorn server")
    return out


def _over_http(client: Any) -> Submitter:
    """One operator through the API routes, as a client SDK would drive them."""
    json_body = {"Content-Type": "application/json"}

    async def get(path: str, **params: Any) -> Any:
        response = await client.get(path, params=params)
        response.raise_for_status()
        return response

    async def one(op: Operator) -> tuple[float, float]:
        wall, start = time.time(), time.perf_counter()
        sent = await client.post(
            "/v1/operators", content=op.model_dump_json(exclude_unset=True), headers=json_body
        )
        sent.raise_for_status()
        wf_id = sent.json()["workflow_id"]
        status = (await get(f"/v1/workflows/{wf_id}/wait", timeout=30)).json()
        if status["state"] != "done":
            raise RuntimeError(f"operator ended {status['state']}: {status['nodes'][0]}")
        manifest = await get(f"/v1/results/{status['nodes'][0]['result_digest']}")
        for item in read_manifest(manifest.content):
            await get(f"/v1/results/{item}")
        return wall, time.perf_counter() - start

    return one


async def _finish(task: asyncio.Task[Any], what: str, timeout_s: float = 15.0) -> None:
    """Wait for a task that was asked to stop; cancel it if it does not within the timeout."""
    done, _ = await asyncio.wait({task}, timeout=timeout_s)
    if not done:
        print(f"warning: {what} did not stop within {timeout_s:.0f} s; cancelled", file=sys.stderr)
        task.cancel()
        await asyncio.wait({task}, timeout=timeout_s)
    elif not task.cancelled() and (exc := task.exception()) is not None:
        raise exc


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- plumbing ------------------------------------------------------------------------------


def _settings(args: argparse.Namespace, prefix: str, blob_root: Path) -> Settings:
    return Settings(
        redis_url=args.redis_url,
        key_prefix=prefix,
        blob_url=f"file://{blob_root}",
        worker_ttl_s=600.0,
        lease_ttl_s=30.0,
    )


async def purge(store: Store) -> int:
    """Delete every key under the store's prefix, in batches (``Store.purge`` goes one by one)."""
    deleted, batch = 0, []
    async for key in store.redis.scan_iter(match=store.keys.pattern(), count=5000):
        batch.append(key)
        if len(batch) >= 2000:
            deleted += await store.redis.unlink(*batch)
            batch.clear()
    if batch:
        deleted += await store.redis.unlink(*batch)
    return int(deleted)


def _pct(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


# -- report --------------------------------------------------------------------------------

Row = tuple[str, str, float, str, str, str]  # section, figure, value, unit, target, note


def rows(tp: Throughput, overheads: list[Overhead], runs: Sequence[Throughput]) -> list[Row]:
    """Every figure; throughput from the median run, with the spread over ``runs``."""
    out: list[Row] = []
    ref = f">= {TARGET_RATE:,.0f}/s (Ray ~{RAY_RATE:,.0f}/s, Dask ~{DASK_RATE:,.0f}/s)"
    mean_batch = tp.items / tp.batches if tp.batches else 0.0

    def spread(rate: Callable[[Throughput], float], note: str) -> str:
        if len(runs) < 2:
            return note
        rates = sorted(rate(run) for run in runs)
        found = f"median of {len(runs)} runs, {rates[0]:,.0f}..{rates[-1]:,.0f}"
        return f"{found}; {note}" if note else found

    submit, assign, e2e = _submit_rate, _assign_rate, _e2e
    out += [
        (
            "throughput",
            "submission rate",
            submit(tp),
            "items/s",
            "",
            spread(submit, "scheduler idle"),
        ),
        (
            "throughput",
            "assignment rate",
            assign(tp),
            "items/s",
            ref,
            spread(assign, tp.stalled or ""),
        ),
        (
            "throughput",
            "end-to-end rate",
            e2e(tp),
            "items/s",
            ref,
            spread(e2e, "first submit -> last assign"),
        ),
        ("throughput", "mean batch size", mean_batch, "items", "", f"{tp.batches} batches"),
        _steady_state(tp, mean_batch, ref),
    ]
    for phase in (tp.submit, tp.assign):
        out.extend(_breakdown(phase))
    for o in overheads:
        out.extend(_overhead_rows(o))
    return out


def _submit_rate(run: Throughput) -> float:
    return run.submit.rate


def _assign_rate(run: Throughput) -> float:
    return run.assign.rate


def _e2e(run: Throughput) -> float:
    return run.items / run.end_to_end_s if run.end_to_end_s > 0 else 0.0


def _steady_state(tp: Throughput, mean_batch: float, ref: str) -> Row:
    """Derived: the rate if every round assigned one batch (a worker freed at a time)."""
    t, rounds = tp.assign.timers, max(tp.assign.timers.calls["scheduler.round"], 1)
    reads = ("store.hold_lease", "store.round_view", "scheduler._free_workers")
    fixed = sum(t.total[name] for name in reads) / rounds
    per_batch = sum(
        t.total[n] for n in ("store.claim_batch", "policy.choose", "plan.account")
    ) / max(tp.batches, 1)
    ceiling = mean_batch / (fixed + per_batch) if fixed + per_batch > 0 else 0.0
    note = (
        f"derived: {fixed * 1000:.1f} ms fixed per round (fleet of {tp.workers}, pool, "
        f"usage reads) + {per_batch * 1000:.1f} ms per batch"
    )
    return ("throughput", "one-batch-per-round ceiling", ceiling, "items/s", ref, note)


def _breakdown(phase: Phase) -> list[Row]:
    """Per wrapped call: share of the phase's wall time, and µs per item."""
    section = f"{phase.name} breakdown ({phase.items:,} items, {phase.wall_s:.2f} s wall)"
    items = max(phase.items, 1)
    out: list[Row] = []
    for name, total in sorted(phase.timers.total.items(), key=lambda kv: -kv[1]):
        calls = phase.timers.calls[name]
        if calls == 0:
            continue
        note = f"{total / items * 1e6:.2f} µs/item; {calls} calls x {total / calls * 1e3:.2f} ms"
        out.append((section, name, 100 * total / phase.wall_s, "% wall", "", note))
    usec = phase.server.usec
    lua = usec.get("evalsha", 0.0) + usec.get("eval", 0.0)
    inner = sorted(
        ((k, v) for k, v in usec.items() if k not in ("evalsha", "eval") and v > 0),
        key=lambda kv: -kv[1],
    )[:6]
    top = ", ".join(f"{k} {v / items:.1f}" for k, v in inner)
    server = phase.server.cpu_s
    out += [
        (section, "redis: Lua scripts (server time)", 100 * lua / 1e6 / phase.wall_s,
         "% wall", "", f"{lua / items:.2f} µs/item (INFO commandstats)"),
        (section, "redis: commands by server time", float("nan"), "", "",
         f"µs/item, inside Lua too: {top}"),
        (section, "redis-server CPU", 100 * server / phase.wall_s, "% wall", "",
         f"{server / items * 1e6:.2f} µs/item"),
        (section, "this process CPU", 100 * phase.cpu_s / phase.wall_s, "% wall", "",
         f"{phase.cpu_s / items * 1e6:.2f} µs/item"),
    ]  # fmt: skip
    return out


def _overhead_rows(o: Overhead) -> list[Row]:
    if o.note:
        return [("operator overhead", f"{o.label}", float("nan"), "ms", "", o.note)]
    n = len(o.samples_ms)
    out: list[Row] = []
    for q in (50, 90, 99):
        target = f"< {TARGET_P50_MS:g} ms" if q == 50 else ""
        out.append(("operator overhead", f"{o.label} p{q}", _pct(o.samples_ms, q), "ms", target,
                    f"{n} sequential operators"))  # fmt: skip
    out.append(("operator overhead", f"{o.label} min", min(o.samples_ms), "ms", "", "the floor"))
    blocking = {"XREADGROUP", "XREAD", "BLPOP"}
    total = sum(o.round_trips.values()) / n
    waits = sum(v for k, v in o.round_trips.items() if k in blocking) / n
    top = sorted(o.round_trips.items(), key=lambda kv: -kv[1])[:8]
    note = f"{waits:.1f} blocking reads; " + ", ".join(f"{k} {v / n:.1f}" for k, v in top)
    out.append(("operator overhead", f"{o.label} redis round trips/op", total, "", "", note))
    for stage, values in o.stages_ms.items():
        note = f"p90 {_pct(values, 90):.2f} ms"
        out.append(("overhead stages (p50)", f"{o.label}: {stage}", _pct(values, 50), "ms", "",
                    note))  # fmt: skip
    return out


def show(console: Console, header: dict[str, str], table_rows: list[Row]) -> None:
    console.print(", ".join(f"{k}: {v}" for k, v in header.items()))
    sections: dict[str, list[Row]] = defaultdict(list)
    for row in table_rows:
        sections[row[0]].append(row)
    for section, items in sections.items():
        table = Table(title=section, title_justify="left")
        table.add_column("figure")
        table.add_column("value", justify="right")
        table.add_column("unit")
        table.add_column("target / reference")
        table.add_column("note")
        for _, name, value, unit, target, note in items:
            table.add_row(name, _fmt(value), unit, target, note)
        console.print(table)


def _fmt(value: float) -> str:
    if value != value:  # NaN: not measured
        return "-"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.2f}"


def write_csv(path: Path, header: dict[str, str], table_rows: list[Row]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        for key, text in header.items():
            fh.write(f"# {key}: {text}\n")
        writer = csv.writer(fh)
        writer.writerow(["section", "figure", "value", "unit", "target", "note"])
        for section, name, value, unit, target, note in table_rows:
            writer.writerow([section, name, f"{value:.4f}", unit, target, note])


# -- main ----------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/scheduler.py",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        epilog=FIGURES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--items", type=int, help="items to schedule (default 100,000)")
    parser.add_argument("--workers", type=int, help="worker profiles (default 1,000)")
    parser.add_argument("--tenants", type=int, default=10, help="submitting tenants (10)")
    parser.add_argument("--ops", type=int, help="sequential operators for the overhead (200)")
    parser.add_argument(
        "--redis-url", default="redis://127.0.0.1:6379/0", help="a real Redis server (%(default)s)"
    )
    parser.add_argument(
        "--repeat", type=int, default=1, help="throughput runs; the median is shown (1)"
    )
    parser.add_argument(
        "--blob-dir",
        type=Path,
        help="parent of the scratch blob dir ($TMPDIR); /dev/shm takes fsync out of the overhead",
    )
    parser.add_argument("--csv", type=Path, default=RESULTS, help=f"results file ({RESULTS})")
    parser.add_argument(
        "--quick", action="store_true", help="smoke sizes: 5,000 items, 100 workers, 50 ops"
    )
    args = parser.parse_args(argv)
    quick = args.quick
    args.items = args.items or (5_000 if quick else 100_000)
    args.workers = args.workers or (100 if quick else 1_000)
    args.ops = args.ops or (50 if quick else 200)
    if min(args.items, args.workers, args.tenants, args.ops, args.repeat) < 1:
        parser.error("--items, --workers, --tenants, --ops and --repeat must be at least 1")
    if args.redis_url.startswith("memory:"):
        parser.error("--redis-url must name a real Redis server (redis://...)")
    return args


async def amain(args: argparse.Namespace, console: Console) -> int:
    base = f"fmbench-{uuid.uuid4().hex[:10]}"
    blob_root = Path(tempfile.mkdtemp(prefix="flowmesh-bench-", dir=args.blob_dir))
    probe = Store.open(args.redis_url, base)
    try:
        header = {
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "nproc": str(os.cpu_count()),
            "redis": await probe.server_version(),
            "python": sys.version.split()[0],
            "items": str(args.items),
            "workers": str(args.workers),
            "tenants": str(args.tenants),
            "ops": str(args.ops),
            "repeat": str(args.repeat),
            "blob dir": str(blob_root),
        }
    finally:
        await probe.aclose()
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    progress = Progress(
        *columns, TimeElapsedColumn(), console=console, disable=not console.is_terminal
    )
    try:
        with progress:
            runs = [
                await throughput(args, f"{base}-tp{i}", blob_root / f"tp{i}", progress)
                for i in range(args.repeat)
            ]
            overheads = await overhead(args, f"{base}-op", blob_root / "op", progress)
    finally:
        shutil.rmtree(blob_root, ignore_errors=True)
    tp = sorted(runs, key=lambda run: run.assign.rate)[len(runs) // 2]  # the median run
    table_rows = rows(tp, overheads, runs)
    show(console, header, table_rows)
    write_csv(args.csv, header, table_rows)
    console.print(f"wrote {args.csv}")
    for run in runs:
        if run.stalled:
            console.print(f"[red]scheduling stalled: {run.stalled}[/red]")
            return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    console = Console()
    if not console.is_terminal:  # a log or a pipe: wide enough that rows stay one line
        console = Console(width=170)
    return asyncio.run(amain(args, console))


if __name__ == "__main__":
    sys.exit(main())
