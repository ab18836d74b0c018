"""The online throughput model (flowmesh_core.control.throughput).

Buckets, the moving averages, how unmeasured buckets are estimated (interpolation,
saturation, the seed's gain curve), model-load seconds, and persistence: a model that
went through JSON answers every question exactly as the original did.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flowmesh_core.control.throughput import DEFAULT_SEEDS, Observation, ThroughputModel, bucket
from flowmesh_core.errors import ConfigError, InvalidInputError


def model(**overrides: Any) -> ThroughputModel:
    """A model with round numbers: cpu embeds 10 items/s at batch 1, gain sqrt(n) up to 8."""
    settings_: dict[str, Any] = {
        "seeds": {("cpu", "embed"): 10.0},
        "default_rate": 1.0,
        "gain_cap": 8,
        "gain_exp": 0.5,
        "batch_overhead_s": 0.1,
        "default_load_s": 20.0,
    }
    settings_.update(overrides)
    return ThroughputModel(**settings_)


@pytest.mark.parametrize(
    ("size", "expected"),
    [(1, 1), (2, 2), (3, 4), (4, 4), (5, 8), (8, 8), (9, 16), (1000, 1024), (1024, 1024)],
)
def test_buckets_are_powers_of_two(size: int, expected: int) -> None:
    assert bucket(size) == expected


@pytest.mark.parametrize("size", [0, -3])
def test_a_batch_has_at_least_one_item(size: int) -> None:
    with pytest.raises(InvalidInputError, match="at least 1"):
        bucket(size)
    with pytest.raises(InvalidInputError):
        model().batch_seconds("cpu", "embed", "m", size)


def test_observations_move_an_ewma_of_items_per_second() -> None:
    tp = model(alpha=0.3)
    tp.observe("cpu", "embed", "m", 4, 1.0)  # 4 items/s: the first sample is the average
    assert tp.batch_seconds("cpu", "embed", "m", 4) == pytest.approx(1.0)
    tp.observe("cpu", "embed", "m", 4, 0.5)  # 8 items/s
    rate = 0.7 * 4 + 0.3 * 8
    assert tp.batch_seconds("cpu", "embed", "m", 4) == pytest.approx(4 / rate)
    assert tp.rate("cpu", "embed", "m", 4) == pytest.approx(rate)
    # Size 3 shares bucket 4: the same rate, fewer items.
    tp.observe("cpu", "embed", "m", 3, 3 / 5.2)  # exactly the current average
    assert tp.batch_seconds("cpu", "embed", "m", 3) == pytest.approx(3 / rate)
    assert tp.samples("cpu", "embed", "m", 4) == 3
    assert tp.samples("cpu", "embed", "m", 3) == 3
    assert tp.samples("cpu", "embed", "m", 8) == 0


def test_keys_do_not_share_measurements() -> None:
    tp = model()
    seeded = tp.batch_seconds("cpu", "embed", "m", 4)
    tp.observe("cpu", "embed", "m", 4, 10.0)
    assert tp.batch_seconds("cpu", "embed", "m", 4) == pytest.approx(10.0)
    for other in [("cpu", "embed", "other"), ("cpu", "score", "m"), ("gpu", "embed", "m")]:
        assert tp.samples(*other, 4) == 0
    assert tp.batch_seconds("cpu", "embed", "other", 4) == seeded
    assert tp.batch_seconds("cpu", "embed", None, 4) == seeded


def test_unmeasured_buckets_interpolate_in_log_size() -> None:
    tp = model()
    tp.observe("cpu", "embed", "m", 2, 2 / 10.0)  # bucket 2: 10 items/s
    tp.observe("cpu", "embed", "m", 8, 8 / 30.0)  # bucket 8: 30 items/s
    assert tp.rate("cpu", "embed", "m", 4) == pytest.approx(20.0)  # halfway in log2
    assert tp.batch_seconds("cpu", "embed", "m", 3) == pytest.approx(3 / 20.0)
    tp.observe("cpu", "embed", "m", 32, 32 / 60.0)  # bucket 32: 60 items/s
    assert tp.rate("cpu", "embed", "m", 16) == pytest.approx(45.0)


def test_throughput_saturates_past_the_largest_measured_bucket() -> None:
    tp = model()
    tp.observe("cpu", "embed", "m", 8, 8 / 30.0)
    for size in (9, 64, 1000):
        assert tp.batch_seconds("cpu", "embed", "m", size) == pytest.approx(size / 30.0)


def test_below_the_smallest_measured_bucket_the_seed_curve_is_anchored_there() -> None:
    tp = model(gain_exp=0.5, gain_cap=32)
    tp.observe("cpu", "embed", "m", 8, 8 / 40.0)
    # rate(2) = 40 * g(2) / g(8) = 40 * sqrt(2) / sqrt(8) = 20
    assert tp.rate("cpu", "embed", "m", 2) == pytest.approx(20.0)
    assert tp.rate("cpu", "embed", "m", 1) == pytest.approx(40 / math.sqrt(8))


def test_new_observations_replace_memoised_estimates() -> None:
    tp = model()
    tp.observe("cpu", "embed", "m", 8, 8 / 30.0)
    assert tp.rate("cpu", "embed", "m", 64) == pytest.approx(30.0)
    tp.observe("cpu", "embed", "m", 64, 64 / 90.0)
    assert tp.rate("cpu", "embed", "m", 64) == pytest.approx(90.0)
    assert tp.rate("cpu", "embed", "m", 16) == pytest.approx(50.0)  # 30 -> 90 over 3 steps


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        (1, 0.1 + 1 / 10.0),
        (4, 0.1 + 4 / (10.0 * 2.0)),  # gain sqrt(4) = 2
        (16, 0.1 + 16 / (10.0 * math.sqrt(8))),  # the gain stops at gain_cap = 8
    ],
)
def test_seeded_fallback_is_overhead_plus_size_over_gained_rate(size: int, expected: float) -> None:
    assert model().batch_seconds("cpu", "embed", "m", size) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("accelerator", "kind", "rate"),
    [
        ("cpu", "embed", 10.0),  # exact
        ("cpu", "score", 5.0),  # (accelerator, "*")
        ("gpu", "embed", 100.0),  # ("*", kind)
        ("cpu", "data.x", 1000.0),  # ("*", kind) before (accelerator, "*")
        ("gpu", "score", 1.0),  # default_rate
    ],
)
def test_seed_lookup_order(accelerator: str, kind: str, rate: float) -> None:
    tp = model(
        seeds={
            ("cpu", "embed"): 10.0,
            ("cpu", "*"): 5.0,
            ("*", "embed"): 100.0,
            ("*", "data.x"): 1000.0,
        },
        batch_overhead_s=0.0,
    )
    assert tp.batch_seconds(accelerator, kind, "m", 1) == pytest.approx(1 / rate)


def test_default_seeds_rank_hardware() -> None:
    tp = ThroughputModel()
    assert DEFAULT_SEEDS
    for kind in ("embed", "llm.generate"):
        times = [tp.batch_seconds(acc, kind, "m", 8) for acc in ("cpu", "L4", "A100", "H100")]
        assert times == sorted(times, reverse=True)


def test_load_seconds_learn_from_observed_loads() -> None:
    tp = model(alpha=0.5, default_load_s=20.0)
    assert tp.load_seconds("gpu", "m") == 20.0
    assert tp.load_seconds("gpu", "m", 7.0) == 7.0  # a caller's default wins over ours
    tp.observe_load("gpu", "m", 10.0)
    assert tp.load_seconds("gpu", "m", 7.0) == 10.0  # a measurement wins over both
    tp.observe_load("gpu", "m", 30.0)
    assert tp.load_seconds("gpu", "m") == pytest.approx(20.0)
    assert tp.load_samples("gpu", "m") == 2
    assert tp.load_seconds("cpu", "m") == 20.0
    assert tp.load_samples("cpu", "m") == 0


@pytest.mark.parametrize("seconds", [0.0, -1.0, math.nan, math.inf])
def test_bad_batch_observations_are_rejected(seconds: float) -> None:
    tp = model()
    with pytest.raises(InvalidInputError, match="seconds"):
        tp.observe("cpu", "embed", "m", 4, seconds)
    assert tp.samples("cpu", "embed", "m", 4) == 0


@pytest.mark.parametrize("seconds", [-1.0, math.nan])
def test_bad_load_observations_are_rejected(seconds: float) -> None:
    with pytest.raises(InvalidInputError, match="seconds"):
        model().observe_load("cpu", "m", seconds)


@pytest.mark.parametrize(
    "overrides",
    [
        {"alpha": 0.0},
        {"alpha": 1.5},
        {"gain_cap": 0},
        {"gain_exp": 1.5},
        {"gain_exp": -0.1},
        {"batch_overhead_s": -1.0},
        {"default_load_s": math.nan},
        {"default_rate": 0.0},
        {"seeds": {("cpu", "embed"): -1.0}},
    ],
)
def test_unworkable_configuration_is_a_config_error(overrides: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        model(**overrides)


def trained() -> ThroughputModel:
    tp = model(alpha=0.25, seeds={("cpu", "embed"): 10.0, ("*", "score"): 3.0})
    tp.observe("cpu", "embed", "m@1", 1, 0.3)
    tp.observe("cpu", "embed", "m@1", 8, 0.9)
    tp.observe("cpu", "embed", "m@1", 8, 1.1)
    tp.observe("H100", "llm.generate", "sha256:" + "a" * 64, 32, 2.5)
    tp.observe("cpu", "data.filter", None, 100, 0.01)
    tp.observe_load("H100", "sha256:" + "a" * 64, 41.5)
    tp.observe_load("cpu", "m@1", 3.0)
    return tp


def test_to_dict_from_dict_round_trips_through_json() -> None:
    original = trained()
    data = json.loads(json.dumps(original.to_dict()))
    rebuilt = ThroughputModel.from_dict(data)
    assert rebuilt.to_dict() == original.to_dict()
    keys = [
        ("cpu", "embed", "m@1"),
        ("H100", "llm.generate", "sha256:" + "a" * 64),
        ("cpu", "data.filter", None),
        ("L4", "score", "x"),
    ]
    for key in keys:
        for size in (1, 2, 3, 8, 20, 64, 500):
            assert rebuilt.batch_seconds(*key, size) == original.batch_seconds(*key, size)
            assert rebuilt.samples(*key, size) == original.samples(*key, size)
    for acc, name in [("H100", "sha256:" + "a" * 64), ("cpu", "m@1"), ("cpu", "new")]:
        assert rebuilt.load_seconds(acc, name) == original.load_seconds(acc, name)
        assert rebuilt.load_samples(acc, name) == original.load_samples(acc, name)
    # It keeps learning the same way too.
    for tp in (original, rebuilt):
        tp.observe("cpu", "embed", "m@1", 8, 0.5)
    assert rebuilt.to_dict() == original.to_dict()


@given(
    observations=st.lists(
        st.tuples(
            st.sampled_from(["cpu", "L4"]),
            st.sampled_from(["embed", "score"]),
            st.sampled_from(["a@1", "b@2", None]),
            st.integers(1, 300),
            st.floats(1e-3, 1e3),
        ),
        max_size=20,
    )
)
@settings(max_examples=50, deadline=None)
def test_round_trip_holds_for_any_history(
    observations: list[tuple[str, str, str | None, int, float]],
) -> None:
    original = model()
    for obs in observations:
        original.observe(*obs)
    rebuilt = ThroughputModel.from_dict(json.loads(json.dumps(original.to_dict())))
    assert rebuilt.to_dict() == original.to_dict()
    for acc, kind, name, size, _ in observations:
        for n in (1, size, 2 * size):
            assert rebuilt.batch_seconds(acc, kind, name, n) == original.batch_seconds(
                acc, kind, name, n
            )


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d.update(format=99),
        lambda d: d.pop("alpha"),
        lambda d: d.update(alpha=7),
        lambda d: d.update(rates=[["cpu", "embed", "m", 4, -1.0, 1]]),
        lambda d: d.update(rates=[["cpu", "embed"]]),
        lambda d: d.update(loads="nonsense"),
        lambda d: d.update(loads=[["cpu", "m", -2.0, 1]]),
        lambda d: d.update(rates=[["cpu", "embed", "m", 0, 1.0, 1]]),
    ],
)
def test_malformed_state_is_rejected(mutate: Any) -> None:
    data = trained().to_dict()
    mutate(data)
    with pytest.raises(InvalidInputError, match="throughput model state"):
        ThroughputModel.from_dict(data)
    with pytest.raises(InvalidInputError, match="throughput model state"):
        ThroughputModel.from_dict({})


def test_a_kind_without_a_seed_is_slower_on_a_cpu_than_on_any_gpu() -> None:
    """The default seeds rank hardware even for kinds they do not name (training, python)."""
    model = ThroughputModel()
    cpu = model.batch_seconds("cpu", "train.sft", "m@1", 1)
    gpus = [model.batch_seconds(a, "train.sft", "m@1", 1) for a in ("L4", "L40S", "A100")]
    h100 = model.batch_seconds("H100-80GB", "train.sft", "m@1", 1)  # by its family
    assert cpu > max(gpus)
    assert gpus == sorted(gpus, reverse=True)
    assert h100 < min(gpus)


def test_learning_replays_onto_a_saved_model_as_if_it_had_been_there() -> None:
    """How replicas merge: observations replayed onto the stored model (control/scheduler)."""
    history = [
        Observation("cpu", "embed", "m", 4, 1.0, 2.0),
        Observation("cpu", "embed", "m", 4, 0.5),
        Observation("cpu", "embed", None, 8, 2.0, 9.0),  # no model: the load is not learned
    ]
    whole, saved = model(), model()
    for observation in history:
        whole.learn(observation)
    saved.learn(history[0])
    resumed = ThroughputModel.from_dict(json.loads(json.dumps(saved.to_dict())))
    for observation in history[1:]:
        resumed.learn(observation)
    assert resumed.to_dict() == whole.to_dict()
    assert whole.load_samples("cpu", "m") == 1
    assert whole.samples("cpu", "embed", None, 8) == 1


def test_a_bad_observation_teaches_nothing() -> None:
    tp = model()
    with pytest.raises(InvalidInputError):
        tp.learn(Observation("cpu", "embed", "m", 4, 1.0, math.inf))
    with pytest.raises(InvalidInputError):
        tp.learn(Observation("cpu", "embed", "m", 4, 0.0, 1.0))
    assert tp.to_dict() == model().to_dict()


def test_every_data_kind_has_a_fast_prior_on_a_cpu() -> None:
    """A data.* kind never run before is not priced like an unknown model on a CPU (which
    held a first data.top_k back ~18 s on an idle worker): each registered one is seeded."""
    from flowmesh_core.registry import Registry

    tp = ThroughputModel()
    data_kinds = [k for k in Registry.default().kinds() if k.startswith("data.")]
    assert data_kinds
    for kind in data_kinds:
        assert tp.batch_seconds("cpu", kind, None, 8) < 1.0, kind
