"""The scheduler's utility function and policies (flowmesh_core.control.utility).

Each test names one promise of the utility (docs/architecture.md) and sets up two
options that differ in that one term, arranged so that the deterministic tie-break alone
would pick the other one: the term must decide. Property tests check ``choose`` against a
brute-force argmax over every free worker and every batch size.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Mapping, Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flowmesh_core.control.policies import (
    POLICIES,
    CheapestPolicy,
    FastestPolicy,
    FifoPolicy,
    UtilityPolicy,
)
from flowmesh_core.control.throughput import ThroughputModel
from flowmesh_core.control.utility import (
    BatchCandidate,
    Decision,
    UtilityWeights,
    WorkerView,
    choose,
    fairness,
    score,
    size_ladder,
)
from flowmesh_core.errors import ConfigError, InvalidInputError

M = "m@1"
DEFAULT = UtilityWeights()
# Value against $ only: no aging, energy, latency or fairness terms.
DOLLARS = UtilityWeights(
    value_per_item=1e-3,
    wait_weight=0.0,
    cost_weight=1.0,
    energy_weight=0.0,
    time_weight=0.0,
    fairness_weight=0.0,
)


def tp_default() -> ThroughputModel:
    """cpu embeds 100 items/s at batch 1, gpu 1,000; gain n**0.7 up to 32; 20 ms per batch."""
    return ThroughputModel(
        seeds={("cpu", "embed"): 100.0, ("gpu", "embed"): 1000.0},
        gain_cap=32,
        gain_exp=0.7,
        batch_overhead_s=0.02,
        default_load_s=30.0,
    )


def cand(
    signature: str = "s",
    *,
    model: str | None = M,
    ready: int = 8,
    wait: float = 0.0,
    tenants: Mapping[str, int] | None = None,
    input_bytes: float = 0.0,
    local: Mapping[str, float] | None = None,
    kind: str = "embed",
    batch_bytes: float = 0.0,
) -> BatchCandidate:
    return BatchCandidate(
        signature=signature,
        kind=kind,
        model=model,
        ready=ready,
        oldest_wait_s=wait,
        tenant_items=tenants or {},
        input_bytes_per_item=input_bytes,
        local_fraction=local or {},
        batch_input_bytes=batch_bytes,
    )


def worker(
    worker_id: str = "w",
    *,
    acc: str = "cpu",
    price: float = 1.0,
    watts: float = 100.0,
    free: int = 1,
    max_batch: int = 64,
    warm: Sequence[str] = (M,),
    bandwidth: float = 1e9,
) -> WorkerView:
    return WorkerView(worker_id, acc, price, watts, free, max_batch, frozenset(warm), bandwidth)


def pick(
    candidates: Sequence[BatchCandidate],
    workers: Sequence[WorkerView],
    *,
    tp: ThroughputModel | None = None,
    weights: UtilityWeights = DEFAULT,
    usage: Mapping[str, float] | None = None,
) -> Decision | None:
    return choose(
        candidates,
        workers,
        throughput=tp or tp_default(),
        weights=weights,
        usage=usage or {},
    )


def brute_force(
    candidates: Sequence[BatchCandidate],
    workers: Sequence[WorkerView],
    *,
    tp: ThroughputModel,
    weights: UtilityWeights,
    usage: Mapping[str, float],
) -> Decision | None:
    """choose()'s contract, spelled out naively: score every free worker at every size."""
    best: tuple[tuple[float, float, str, int, int, str], Decision] | None = None
    for c in candidates:
        for w in workers:
            if w.free_slots <= 0:
                continue
            for n in size_ladder(min(c.ready, w.max_batch)):
                s = score(c, w, n, throughput=tp, weights=weights, usage=usage)
                if s.utility <= 0:
                    continue
                key = (-s.rate, -c.oldest_wait_s, c.signature, -n, -w.free_slots, w.worker_id)
                if best is None or key < best[0]:
                    best = (key, Decision(c.signature, w.worker_id, n, s))
    return None if best is None else best[1]


