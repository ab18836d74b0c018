"""The scheduler loop: hold the lease, read the ready pool and the fleet, assign batches.

Each round reads, in one round trip (``Store.round_view``), every batch-signature group
waiting in the ready pool, every worker, and each tenant's recent usage (worker-seconds
that halve every ``fairness_half_life_s``). Then, over the live workers with free slots,
it asks the policy (``utility.choose`` by default) for the best (batch, worker, size),
claims that batch atomically onto the worker's stream, updates its local view, and asks
again, until no worker has a free slot or no batch has positive utility. Between rounds it
sleeps until nudged (new work or a freed slot) or a short timeout.

Only the holder of the scheduler lease assigns: every claim carries its fencing token,
and Redis refuses a claim from a token that no longer holds the lease. The leader also
re-plans the work of workers whose heartbeat lapsed (``reclaim``). A standby retries the
lease when the holder's would lapse (at least every ``lease_ttl_s / 3``), so a leader that
dies is replaced within ``lease_ttl_s`` of its last renewal (docs/architecture.md).

The scheduler keeps nothing that Redis does not have, except the observations its
replica's completion applier made since the last sync. Every replica, leader or not,
merges those into the throughput model in Redis every few seconds (a read-modify-write
that replays them onto the stored model, so no replica's learning overwrites another's)
and adopts the merged model; a replica that takes the lease syncs first, so it never
schedules on a model older than the one its predecessor saved.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections import Counter
from typing import Any

from flowmesh_core.control.planning import RoundPlan, member_tenant
from flowmesh_core.control.policies import POLICIES, Policy
from flowmesh_core.control.reclaim import Exhausted, reclaim_dead_workers
from flowmesh_core.control.throughput import Observation, ThroughputModel
from flowmesh_core.control.utility import BatchCandidate, UtilityWeights, WorkerView
from flowmesh_core.errors import (
    ConfigError,
    ConflictError,
    InvalidInputError,
    ServiceUnavailableError,
)
from flowmesh_core.models import ModelRef
from flowmesh_core.settings import Settings
from flowmesh_core.store import Store
from flowmesh_core.store.fleet import SignatureInputs, WorkerRecord

__all__ = ["Scheduler", "holders", "model_id"]

log = logging.getLogger("flowmesh.scheduler")

_SYNC_EVERY_S = 5.0
_HEAD = 256  # members read per signature until a worker takes more (WorkerProfile.max_batch)
_MAX_PENDING = 10_000  # observations kept for the next sync while Redis is away
_LAPSE_SLACK_S = 0.01  # a standby retries this long after the holder's lease would lapse


class Scheduler:
    """Assigns batches from the ready pool to workers, one decision at a time."""

    def __init__(
        self, store: Store, settings: Settings, exhausted: Exhausted | None = None
    ) -> None:
        try:
            self.policy: Policy = POLICIES[settings.scheduler_policy]
        except KeyError:
            raise ConfigError(
                f"scheduler_policy {settings.scheduler_policy!r} is not one of "
                f"{', '.join(sorted(POLICIES))}"
            ) from None
        try:
            self.weights = UtilityWeights(**settings.utility_weights)
        except TypeError as exc:
            raise ConfigError(f"utility_weights: {exc}") from exc
        self.store = store
        self.settings = settings
        self.exhausted = exhausted or _drop
        self.throughput = ThroughputModel(default_load_s=self.weights.default_load_s)
        self.fence: str | None = None
        self._pending: list[Observation] = []
        self._synced_at = 0.0
        self._reclaimed_at = 0.0
        self._head = settings.scheduler_max_batch or _HEAD

    # -- learning ----------------------------------------------------------------------

    def observe(
        self,
        accelerator: str,
        kind: str,
        model: str | None,
        size: int,
        exec_s: float,
        load_s: float,
    ) -> None:
        """Learn from one applied batch (the completion applier calls this)."""
        observation = Observation(accelerator, kind, model, size, exec_s, load_s)
        self.throughput.learn(observation)
        self._pending.append(observation)
        del self._pending[:-_MAX_PENDING]

    async def sync_model(self) -> None:
        """Merge this replica's new observations into the model in Redis, and adopt it.

        The stored model with the observations replayed onto it is written back only
        if another writer has not changed it since it was read (``Store.update_json``);
        otherwise the merge runs again on the newer model. Observations that arrive
        during the sync stay pending for the next one.
        """
        synced, self._pending = self._pending, []
        merged: list[ThroughputModel] = []

        def merge(stored: str | None) -> str | None:
            merged[:] = [self._replayed(stored, synced)]
            return json.dumps(merged[0].to_dict()) if synced else None

        try:
            await self.store.update_json(self.store.keys.throughput(), merge)
        except (ServiceUnavailableError, ConflictError):
            self._pending[:0] = synced
            del self._pending[:-_MAX_PENDING]
            raise
        model = merged[0]
        for observation in self._pending:
            model.learn(observation)
        self.throughput = model
        self._synced_at = time.monotonic()

    def _replayed(self, stored: str | None, observations: list[Observation]) -> ThroughputModel:
        model = ThroughputModel(default_load_s=self.weights.default_load_s)
        if stored:
            try:
                model = ThroughputModel.from_dict(json.loads(stored))
            except (ValueError, InvalidInputError) as exc:
                log.warning("stored throughput model unreadable (%s); starting afresh", exc)
        for observation in observations:
            model.learn(observation)
        return model

    # -- the loop ----------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Schedule until ``stop`` is set; waits for the lease while another holds it.

        Redis being down (at start or later) pauses the loop; it resumes when Redis is back.
        On the way out it syncs what it learned last and gives the lease up.
        """
        leading = False
        try:
            while not stop.is_set():
                try:
                    if self.fence is None:
                        self.fence = await self.store.new_fence()
                    leading = await self._step(leading)
                except ServiceUnavailableError as exc:
                    log.warning("scheduler paused: %s", exc)
                    await asyncio.sleep(1.0)
        finally:
            if self._pending:
                with contextlib.suppress(ServiceUnavailableError, ConflictError):
                    await self.sync_model()
            if leading and self.fence is not None:
                with contextlib.suppress(ServiceUnavailableError):
                    await self.store.release_lease(self.fence)

    async def _step(self, leading: bool) -> bool:
        assert self.fence is not None
        lapses_in = await self.store.contend_lease(self.fence, self.settings.lease_ttl_s)
        holds = lapses_in is None
        if holds != leading:
            log.info("scheduler lease %s", "acquired" if holds else "lost")
        acquired = holds and not leading
        if acquired or time.monotonic() - self._synced_at > _SYNC_EVERY_S:
            await self._sync_or_carry_on()
        if lapses_in is not None:
            # retry as the holder's lease lapses: a dead leader is replaced within the
            # TTL of its last renewal, not up to a polling period later
            await asyncio.sleep(min(self.settings.lease_ttl_s / 3, lapses_in + _LAPSE_SLACK_S))
            return False
        if time.monotonic() - self._reclaimed_at > self.settings.worker_ttl_s / 3:
            await reclaim_dead_workers(
                self.store, self.settings.worker_ttl_s, self.settings.max_attempts, self.exhausted
            )
            self._reclaimed_at = time.monotonic()
        assigned = await self.round()
        if assigned == 0:
            await self.store.wait_wake(min(0.5, self.settings.lease_ttl_s / 3))
        return True

    async def _sync_or_carry_on(self) -> None:
        """``sync_model``, where losing the race to other writers only postpones it."""
        try:
            await self.sync_model()
        except ConflictError as exc:
            log.warning("throughput model not synced this time: %s", exc)
            self._synced_at = time.monotonic()

    async def round(self) -> int:
        """Assign batches until no worker is free or nothing is worth running; items assigned."""
        assert self.fence is not None
        now, half_life = time.time(), self.settings.fairness_half_life_s
        view = await self.store.round_view(self._head, now, half_life)
        workers = self._free_workers(view.workers, now)
        if not workers:
            return 0
        head = max(w.max_batch for w in workers)
        if head > self._head:  # a worker takes more than any before: read that many, once
            self._head = head
            view = await self.store.round_view(head, now, half_life)
        pool = [(sig, n, ms[:head]) for sig, n, ms in view.pool]
        held = holders(view.workers)
        plan = RoundPlan(
            {
                sig: _candidate(
                    sig,
                    n,
                    ms,
                    view.meaning,
                    now,
                    view.tree_bytes.get(sig, 0),
                    held,
                    view.inputs.get(sig),
                )
                for sig, n, ms in pool
            },
            {sig: [m for m, _ in ms] for sig, _, ms in pool},
            workers,
            policy=self.policy,
            throughput=self.throughput,
            weights=self.weights,
            usage=view.usage,
        )
        assigned = 0
        while (decision := plan.next()) is not None:
            terms = {"policy": self.settings.scheduler_policy, **plan.terms(decision)}
            got = await self.store.claim_batch(
                decision.signature,
                decision.size,
                decision.worker_id,
                uuid.uuid4().hex,
                self.fence,
                terms,
            )
            if got < 0:
                log.warning("scheduler fenced out: another replica holds the lease")
                return assigned
            assigned += got
            plan.account(decision, got)
        return assigned

    def _free_workers(self, records: list[WorkerRecord], now: float) -> list[WorkerView]:
        """The workers a batch may go to now: alive, not draining, with a free slot."""
        cap = self.settings.scheduler_max_batch or 1 << 30
        views = []
        for record in records:
            p = record.profile
            free = p.slots - record.inflight
            alive = now - record.heartbeat < self.settings.worker_ttl_s
            if free > 0 and alive and not record.draining:
                views.append(
                    WorkerView(
                        worker_id=p.worker_id,
                        accelerator=p.accelerator,
                        price_per_hour=p.price_per_hour,
                        watts=p.watts,
                        free_slots=free,
                        max_batch=min(p.max_batch, cap),
                        warm_models=frozenset(record.warm),
                        bandwidth_bytes_s=p.bandwidth_bytes_s,
                    )
                )
        return views


