"""The discrete-event engine: FlowMesh's control plane over simulated workers.

What is simulated: time, workers (boot, batches, preemption, bills) and the store's
semantics (action cache, in-flight joins, the ready pool by batch signature, re-planning
a dead worker's batch after ``detect_s``, failing an item after ``max_attempts``). What
is not: the decisions. Each scheduling round builds the same ``BatchCandidate`` and
``WorkerView`` values the scheduler reads from Redis and hands them to the real
``flowmesh_core.control.planning.RoundPlan`` with a real policy from ``POLICIES`` (the
utility argmax for FlowMesh), a real ``ThroughputModel`` that learns from every simulated
batch as the completion applier teaches it, and the default ``UtilityWeights``. Each run
moves from stage to stage by asking the product's workflow rules
(``flowmesh_core.control.rules.next_actions``) about its nodes, as the engine does.

Feature switches change only what the scheduler is shown or allowed: dedup off salts every
key per workflow; batching off caps ``max_batch`` at 1; locality off hides warm models;
heterogeneity off shows every worker as one type at the fleet's mean price and power (and
the autoscaler buys one type).
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections import Counter, defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bench.sim.fleet import Autoscaler, Batch, SimWorker, Usage, Wave, backlog_seconds
from bench.sim.hardware import ACCELERATORS, Accelerator, Roofline, Work
from bench.sim.policies import policy_for
from bench.sim.variants import Dynamics, Variant
from bench.sim.workload import Stage, Submission, item_keys, training_key
from flowmesh_core.autoscale import PoolView, decide
from flowmesh_core.autoscale.wave import next_wave
from flowmesh_core.control.planning import RoundPlan
from flowmesh_core.control.rules import FailNode, NodeView, RecordResult, StartNode, next_actions
from flowmesh_core.control.throughput import ThroughputModel
from flowmesh_core.control.utility import BatchCandidate, UtilityWeights, WorkerView
from flowmesh_core.models import Workflow
from flowmesh_core.models.api import NodeState
from flowmesh_core.registry import Registry
from flowmesh_core.store.keys import KeySpace

__all__ = ["Engine", "Outcome"]

TICK_S = 0.5  # the scheduler's idle wake-up (Scheduler._step waits at most 0.5 s)
KINDS = Registry.default()


@dataclass(slots=True)
class Item:
    key: str
    signature: str
    tenant: str
    member: str
    enqueued: float
    units: int
    attempts: int = 0


@dataclass(slots=True)
class Run:
    sub: Submission
    wf: int
    stage: int = 0
    remaining: int = 0
    keys: list[str] = field(default_factory=list)
    finished: float | None = None
    failed: bool = False
    nodes: dict[str, NodeView] = field(default_factory=dict)


_DONE = "sha256:" + "0" * 64  # the simulator tracks keys, not digests


def as_workflow(stages: tuple[Stage, ...]) -> Workflow:
    """A template's chain of stages as the product's workflow: node ``s{i}`` reads ``s{i-1}``
    through the input its kind splits (or trains on), and asks for its stage's samples.

    The simulator advances each run by asking the product's ``next_actions`` about it, as
    the engine does for a stored workflow, and reads its next wave with the product's
    ``next_wave``, as the live observer does.
    """
    nodes: dict[str, Any] = {}
    for i, stage in enumerate(stages):
        spec = KINDS.get(stage.work.kind)
        source: Any = {"ref": f"s{i - 1}"} if i else ["prompts"]
        params = {spec.samples_param: stage.samples} if spec.samples_param else {}
        name = spec.batch_input or spec.weight_input or "records"
        nodes[f"s{i}"] = {"kind": stage.work.kind, "params": params, "inputs": {name: source}}
    return Workflow.model_validate({"nodes": nodes})


def stage_items(stages: tuple[Stage, ...], prompts: int) -> list[int]:
    """Each stage's items as the workflow graph says before dedup (``items_total`` of a
    started node): a batchable stage's upstream items times its samples, a training run 1."""
    out, items = [], prompts
    for stage in stages:
        if not stage.training:
            items *= stage.samples
        out.append(1 if stage.training else items)
    return out