# -- the formula ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("warm", "observed_load", "load"),
    [
        ((), 10.0, 10.0),  # cold: the measured load
        ((), None, 5.0),  # cold, never measured: weights.default_load_s
        ((M,), 10.0, 0.0),  # warm: no load
    ],
)
def test_score_terms_follow_the_documented_formula(
    warm: tuple[str, ...], observed_load: float | None, load: float
) -> None:
    tp = ThroughputModel(seeds={("cpu", "embed"): 2.0}, gain_exp=0.0, batch_overhead_s=0.5)
    if observed_load is not None:
        tp.observe_load("cpu", M, observed_load)
    weights = UtilityWeights(
        value_per_item=1.0,
        wait_weight=0.1,
        cost_weight=2.0,
        energy_weight=0.5,
        time_weight=0.25,
        fairness_weight=0.5,
        default_load_s=5.0,
    )
    c = cand(ready=4, wait=10.0, tenants={"a": 4}, input_bytes=1e6, local={"w": 0.25})
    w = worker("w", price=3.6, watts=360.0, warm=warm, bandwidth=1e6)
    s = score(c, w, 4, throughput=tp, weights=weights, usage={"a": 1.0, "b": 3.0})

    seconds = (0.5 + 4 / 2.0) + load + 4 * (1e6 * 0.75 / 1e6)
    fair = (2.0 - 1.0) / 2.0  # equal share 2 worker-seconds, tenant a used 1
    value = 4 * (1.0 * (1 + 0.1 * 10.0) + 0.5 * 1.0 * fair)
    cost, energy = 3.6 * seconds / 3600, 360.0 * seconds / 3600
    utility = value - 2.0 * cost - 0.5 * energy - 0.25 * seconds
    assert s.seconds == pytest.approx(seconds)
    assert s.cost_usd == pytest.approx(cost)
    assert s.energy_wh == pytest.approx(energy)
    assert s.value == pytest.approx(value)
    assert s.utility == pytest.approx(utility)
    assert s.rate == pytest.approx(utility / seconds)


@pytest.mark.parametrize(
    ("tenants", "usage", "expected"),
    [
        ({"a": 3}, {}, 0.0),  # no history
        ({}, {"a": 5.0}, 0.0),  # no tenant info
        ({"a": 3}, {"a": 5.0, "b": 5.0}, 0.0),  # exactly an equal share
        ({"c": 1}, {"a": 5.0, "b": 5.0}, 1.0),  # no usage at all
        ({"a": 1}, {"a": 9.0, "b": 1.0}, (5 - 9) / 9),
        ({"b": 1}, {"a": 9.0, "b": 1.0}, (5 - 1) / 5),
        ({"a": 1, "b": 3}, {"a": 9.0, "b": 1.0}, ((5 - 9) / 9 + 3 * 0.8) / 4),
        ({"a": 0, "b": 2}, {"a": 9.0, "b": 1.0}, 0.8),  # tenants with no items do not count
        ({"a": 1}, {"a": 0.0, "b": 0.0}, 0.0),  # all decayed to zero: no history
        ({"a": 1}, {"a": 10.0, "idle": 0.0}, 0.0),  # idle tenants do not shrink the share
        ({"a": 1}, {"a": 1e9, "b": 1.0}, (5e8 + 0.5 - 1e9) / 1e9),  # towards -1
    ],
)
def test_fairness(tenants: dict[str, int], usage: dict[str, float], expected: float) -> None:
    assert fairness(cand(tenants=tenants), usage) == pytest.approx(expected)


