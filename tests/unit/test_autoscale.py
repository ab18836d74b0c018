"""The autoscaler's pure decision (docs/autoscaling.md): scale out for the backlog, scale in
idle replicas, scale to zero, stay within the pool's bounds, release the priciest first."""

from __future__ import annotations

from dataclasses import replace

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
    spec = PoolSpec(max_replicas=50, boot_s=0.0)  # no lead: ready replicas earn no credit
    d = decide(spec, PoolView(3, booting=2, idle=1, backlog_s=600.0, batches=40), 60.0)
    assert d.add == 10 - (2 + 1)
    assert d.desired == 5 + 7


def test_a_burst_past_the_drain_target_buys_what_the_ready_replicas_cannot_drain_in_a_lead() -> (
    None
):
    # lead = 120 s boot + 30 s load; 2 busy replicas finish 2 x 150 = 300 s of the 1500 s
    # before a new replica takes any; the other 1200 s in 60 s needs 20 replicas
    spec = PoolSpec(max_replicas=50, boot_s=120.0)
    view = PoolView(2, backlog_s=1500.0, batches=80, load_s=30.0, ahead_known=True)
    d = decide(spec, view, drain_s=60.0)
    assert (d.add, d.ahead, d.desired) == (20, 0, 22)
    assert "backlog 1500s" in d.reason
    # a slower boot leaves the ready replicas more of it (2 x 330 s): fewer to buy
    slower = decide(PoolSpec(max_replicas=50, boot_s=300.0), view, drain_s=60.0)
    assert slower.add == 14
    # the same burst on an empty pool: all of it, within the batches there are
    empty = PoolView(0, backlog_s=1500.0, batches=80, load_s=30.0, ahead_known=True)
    assert decide(spec, empty, 60.0).add == 25
    few = PoolView(0, backlog_s=1500.0, batches=7, load_s=30.0, ahead_known=True)
    assert decide(spec, few, 60.0).add == 7


def test_a_backlog_the_ready_replicas_drain_within_a_lead_buys_nothing() -> None:
    spec = PoolSpec(max_replicas=50, boot_s=120.0)
    # 4 replicas x 130 s lead = 520 s: a 500 s backlog is gone before a new one could start
    view = PoolView(4, backlog_s=500.0, batches=9, load_s=10.0, ahead_known=True)
    d = decide(spec, view, drain_s=60.0)
    assert (d.add, d.desired) == (0, 4)
    assert "lead 130s" in d.reason
    # 100 s more than they drain in a lead: two more replicas
    more = PoolView(4, backlog_s=620.0, batches=9, load_s=10.0, ahead_known=True)
    assert decide(spec, more, 60.0).add == 2


def _old_rule(spec: PoolSpec, view: PoolView, drain_s: float) -> int:
    """Replicas the rule before the lead discount added (written out from its docs)."""
    spare = view.booting + view.idle
    need = max(0, -(-view.backlog_s // drain_s) - spare)
    return int(min(max(0, min(need, view.batches - spare)), spec.max_replicas - view.replicas))


@pytest.mark.parametrize(
    ("replicas", "booting", "idle", "backlog_s", "batches"),
    [(4, 0, 0, 500.0, 9), (2, 0, 0, 1500.0, 80), (3, 2, 1, 600.0, 40), (8, 1, 0, 90.0, 2)],
)
def test_without_the_next_wave_a_backlog_buys_as_the_old_rule_never_fewer(
    replicas: int, booting: int, idle: int, backlog_s: float, batches: int
) -> None:
    # the live observer without the next wave: waiting a lead for a backlog would make
    # each later stage wait a boot too, so no lead discount (docs/autoscaling.md)
    spec = PoolSpec(max_replicas=50, boot_s=120.0)
    view = PoolView(replicas, booting, idle, 0, backlog_s, batches, load_s=10.0)
    blind = decide(spec, view, drain_s=60.0)
    assert blind.add == _old_rule(spec, view, 60.0)
    assert "lead" not in blind.reason
    seen = decide(spec, replace(view, ahead_known=True), drain_s=60.0)
    assert blind.add >= seen.add


def test_the_next_wave_grows_the_pool_one_lead_early_and_counts_the_whole_pool() -> None:
    spec = PoolSpec(max_replicas=50, boot_s=120.0)
    # nothing waits now; the next stage is 900 s in 30 batches: 15 replicas for 60 s,
    # of which the 4 alive (busy now, free by then) and 1 booting count
    view = PoolView(4, booting=1, ahead_s=900.0, ahead_batches=30)
    d = decide(spec, view, drain_s=60.0)
    assert (d.add, d.ahead, d.desired) == (10, 10, 15)
    assert "next wave 900s" in d.reason
    # a wave of 3 training runs (3 batches) never buys more than 3
    few = decide(spec, PoolView(0, ahead_s=900.0, ahead_batches=3), drain_s=60.0)
    assert (few.add, few.ahead) == (3, 3)
    # what the backlog buys counts towards the wave: only the difference is bought ahead
    both = decide(
        spec, PoolView(0, backlog_s=600.0, batches=40, ahead_s=900.0, ahead_batches=30), 60.0
    )
    assert (both.add, both.ahead) == (15, 5)
    # a wave the pool already covers buys nothing; max_replicas caps the rest
    assert decide(spec, PoolView(20, ahead_s=900.0, ahead_batches=30), 60.0).add == 0
    capped = decide(PoolSpec(max_replicas=6), view, drain_s=60.0)
    assert (capped.desired, capped.ahead) == (6, 1)
    # under max_replicas the ready backlog is served before the wave
    busy = PoolView(0, backlog_s=300.0, batches=9, ahead_s=900.0, ahead_batches=30)
    first = decide(PoolSpec(max_replicas=7, boot_s=0.0), busy, drain_s=60.0)
    assert (first.add, first.ahead) == (7, 2)


def test_idle_replicas_the_next_wave_needs_are_kept_the_rest_go() -> None:
    # 6 idle past idle_s and a coming wave of 2 replicas' work: 4 go, 2 stay, none is
    # bought (releasing them and buying 2 again would pay two boots for nothing)
    spec = PoolSpec(max_replicas=50)
    view = PoolView(6, idle=6, idle_expired=6, ahead_s=120.0, ahead_batches=9)
    d = decide(spec, view, drain_s=60.0)
    assert (d.remove, d.add, d.desired) == (4, 0, 2)
    # with nothing coming, scale to zero still holds
    gone = decide(spec, PoolView(6, idle=6, idle_expired=6), drain_s=60.0)
    assert (gone.remove, gone.desired) == (6, 0)
    assert "zero" in gone.reason


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
