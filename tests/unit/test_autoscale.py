"""The autoscaler's pure decision (docs/autoscaling.md): scale out for the backlog, scale in
idle replicas, scale to zero, stay within the pool's bounds, release the priciest first."""

from __future__ import annotations

import pydantic
import pytest

from flowmesh_core import autoscale
from flowmesh_core.autoscale import PoolSpec, PoolView, check_pool_name, decide, recommend
from flowmesh_core.errors import ConfigError
from flowmesh_core.settings import load_settings


def test_public_api() -> None:
    assert set(autoscale.__all__) == {
        "Decision",
        "Market",
        "PoolSpec",
        "PoolView",
        "check_pool_name",
        "decide",
        "recommend",
    }


def test_backlog_buys_enough_to_drain_within_drain_s_and_no_more_than_batches() -> None:
    spec = PoolSpec(max_replicas=50)
    # 600 s of work, drain in 60 s: 10 replicas, but only 4 batches to give them
    d = decide(spec, PoolView(0, backlog_s=600.0, batches=4), drain_s=60.0)
    assert (d.add, d.remove, d.desired) == (4, 0, 4)
    d = decide(spec, PoolView(0, backlog_s=600.0, batches=40), drain_s=60.0)
    assert d.desired == 10
    assert "backlog 600s" in d.reason


def test_booting_and_idle_replicas_count_as_already_bought() -> None:
    spec = PoolSpec(max_replicas=50)
    d = decide(spec, PoolView(3, booting=2, idle=1, backlog_s=600.0, batches=40), 60.0)
    assert d.add == 10 - 3
    assert d.desired == 5 + 7


def test_max_replicas_caps_and_says_so() -> None:
    d = decide(PoolSpec(max_replicas=3), PoolView(1, backlog_s=6000.0, batches=99), 60.0)
    assert d.desired == 3
    assert d.add == 2
    assert "max_replicas" in d.reason


def test_idle_replicas_go_down_to_zero_when_nothing_waits() -> None:
    d = decide(PoolSpec(min_replicas=0), PoolView(3, idle=3, idle_expired=3), 60.0)
    assert (d.desired, d.remove, d.add) == (0, 3, 0)
    assert "zero" in d.reason


def test_min_replicas_is_kept_and_reached() -> None:
    spec = PoolSpec(min_replicas=2, max_replicas=5)
    assert decide(spec, PoolView(3, idle=3, idle_expired=3), 60.0).desired == 2
    d = decide(spec, PoolView(0), 60.0)
    assert d.add == 2
    assert "min_replicas" in d.reason
    # with scaling off the pool only reaches its minimum
    assert decide(spec, PoolView(4, idle=4, idle_expired=4), 60.0, scale=False).desired == 4


def test_idle_not_yet_expired_is_kept() -> None:
    d = decide(PoolSpec(), PoolView(2, idle=2, idle_expired=0), 60.0)
    assert (d.desired, d.remove) == (2, 0)
    assert d.reason == "steady"


def test_recommend_orders_priciest_first_and_sees_absent_pools_as_empty() -> None:
    pools = {
        "cpu": PoolSpec(usd_per_hour=0.1, min_replicas=1),
        "h100": PoolSpec(accelerator="H100", usd_per_hour=4.0),
        "l4": PoolSpec(accelerator="L4", usd_per_hour=0.8, watts=72),
    }
    out = recommend(pools, {"h100": PoolView(1, idle=1, idle_expired=1)}, 60.0)
    assert list(out) == ["h100", "l4", "cpu"]
    assert out["h100"].desired == 0
    assert out["cpu"].desired == 1
    assert out["l4"].desired == 0


def test_bad_pool_declarations_say_what_to_fix() -> None:
    with pytest.raises(pydantic.ValidationError, match="exceeds max_replicas"):
        PoolSpec(min_replicas=3, max_replicas=2)
    with pytest.raises(pydantic.ValidationError):
        PoolSpec(usd_per_hour=-1)
    with pytest.raises(pydantic.ValidationError):
        PoolSpec.model_validate({"acelerator": "L4"})
    with pytest.raises(ValueError, match="lowercase"):
        check_pool_name("GPU_pool")
    assert check_pool_name("gpu-l4") == "gpu-l4"
    assert PoolSpec(accelerator="L4").gpu
    assert not PoolSpec().gpu
    with pytest.raises(ValueError, match="drain_s"):
        decide(PoolSpec(), PoolView(0), 0.0)


def test_pools_in_settings_are_checked_whole() -> None:
    settings = load_settings(pools={"gpu-l4": {"accelerator": "L4", "max_replicas": 2}})
    assert settings.pools["gpu-l4"].max_replicas == 2
    with pytest.raises(ConfigError, match="lowercase"):
        load_settings(pools={"GPU_1": {}})
    with pytest.raises(ConfigError, match="exceeds max_replicas"):
        load_settings(pools={"cpu": {"min_replicas": 5, "max_replicas": 1}})