@given(
    tenants=st.dictionaries(st.sampled_from("abcde"), st.integers(0, 50)),
    usage=st.dictionaries(st.sampled_from("abcdef"), st.floats(0, 1e6)),
)
@settings(max_examples=100, deadline=None)
def test_fairness_is_bounded(tenants: dict[str, int], usage: dict[str, float]) -> None:
    assert -1.0 <= fairness(cand(tenants=tenants), usage) <= 1.0


# -- each term decides when the others are equal ---------------------------------------------


@pytest.mark.parametrize(("load_s", "winner"), [(None, "b"), (0.0, "a")])
def test_warm_model_beats_cold(load_s: float | None, winner: str) -> None:
    tp = tp_default()
    if load_s is not None:  # a measured load of 0 s: warm no longer matters, ids decide
        tp.observe_load("cpu", M, load_s)
    workers = [worker("a", warm=()), worker("b", warm=(M,))]
    d = pick([cand()], workers, tp=tp)
    assert d is not None
    assert d.worker_id == winner
    cold, warm = (score(cand(), w, 8, throughput=tp, weights=DEFAULT, usage={}) for w in workers)
    assert cold.seconds - warm.seconds == pytest.approx(30.0 if load_s is None else 0.0)


def test_cheaper_worker_wins_when_expected_time_is_equal() -> None:
    workers = [worker("a", price=2.0), worker("b", price=1.0)]
    d = pick([cand()], workers)
    assert d is not None
    assert d.worker_id == "b"
    a, b = (
        score(cand(), w, 8, throughput=tp_default(), weights=DEFAULT, usage={}) for w in workers
    )
    assert a.seconds == b.seconds
    assert a.cost_usd == pytest.approx(2 * b.cost_usd)


# One item; the cpu does 1 item/s at $0.10/h, the gpu r items/s at $4/h. Per worker-second
# the cpu earns v - 0.1/3600 and the gpu r*v - 4/3600, so the gpu wins once
# r > 1 + (4 - 0.1) / (3600 * v) = 2.083...
CROSSOVER = 1 + (4.0 - 0.1) / (3600 * DOLLARS.value_per_item)


@pytest.mark.parametrize(("gpu_rate", "winner"), [(1.0, "a"), (2.0, "a"), (2.2, "b"), (10.0, "b")])
def test_faster_worker_wins_when_its_speed_outweighs_its_price(
    gpu_rate: float, winner: str
) -> None:
    assert 2.0 < CROSSOVER < 2.2
    tp = ThroughputModel(
        seeds={("cpu", "embed"): 1.0, ("gpu", "embed"): gpu_rate},
        gain_exp=0.0,
        batch_overhead_s=0.0,
    )
    workers = [worker("a", acc="cpu", price=0.1), worker("b", acc="gpu", price=4.0)]
    d = pick([cand(ready=1)], workers, tp=tp, weights=DOLLARS)
    assert d is not None
    assert d.worker_id == winner
    assert d.score.seconds == pytest.approx(1.0 if winner == "a" else 1 / gpu_rate)


def test_an_old_item_is_not_starved_by_big_fresh_batches() -> None:
    winners = []
    for wait in (0.0, 10.0, 100.0, 1000.0, 10000.0):
        candidates = [cand("big", ready=64), cand("old", ready=1, wait=wait)]
        d = pick(candidates, [worker()])
        assert d is not None
        winners.append(d.signature)
    assert winners == ["big", "big", "big", "old", "old"]
    values = [
        score(
            cand(ready=1, wait=t), worker(), 1, throughput=tp_default(), weights=DEFAULT, usage={}
        ).value
        for t in (0.0, 100.0, 200.0)
    ]
    assert values[2] - values[1] == pytest.approx(values[1] - values[0])  # grows without bound
    assert values[1] == pytest.approx(DEFAULT.value_per_item * (1 + DEFAULT.wait_weight * 100))