def holders(records: list[WorkerRecord]) -> dict[str, list[str]]:
    """Checkpoint or input-blob digest -> the workers that report it on their disk
    (``held``)."""
    held: dict[str, list[str]] = {}
    for record in records:
        for digest in record.held:
            held.setdefault(digest, []).append(record.profile.worker_id)
    return held


def _candidate(
    signature: str,
    count: int,
    members: list[tuple[str, float]],
    meaning: dict[str, dict[str, Any]],
    now: float,
    tree_bytes: int = 0,
    held: dict[str, list[str]] | None = None,
    inputs: SignatureInputs | None = None,
) -> BatchCandidate:
    """The candidate of one ready-pool group. A group whose model is a checkpoint of
    ``tree_bytes`` bytes moves them once per batch; its items move the mean bytes of
    the input blobs they read (``inputs``). A worker's local fraction is the share of
    those bytes (the checkpoint's, and the listed input blobs') it reports on disk
    (``held``); docs/architecture.md, "Data locality"."""
    meta = meaning.get(signature, {})
    oldest = members[0][1] if members else now
    model = model_id(meta.get("model"))
    held = held or {}
    local: dict[str, float] = {}
    if tree_bytes:
        local.update(dict.fromkeys(held.get(model or "", []), float(tree_bytes)))
    total = float(tree_bytes)
    per_item = 0.0
    if inputs is not None:
        per_item = inputs.nbytes / inputs.items
        total += inputs.nbytes
        for digest, nbytes in inputs.blobs.items():
            for worker_id in held.get(digest, []):
                local[worker_id] = local.get(worker_id, 0.0) + nbytes
    return BatchCandidate(
        signature=signature,
        kind=str(meta.get("kind", "?")),
        model=model,
        ready=count,
        oldest_wait_s=max(now - oldest, 0.0),
        tenant_items=Counter(member_tenant(m) for m, _ in members),
        item_weight=float(meta.get("weight", 1.0)),
        batch_input_bytes=float(tree_bytes),
        input_bytes_per_item=per_item,
        local_fraction={w: min(1.0, b / total) for w, b in local.items() if b > 0},
    )


async def _drop(domain: str, op_key: str, error: str) -> None:
    log.error(
        "item %s in %s exhausted its attempts (%s); nothing to fail it with", op_key, domain, error
    )


def model_id(model: object) -> str | None:
    """The ``ModelRef.key`` of a stored model reference (None for model-less kinds)."""
    return ModelRef.model_validate(model).key if model else None
