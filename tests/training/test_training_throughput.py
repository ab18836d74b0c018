"""The throughput model learns a training kind per unit of work (docs/training.md), on
every backend: the completion applier divides a run's seconds by its examples x epochs,
so the scheduler expects a run twice as long to take twice as long on that accelerator."""

from __future__ import annotations

import time

import pytest

from flowmesh_core.control.completions import CompletionApplier
from flowmesh_core.control.throughput import Observation, ThroughputModel
from flowmesh_core.control.utility import BatchCandidate, UtilityWeights, WorkerView, score
from flowmesh_core.hashing import digest_bytes
from flowmesh_core.keys import expand
from flowmesh_core.models import Operator, WorkerProfile
from flowmesh_core.protocol import Completion, ItemResult
from flowmesh_core.registry import Registry
from flowmesh_core.store import Store
from tests.contract.test_store_scheduling import DOMAIN, lease, requester

pytestmark = pytest.mark.timeout(30)

ROWS = [{"prompt": f"q{i}", "completion": "a"} for i in range(8)]
EPOCHS = 3
RUN_S = 50.0  # the run's wall time, of which LOAD_S loading the base
LOAD_S = 2.0


async def test_a_training_run_teaches_seconds_per_example(store: Store) -> None:
    op = Operator(
        kind="train.sft",
        model="flowmesh/tiny-gpt",
        params={"epochs": EPOCHS, "seed": 1},
        inputs={"dataset": ROWS},
    )
    (item,) = expand(op, Registry.default(), max_inline_bytes=1 << 20).items
    await store.join_many(DOMAIN, [(requester(0), item)])
    profile = WorkerProfile(
        worker_id="w1", accelerator="L4", memory_bytes=0, price_per_hour=0.8, watts=72
    )
    await store.register_worker(profile)
    assert await store.claim_batch(item.signature, 1, "w1", "b1", await lease(store)) == 1

    seen: list[Observation] = []
    applier = CompletionApplier(
        store, consumer="c", max_attempts=3, observe=lambda *o: seen.append(Observation(*o))
    )
    now = time.time()
    digest = digest_bytes(b"checkpoint tree")
    await applier.apply(
        Completion(
            batch_id="b1",
            worker_id="w1",
            signature=item.signature,
            started_at=now - RUN_S,
            finished_at=now,
            load_seconds=LOAD_S,
            results=[ItemResult(domain=DOMAIN, op_key=item.op_key, digest=digest)],
        )
    )

    units = len(ROWS) * EPOCHS
    (observed,) = seen
    assert (observed.accelerator, observed.kind, observed.size) == ("L4", "train.sft", 1)
    assert observed.exec_s == pytest.approx((RUN_S - LOAD_S) / units)
    assert observed.load_s == LOAD_S
    # Learned like that, a run over twice the examples is expected to take twice as long.
    model = ThroughputModel()
    model.learn(observed)
    gpu = WorkerView("w1", "L4", 0.8, 72.0, 1, 1, frozenset({"flowmesh/tiny-gpt"}))

    def expected_s(weight: float) -> float:
        run = BatchCandidate("s", "train.sft", "flowmesh/tiny-gpt", 1, 0.0, {}, item_weight=weight)
        return score(run, gpu, 1, throughput=model, weights=UtilityWeights(), usage={}).seconds

    assert expected_s(units) == pytest.approx(RUN_S - LOAD_S)  # the base is warm
    assert expected_s(2 * units) == pytest.approx(2 * (RUN_S - LOAD_S))