def test_a_tenant_cannot_crowd_others_out() -> None:
    hog, newcomer = cand("a-hog", tenants={"hog": 8}), cand("b-new", tenants={"newcomer": 8})
    usage = {"hog": 900.0, "other": 100.0}
    d = pick([hog, newcomer], [worker()], usage=usage)
    assert d is not None
    assert d.signature == "b-new"
    assert fairness(hog, usage) < 0 < fairness(newcomer, usage) == 1.0
    # With no history the two are equal and the signature breaks the tie.
    d = pick([hog, newcomer], [worker()], usage={})
    assert d is not None
    assert d.signature == "a-hog"


@pytest.mark.parametrize(
    ("local", "winner"),
    [
        ({}, "a"),  # nobody holds the inputs: equal, ids decide
        ({"b": 1.0}, "b"),
        ({"a": 0.5, "b": 0.9}, "b"),
        ({"a": 0.9, "b": 0.5}, "a"),
        ({"b": 0.0}, "a"),
    ],
)
def test_a_worker_holding_the_inputs_beats_one_that_must_fetch(
    local: dict[str, float], winner: str
) -> None:
    c = cand(ready=8, input_bytes=1e8, local=local)
    workers = [worker("a", bandwidth=1e8), worker("b", bandwidth=1e8)]
    d = pick([c], workers)
    assert d is not None
    assert d.worker_id == winner
    a, b = (score(c, w, 8, throughput=tp_default(), weights=DEFAULT, usage={}) for w in workers)
    fetched = 8 * (local.get("a", 0.0) - local.get("b", 0.0))  # 1e8 bytes at 1e8 bytes/s
    assert a.seconds - b.seconds == pytest.approx(-fetched)


def test_locality_belongs_to_the_candidate_whose_inputs_are_there() -> None:
    # Both groups run the same model; only "a"'s inputs are on h. "b" is bigger and would
    # win if h's locality leaked to it; it must fetch 1e8 bytes per item at 1e7 bytes/s.
    a = cand("a", ready=8, input_bytes=1e8, local={"h": 1.0})
    b = cand("b", ready=64, input_bytes=1e8)
    workers = [worker("g", bandwidth=1e7), worker("h", bandwidth=1e7)]
    tp = tp_default()
    d = pick([a, b], workers, tp=tp)
    assert d is not None
    assert (d.signature, d.worker_id) == ("a", "h")
    assert d == brute_force([a, b], workers, tp=tp, weights=DEFAULT, usage={})


def test_batch_bytes_are_moved_once_per_batch_and_not_to_their_holder() -> None:
    # A checkpoint model of 1e7 bytes at 1e7 bytes/s: one second to fetch, whatever the
    # batch size, and nothing on "h", which holds it on disk.
    c = cand(ready=8, batch_bytes=1e7, local={"h": 1.0})
    g, h = worker("g", bandwidth=1e7), worker("h", bandwidth=1e7)
    tp = tp_default()
    on_g = [score(c, g, n, throughput=tp, weights=DEFAULT, usage={}).seconds for n in (1, 8)]
    on_h = [score(c, h, n, throughput=tp, weights=DEFAULT, usage={}).seconds for n in (1, 8)]
    assert on_g[0] - on_h[0] == pytest.approx(1.0)
    assert on_g[1] - on_h[1] == pytest.approx(1.0)
    d = pick([c], [g, h], tp=tp)
    assert d is not None
    assert d.worker_id == "h"
    assert d == brute_force([c], [g, h], tp=tp, weights=DEFAULT, usage={})


def test_nothing_positive_gives_none() -> None:
    worthless = UtilityWeights(value_per_item=1e-12)
    assert pick([cand(ready=64)], [worker(), worker("x", acc="gpu")], weights=worthless) is None
    assert pick([], [worker()]) is None
    assert pick([cand()], []) is None


def test_busy_workers_are_never_chosen() -> None:
    busy_but_better = worker("a", price=0.0, free=0)
    d = pick([cand()], [busy_but_better, worker("b", price=5.0)])
    assert d is not None
    assert d.worker_id == "b"
    assert pick([cand()], [busy_but_better, worker("c", free=0)]) is None