@dataclass
class Outcome:
    """What one variant did on one scenario."""

    latencies: list[float]
    makespan_s: float
    usage: Usage
    requested: int = 0
    executed: int = 0
    cache_hits: int = 0
    joins: int = 0
    batches: int = 0
    preemptions: int = 0
    replanned: int = 0
    lost: int = 0
    workflows: int = 0
    unfinished: int = 0
    by_type: Counter[str] = field(default_factory=Counter)


class Engine:
    def __init__(self, subs: list[Submission], variant: Variant, dyn: Dynamics, seed: int):
        self.subs, self.variant, self.dyn = subs, variant, dyn
        self.rng = random.Random(seed)
        self.roof = Roofline()
        self.now = 0.0
        self._events: list[tuple[float, int, Callable[[Any], None], Any]] = []
        self._seq = itertools.count()
        self.done: set[str] = set()
        self.waiting: dict[str, list[Run]] = {}
        self.pool: dict[str, deque[Item]] = defaultdict(deque)
        self.stages: dict[str, Stage] = {}
        self.workers: dict[str, SimWorker] = {}
        self.free: dict[str, WorkerView] = {}
        self.booting: Counter[str] = Counter()
        self.tm = ThroughputModel(default_load_s=UtilityWeights().default_load_s)
        self.weights = UtilityWeights()
        self.policy = policy_for(variant.policy)
        self.tenant_usage: defaultdict[str, float] = defaultdict(float)
        self.out = Outcome([], 0.0, Usage())
        self.runs: list[Run] = []
        self.scalers = variant.autoscalers(
            dyn, {st.signature for s in subs for st in s.template.stages}
        )
        self._ids = itertools.count()
        self._dirty = False
        self._ticking = False
        self.works = sorted({st.work for s in subs for st in s.template.stages}, key=repr)
        self.workflows = {s.template.stages: as_workflow(s.template.stages) for s in subs}

    # -- the event loop --------------------------------------------------------------------

    def at(self, t: float, fn: Callable[[Any], None], arg: Any = None) -> None:
        heapq.heappush(self._events, (t, next(self._seq), fn, arg))

    def run(self, progress: Callable[[int], None] | None = None) -> Outcome:
        for sub in self.subs:
            self.at(sub.time, self._submit, sub)
        for pool, scaler in self.scalers.items():
            for name, count in self.dyn.initial.items():
                for _ in range(count):
                    self._request(name, pool, scaler.marketplace, boot=0.0)
            self.at(0.0, self._autoscale, pool)
        finished = 0
        while self._events and finished < len(self.subs):
            self.now, _, fn, arg = heapq.heappop(self._events)
            fn(arg)
            if self._dirty:
                self._round()
            done = self.out.workflows + self.out.unfinished
            if progress and done != finished:
                progress(done - finished)
            finished = done
        return self._close()

    def _close(self) -> Outcome:
        end = max((r.finished or self.now for r in self.runs), default=self.now)
        for w in self.workers.values():
            if w.alive:
                if w.batch is not None:
                    w.busy_s += max(0.0, end - w.batch.started)
                self.out.usage.bill(w, max(end, w.requested))
        self.out.makespan_s = end - (self.subs[0].time if self.subs else 0.0)
        self.out.unfinished += sum(1 for r in self.runs if r.finished is None and not r.failed)
        return self.out

    # -- workflows, dedup, the ready pool --------------------------------------------------

    def _submit(self, sub: Submission) -> None:
        run = Run(sub, next(self._ids))
        self.runs.append(run)
        salt = "" if self.variant.features.dedup else f"@{run.wf}"
        run.keys = [f"p{p}{salt}" for p in sub.prompts]
        self._follow_rules(run)

    def _follow_rules(self, run: Run) -> None:
        """Carry out what the product's workflow rules ask for this run, until nothing."""
        workflow = self.workflows[run.sub.template.stages]
        while actions := next_actions(workflow, run.nodes):
            for action in actions:
                if isinstance(action, StartNode):
                    self._start_stage(run, int(action.node[1:]), run.keys)
                elif isinstance(action, RecordResult):
                    run.nodes[action.node] = NodeView(True, NodeState.DONE, 0, None, _DONE)
                elif isinstance(action, FailNode):
                    run.nodes[action.node] = NodeView(True, NodeState.FAILED, 0, action.error)
                    return
        if all(v.state is NodeState.DONE for v in run.nodes.values()) and len(run.nodes) == len(
            workflow.nodes
        ):
            run.finished = self.now
            self.out.workflows += 1
            self.out.latencies.append(self.now - run.sub.time)

    def _start_stage(self, run: Run, index: int, upstream: list[str]) -> None:
        run.stage = index
        stage = run.sub.template.stages[index]
        sig = stage.signature
        if stage.training:
            keys, units = [training_key(stage, upstream)], len(run.sub.prompts)
            sig = f"{sig}#{keys[0].rsplit(':', 1)[1]}"  # a training run never shares a batch
        else:
            keys, units = item_keys(stage, upstream), 1
        self.stages[sig] = stage
        run.keys, run.remaining = keys, 0
        for key in keys:
            self._ask(key, sig, run, units)
        run.nodes[f"s{index}"] = NodeView(True, NodeState.PENDING, run.remaining)

    def _ask(self, key: str, sig: str, run: Run, units: int) -> None:
        self.out.requested += 1
        if key in self.done:
            self.out.cache_hits += 1
            return
        run.remaining += 1
        waiters = self.waiting.get(key)
        if waiters is not None:
            self.out.joins += 1
            waiters.append(run)
            return
        self.waiting[key] = [run]
        tenant = run.sub.tenant
        member = KeySpace.ready_member(tenant, "sim", key)
        self.pool[sig].append(Item(key, sig, tenant, member, self.now, units))
        self._nudge()

    def _advance(self, run: Run) -> None:
        """The run's current stage has every item: the rules take it from here."""
        run.nodes[f"s{run.stage}"] = NodeView(True, NodeState.PENDING, 0)
        self._follow_rules(run)

    def _complete(self, key: str) -> None:
        self.done.add(key)
        for run in self.waiting.pop(key, ()):
            run.remaining -= 1
            if run.remaining == 0 and not run.failed:
                self._advance(run)

    def _fail(self, item: Item) -> None:
        self.out.lost += 1
        for run in self.waiting.pop(item.key, ()):
            if not run.failed:
                run.failed = True
                self.out.unfinished += 1

    # -- scheduling rounds -----------------------------------------------------------------

    def _nudge(self) -> None:
        self._dirty = True
        if not self._ticking:
            self._ticking = True
            self.at(self.now + TICK_S, self._tick)

    def _tick(self, _: Any) -> None:
        self._ticking = False
        if any(self.pool.values()):
            self._nudge()

    def _round(self) -> None:
        self._dirty = False
        if not self.free:
            return
        for pool_name, sigs in self.variant.pools_of(self.pool).items():
            views = [v for wid, v in self.free.items() if self.workers[wid].pool == pool_name]
            if views and sigs:
                self._plan(sigs, views)

    def _plan(self, sigs: list[str], views: list[WorkerView]) -> None:
        head = max(v.max_batch for v in views)
        candidates, members = {}, {}
        for sig in sigs:
            queue = self.pool[sig]
            first = list(itertools.islice(queue, head))
            work = self.stages[sig].work
            members[sig] = [i.member for i in first]
            candidates[sig] = BatchCandidate(
                signature=sig,
                kind=work.kind,
                model=work.model,
                ready=len(queue),
                oldest_wait_s=self.now - queue[0].enqueued,
                tenant_items=Counter(i.tenant for i in first),
                item_weight=float(queue[0].units),  # a training run: its examples
            )
        plan = RoundPlan(
            candidates,
            members,
            views,
            policy=self.policy,
            throughput=self.tm,
            weights=self.weights,
            usage=self.tenant_usage,
        )
        while (decision := plan.next()) is not None:
            plan.account(
                decision, self._start(decision.signature, decision.size, decision.worker_id)
            )

    def _start(self, sig: str, size: int, worker_id: str) -> int:
        queue = self.pool[sig]
        items = [queue.popleft() for _ in range(min(size, len(queue)))]
        if not queue:
            del self.pool[sig]
        if not items:
            return 0
        w = self.workers[worker_id]
        work = self.stages[sig].work
        load = 0.0 if work.model in w.warm else self.roof.load_seconds(w.acc, work.model)
        exec_s = self.roof.batch_seconds(w.acc, work, sum(i.units for i in items))
        for item in items:
            item.attempts += 1
        w.warm_up(work.model)
        w.batch = Batch(next(self._ids), sig, items, self.now, load, exec_s)
        del self.free[worker_id]
        self.at(self.now + load + exec_s, self._finish, (worker_id, w.batch.batch_id))
        self.out.batches += 1
        self.out.executed += len(items)
        self.out.by_type[w.acc.name] += len(items)
        return len(items)

    def _finish(self, arg: tuple[str, int]) -> None:
        w = self.workers[arg[0]]
        batch = w.batch
        if not w.alive or batch is None or batch.batch_id != arg[1]:
            return  # preempted meanwhile: its items were re-planned
        w.batch = None
        seconds = batch.load_s + batch.exec_s
        w.busy_s += seconds
        w.idle_since = self.now
        work = self.stages[batch.signature].work
        label = self.variant.label(w.acc.name)
        # per unit of work, as the control plane learns it (a training run: per example)
        per_unit = batch.exec_s * len(batch.items) / sum(i.units for i in batch.items)
        self.tm.observe(label, work.kind, work.model, len(batch.items), per_unit)
        if batch.load_s > 0:
            self.tm.observe_load(label, work.model, batch.load_s)
        for item in batch.items:
            self.tenant_usage[item.tenant] += seconds / len(batch.items)
        self._set_free(w)
        for item in batch.items:
            self._complete(item.key)

    def _set_free(self, w: SimWorker) -> None:
        self.free[w.worker_id] = self.variant.view(w)
        self._dirty = True

    # -- the fleet -------------------------------------------------------------------------

    def _request(self, type_name: str, pool: str, marketplace: bool, boot: float) -> None:
        acc = ACCELERATORS[type_name]
        wid = f"{type_name}-{next(self._ids)}"
        price = acc.market_hr if marketplace else acc.on_demand_hr
        batch = self.variant.max_batch(acc, self.works)
        w = SimWorker(wid, acc, price, marketplace, batch, self.now, self.now + boot, pool)
        self.workers[wid] = w
        self.booting[pool] += 1
        self.at(self.now + boot, self._booted, wid)

    def _booted(self, wid: str) -> None:
        w = self.workers[wid]
        self.booting[w.pool] -= 1
        if not w.alive:
            return
        w.idle_since = self.now
        self._set_free(w)
        alive = sum(1 for x in self.workers.values() if x.alive)
        self.out.usage.peak_workers = max(self.out.usage.peak_workers, alive)
        if w.marketplace and self.dyn.preempt_per_hour > 0:
            self.at(
                self.now + self.rng.expovariate(self.dyn.preempt_per_hour / 3600),
                self._preempt,
                wid,
            )

    def _remove(self, w: SimWorker) -> None:
        w.gone_at = self.now
        self.free.pop(w.worker_id, None)
        if w.batch is not None:
            w.busy_s += self.now - w.batch.started
        self.out.usage.bill(w, self.now)

    def _preempt(self, wid: str) -> None:
        w = self.workers[wid]
        if not w.alive:
            return
        self.out.preemptions += 1
        batch = w.batch
        self._remove(w)
        if batch is not None:
            self.out.replanned += len(batch.items)
            self.at(self.now + self.dyn.detect_s, self._replan, batch.items)

    def _replan(self, items: list[Item]) -> None:
        for item in reversed(items):
            if item.attempts >= self.dyn.max_attempts:
                self._fail(item)
            else:
                self.pool[item.signature].appendleft(item)
        self._nudge()

    def _autoscale(self, pool: str) -> None:
        scaler: Autoscaler = self.scalers[pool]
        self.at(self.now + scaler.interval_s, self._autoscale, pool)
        if not self.dyn.autoscale:
            return
        alive = [w for w in self.workers.values() if w.alive and w.pool == pool]
        counts = Counter(w.acc.name for w in alive)
        sigs = self.variant.pools_of(self.pool).get(pool, [])
        # Buy for the largest waiting group alone. Pricing the whole backlog instead bought
        # H100s for short prefill-heavy spells, which the utility (fastest free worker
        # first) then kept just busy enough never to be retired: paper-fixed on
        # marketplace prices cost $8.60 that way against $6.73 this way (bench/RESULTS.md).
        sig = max(sigs, key=lambda s: len(self.pool[s]), default=None)
        largest = (self.stages[sig].work, len(self.pool[sig])) if sig else (self.works[0], 1)
        choice = scaler.pick_type(self.roof, [largest], self.works, counts)
        acc = ACCELERATORS[choice or scaler.default_type]  # None: every type is at its cap
        expired = [
            w for w in alive if w.worker_id in self.free and self.now - w.idle_since > scaler.idle_s
        ]
        wave = self._next_wave(pool, scaler, counts) if scaler.ahead else None
        # the product's decision (flowmesh_core.autoscale): which idle workers go, and how
        # many to buy for the backlog and, ahead of time, for the next wave
        view = self._view(acc, sigs, alive, expired, self.booting[pool], wave, scaler.ahead)
        decision = decide(scaler.spec(acc), view, scaler.drain_s)
        for w in expired[: decision.remove]:
            self._remove(w)
        # the backlog's workers of the type priced for it, the next wave's of its own type
        wanted = [choice] * (decision.add - decision.ahead) if choice else []
        wanted += [wave.type_name] * decision.ahead if wave else []
        for name in wanted:
            if counts[name] >= scaler.per_type_max:
                continue
            counts[name] += 1
            self._request(name, pool, scaler.marketplace, ACCELERATORS[name].boot_s)

    def _view(
        self,
        acc: Accelerator,
        sigs: list[str],
        alive: list[SimWorker],
        expired: list[SimWorker],
        booting: int,
        wave: Wave | None,
        known: bool,
    ) -> PoolView:
        """The pool as the product's observer would see it, priced on ``acc``; ``known``:
        the next wave was computed (``wave`` is None when nothing is coming)."""
        backlog = [(self.stages[sig].work, sum(i.units for i in self.pool[sig])) for sig in sigs]
        seconds = sum(backlog_seconds(self.roof, acc, w, ready, self.works) for w, ready in backlog)
        cap = Roofline.max_batch(acc, self.works)
        return PoolView(
            replicas=len(alive) - booting,
            booting=booting,
            idle=sum(1 for w in alive if w.worker_id in self.free),
            idle_expired=len(expired),
            backlog_s=seconds,
            batches=sum(-(-len(self.pool[sig]) // cap) for sig in sigs),
            load_s=max((self.roof.load_seconds(acc, w.model) for w, _ in backlog), default=0.0),
            ahead_s=wave.seconds if wave else 0.0,
            ahead_batches=wave.batches if wave else 0,
            ahead_known=known,
        )

    def _next_wave(self, pool: str, scaler: Autoscaler, counts: Counter[str]) -> Wave | None:
        """The largest wave (one, two... stages ahead) of the runs in flight, found by the
        product's ``next_wave`` from their workflows' graphs, node states and started
        nodes' items (what the live observer reads from the store), priced on the type
        it would buy for it."""
        waves: dict[int, dict[Work, list[int]]] = {}
        for run in self.runs:
            if run.finished is not None or run.failed:
                continue
            stages = run.sub.template.stages
            states = {f"s{i}": NodeState.WAITING.value for i in range(len(stages))}
            states.update({name: view.state for name, view in run.nodes.items()})
            totals = stage_items(stages, len(run.sub.prompts))
            items = {name: totals[int(name[1:])] for name in run.nodes}
            for coming in next_wave(self.workflows[stages], states, items, KINDS):
                stage = stages[int(coming.node[1:])]
                if self.variant.pool_of(stage.signature) != pool:
                    continue
                group = waves.setdefault(coming.depth, {}).setdefault(stage.work, [0, 0])
                group[0] += int(coming.weight) if coming.alone else coming.items
                group[1] += 1 if coming.alone else 0
        priced = (scaler.price_wave(self.roof, g, self.works, counts) for g in waves.values())
        found = [w for w in priced if w is not None]
        return max(found, key=lambda w: w.workers(scaler.drain_s), default=None)