@pytest.mark.parametrize(
    ("ready", "max_batch", "size"), [(5, 64, 5), (100, 16, 16), (1, 1, 1), (7, 6, 6), (64, 1, 1)]
)
def test_batch_size_respects_max_batch_and_ready(ready: int, max_batch: int, size: int) -> None:
    d = pick([cand(ready=ready)], [worker(max_batch=max_batch)])
    assert d is not None
    assert d.size == size


@pytest.mark.parametrize(
    ("items_per_s", "size"),
    [
        ({1: 10.0, 2: 20.0, 4: 40.0, 8: 80.0}, 8),  # throughput grows: the largest batch
        ({1: 10.0, 2: 40.0, 4: 20.0, 8: 15.0}, 2),  # it peaks at 2 (say, memory pressure)
    ],
)
def test_batch_size_follows_measured_throughput(items_per_s: dict[int, float], size: int) -> None:
    tp = tp_default()
    for n, rate in items_per_s.items():
        tp.observe("cpu", "embed", M, n, n / rate)
    d = pick([cand(ready=8)], [worker()], tp=tp)
    assert d is not None
    assert d.size == size
    assert d.score.seconds == pytest.approx(size / items_per_s[size])


def test_ties_break_by_age_then_signature_then_size_then_free_slots_then_worker_id() -> None:
    same = [cand("b"), cand("a")]
    twins = [worker("y"), worker("x")]
    for cs, ws in itertools.product(itertools.permutations(same), itertools.permutations(twins)):
        d = pick(cs, ws)
        assert d is not None
        assert (d.signature, d.worker_id) == ("a", "x")
    d = pick(same, [worker("x"), worker("y", free=3)])
    assert d is not None
    assert d.worker_id == "y"
    d = pick([cand("b", wait=1e-9), cand("a")], twins, weights=DOLLARS)  # no aging: equal rate
    assert d is not None
    assert d.signature == "b"


# -- properties against brute force ---------------------------------------------------------

MODELS = ["m@1", "m@2", "sha256:" + "c" * 64]
WEIGHTS = [
    DEFAULT,
    DOLLARS,
    UtilityWeights(cost_weight=50.0, time_weight=1e-3, fairness_weight=1.0),
    UtilityWeights(value_per_item=1e-6),
]


@st.composite
def throughputs(draw: st.DrawFn) -> ThroughputModel:
    tp = ThroughputModel(
        gain_exp=draw(st.sampled_from([0.0, 0.5, 1.0])),
        batch_overhead_s=draw(st.sampled_from([0.0, 0.05])),
        seeds={("cpu", "*"): 20.0, ("L4", "*"): 200.0},
    )
    keys = st.tuples(
        st.sampled_from(["cpu", "L4", "H100"]),
        st.sampled_from(["embed", "llm.generate"]),
        st.sampled_from([*MODELS, None]),
    )
    for key, size, seconds in draw(
        st.lists(st.tuples(keys, st.integers(1, 128), st.floats(1e-3, 10.0)), max_size=12)
    ):
        tp.observe(*key, size, seconds)
    for acc, model, seconds in draw(
        st.lists(st.tuples(keys, st.sampled_from(MODELS), st.floats(0, 60)), max_size=3)
    ):
        tp.observe_load(acc[0], model, seconds)
    return tp


@st.composite
def fleets(draw: st.DrawFn) -> list[WorkerView]:
    ids = draw(st.permutations([f"w{i:02d}" for i in range(draw(st.integers(1, 14)))]))
    return [
        WorkerView(
            worker_id=worker_id,
            accelerator=draw(st.sampled_from(["cpu", "L4", "H100"])),
            price_per_hour=draw(st.sampled_from([0.0, 0.5, 4.0])),
            watts=draw(st.sampled_from([60.0, 700.0])),
            free_slots=draw(st.integers(0, 3)),
            max_batch=draw(st.sampled_from([1, 3, 8, 64])),
            warm_models=frozenset(draw(st.sets(st.sampled_from(MODELS), max_size=2))),
            bandwidth_bytes_s=draw(st.sampled_from([1e6, 1e9])),
        )
        for worker_id in ids
    ]


@st.composite
def candidate_lists(draw: st.DrawFn, worker_ids: list[str]) -> list[BatchCandidate]:
    fractions = st.sampled_from([0.0, 0.5, 1.0])
    local = st.dictionaries(st.sampled_from(worker_ids), fractions) if worker_ids else st.just({})
    return [
        BatchCandidate(
            signature=f"sig{i}",
            kind=draw(st.sampled_from(["embed", "llm.generate"])),
            model=draw(st.sampled_from([*MODELS, None])),
            ready=draw(st.integers(1, 100)),
            oldest_wait_s=draw(st.sampled_from([0.0, 1.5, 30.0, 600.0])),
            tenant_items=draw(st.dictionaries(st.sampled_from("abc"), st.integers(0, 9))),
            input_bytes_per_item=draw(st.sampled_from([0.0, 1e3, 1e7])),
            local_fraction=draw(local),
            batch_input_bytes=draw(st.sampled_from([0.0, 0.0, 5e6])),
            item_weight=draw(st.sampled_from([1.0, 1.0, 7.5, 400.0])),
        )
        for i in range(draw(st.integers(1, 5)))
    ]


usages = st.dictionaries(st.sampled_from("abcd"), st.sampled_from([0.0, 1.0, 50.0, 900.0]))


@given(data=st.data(), tp=throughputs(), usage=usages, weights=st.sampled_from(WEIGHTS))
@settings(max_examples=150, deadline=None)
def test_choose_equals_brute_force_over_every_worker(
    data: st.DataObject,
    tp: ThroughputModel,
    usage: dict[str, float],
    weights: UtilityWeights,
) -> None:
    workers = data.draw(fleets())
    candidates = data.draw(candidate_lists([w.worker_id for w in workers]))
    expected = brute_force(candidates, workers, tp=tp, weights=weights, usage=usage)
    assert pick(candidates, workers, tp=tp, weights=weights, usage=usage) == expected


@given(data=st.data(), tp=throughputs(), usage=usages, weights=st.sampled_from(WEIGHTS))
@settings(max_examples=150, deadline=None)
def test_the_size_picked_maximises_rate_over_every_size(
    data: st.DataObject,
    tp: ThroughputModel,
    usage: dict[str, float],
    weights: UtilityWeights,
) -> None:
    w = data.draw(fleets())[0]
    w = WorkerView(
        w.worker_id,
        w.accelerator,
        w.price_per_hour,
        w.watts,
        1,
        data.draw(st.integers(1, 80)),
        w.warm_models,
        w.bandwidth_bytes_s,
    )
    c = data.draw(candidate_lists([w.worker_id]))[0]
    scores = [
        score(c, w, n, throughput=tp, weights=weights, usage=usage)
        for n in range(1, min(c.ready, w.max_batch) + 1)
    ]
    best = max((s.rate for s in scores if s.utility > 0), default=None)
    d = pick([c], [w], tp=tp, weights=weights, usage=usage)
    if best is None:
        assert d is None
        return
    assert d is not None
    assert d.score == scores[d.size - 1]
    assert d.score.rate >= best - 1e-9 * abs(best)


def test_a_large_fleet_decides_like_brute_force() -> None:
    """A fleet at the scale the scheduler runs (1,000 workers); correctness only."""
    rng = random.Random(7)
    hardware = [("cpu", 0.1, 100.0, 64), ("L4", 0.8, 72.0, 128), ("H100", 4.0, 700.0, 256)]
    workers = []
    for i in range(1000):
        acc, price, watts, max_batch = rng.choice(hardware)
        warm = frozenset(rng.sample(MODELS, rng.randint(0, 1)))
        workers.append(
            WorkerView(f"w{i:04d}", acc, price, watts, rng.randint(0, 2), max_batch, warm)
        )
    candidates = [
        cand(
            f"sig{j}",
            model=rng.choice(MODELS),
            ready=rng.randint(1, 300),
            wait=rng.choice([0.0, 5.0, 60.0]),
            input_bytes=1e7 if j % 3 == 0 else 0.0,
            local={f"w{rng.randrange(1000):04d}": rng.choice([0.5, 1.0]) for _ in range(3)},
        )
        for j in range(12)
    ]
    tp = tp_default()
    for acc, *_ in hardware:
        for n in (1, 8, 64):
            tp.observe(acc, "embed", MODELS[0], n, n / (50.0 * n**0.6))
    d = pick(candidates, workers, tp=tp)
    assert d is not None
    assert d == brute_force(candidates, workers, tp=tp, weights=DEFAULT, usage={})


@pytest.mark.parametrize(
    ("limit", "ladder"),
    [(1, (1,)), (2, (1, 2)), (3, (1, 2, 3)), (8, (1, 2, 4, 8)), (12, (1, 2, 4, 8, 12))],
)
def test_size_ladder(limit: int, ladder: tuple[int, ...]) -> None:
    assert size_ladder(limit) == ladder


# -- policies -------------------------------------------------------------------------------


def test_policies_are_registered_by_name() -> None:
    assert set(POLICIES) == {"utility", "fifo", "cheapest", "fastest"}
    kinds = {
        "utility": UtilityPolicy,
        "fifo": FifoPolicy,
        "cheapest": CheapestPolicy,
        "fastest": FastestPolicy,
    }
    for name, policy in POLICIES.items():
        assert policy.name == name
        assert type(policy) is kinds[name]
        assert (
            policy.choose([], [worker()], throughput=tp_default(), weights=DEFAULT, usage={})
            is None
        )
        assert (
            policy.choose(
                [cand()], [worker(free=0)], throughput=tp_default(), weights=DEFAULT, usage={}
            )
            is None
        )


def run(
    name: str, candidates: list[BatchCandidate], workers: list[WorkerView], **kw: object
) -> Decision:
    weights = kw.get("weights", DEFAULT)
    assert isinstance(weights, UtilityWeights)
    d = POLICIES[name].choose(
        candidates, workers, throughput=tp_default(), weights=weights, usage={}
    )
    assert d is not None
    return d


def test_utility_policy_is_choose() -> None:
    candidates = [cand("big", ready=64), cand("old", ready=1, wait=30.0)]
    workers = [worker("a", warm=()), worker("b", acc="gpu", price=3.0)]
    assert run("utility", candidates, workers) == pick(candidates, workers)


def test_fifo_runs_the_oldest_candidate_whatever_its_utility() -> None:
    candidates = [cand("big", ready=64), cand("old", ready=3, wait=5.0)]
    workers = [worker("a", free=1), worker("b", free=2, warm=(), max_batch=2), worker("c", free=0)]
    assert pick(candidates, workers).signature == "big"  # type: ignore[union-attr]
    d = run("fifo", candidates, workers)
    assert (d.signature, d.worker_id, d.size) == ("old", "b", 2)  # most free slots
    d = run("fifo", candidates, workers, weights=UtilityWeights(value_per_item=1e-12))
    assert d.signature == "old"
    assert d.score.utility < 0


def test_cheapest_sends_the_oldest_candidate_to_the_cheapest_free_worker() -> None:
    candidates = [cand("new", ready=50), cand("old", ready=50, wait=1.0)]
    workers = [
        worker("a", price=3.0),
        worker("b", price=0.5, free=0),
        worker("c", price=1.0, acc="gpu", max_batch=16),
        worker("d", price=2.0),
    ]
    d = run("cheapest", candidates, workers)
    assert (d.signature, d.worker_id, d.size) == ("old", "c", 16)


def test_fastest_sends_the_oldest_candidate_to_the_lowest_seconds_per_item() -> None:
    candidates = [cand("old", ready=64, wait=1.0), cand("new", ready=64)]
    workers = [
        worker("a", acc="cpu"),
        worker("b", acc="gpu", warm=()),  # fast hardware, but a 30 s cold load
        worker("c", acc="gpu", max_batch=1),  # its one-item batch is the quickest batch
        worker("d", acc="gpu", max_batch=64, price=100.0),
    ]
    d = run("fastest", candidates, workers)
    assert (d.signature, d.worker_id, d.size) == ("old", "d", 64)
    c_item = score(candidates[0], workers[2], 1, throughput=tp_default(), weights=DEFAULT, usage={})
    assert c_item.seconds < d.score.seconds  # per batch c is faster; per item d is


# -- bad input ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        lambda: cand(ready=0),
        lambda: cand(wait=-1.0),
        lambda: cand(wait=math.nan),
        lambda: cand(input_bytes=-5.0),
        lambda: cand(local={"w": 1.5}),
        lambda: BatchCandidate("s", "embed", M, 1, 0.0, {}, item_weight=0.0),
        lambda: worker(bandwidth=0.0),
        lambda: worker(price=-1.0),
        lambda: worker(watts=math.inf),
        lambda: score(
            cand(ready=4), worker(), 5, throughput=tp_default(), weights=DEFAULT, usage={}
        ),
        lambda: score(
            cand(), worker(max_batch=2), 3, throughput=tp_default(), weights=DEFAULT, usage={}
        ),
        lambda: score(cand(), worker(), 0, throughput=tp_default(), weights=DEFAULT, usage={}),
    ],
)
def test_bad_values_are_invalid_input(make: object) -> None:
    assert callable(make)
    with pytest.raises(InvalidInputError):
        make()


@pytest.mark.parametrize(
    "weights",
    [
        {"cost_weight": -1.0},
        {"value_per_item": 0.0},
        {"wait_weight": math.nan},
        {"time_weight": math.inf},
    ],
)
def test_unworkable_weights_are_a_config_error(weights: dict[str, float]) -> None:
    with pytest.raises(ConfigError):
        UtilityWeights(**weights)


def test_an_item_that_stands_for_much_work_is_priced_per_unit_of_it() -> None:
    """A training run over 1,000 examples is one item worth 1,000 units of work, and the
    throughput model knows the kind per unit (examples per second on that accelerator):
    the run is expected to take 1,000 units' time, so whether it runs is what one unit
    costs and earns there, whatever the size of the run."""
    fast = ThroughputModel(seeds={("gpu", "train"): 10.0})  # 10 examples/s
    slow = ThroughputModel(seeds={("gpu", "train"): 0.01})  # 100 s per example
    costly = worker(acc="gpu", price=4.0, warm=())
    plain = cand(kind="train", ready=1, model=None)
    heavy = BatchCandidate("s", "train", None, 1, 0.0, {}, item_weight=1000.0)
    one = score(plain, costly, 1, throughput=fast, weights=DEFAULT, usage={})
    many = score(heavy, costly, 1, throughput=fast, weights=DEFAULT, usage={})
    assert many.seconds == pytest.approx(1000 * one.seconds)
    assert many.value == pytest.approx(1000 * one.value)
    assert many.rate == pytest.approx(one.rate)  # what a second of the worker earns
    for candidate in (plain, heavy):
        decision = pick([candidate], [costly], tp=fast)
        assert decision is not None
        expected = score(candidate, costly, 1, throughput=fast, weights=DEFAULT, usage={})
        assert decision.score == expected
        assert pick([candidate], [costly], tp=slow) is None  # a unit costs more than it earns
