"""The cluster simulator (bench/sim): its bookkeeping is exact and it drives the real scheduler.

Small scenarios, whose answers can be worked out by hand: dedup executes each distinct
op key once, batching off gives batches of one, preemption re-plans and loses nothing,
exhausted attempts are counted as lost, and the static baseline is the arithmetic its
docstring states. The rounds run through ``flowmesh_core.control.planning.RoundPlan``.
"""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from bench.sim import engine as engine_module
from bench.sim.engine import Engine
from bench.sim.fleet import SimWorker, Wave, backlog_seconds
from bench.sim.hardware import ACCELERATORS, Roofline, Work
from bench.sim.static import run_oracle, run_static
from bench.sim.variants import FLOWMESH, Dynamics, Features, Variant
from bench.sim.workload import TEMPLATES, Submission, make_submissions
from flowmesh_core.control.planning import RoundPlan

ROOT = Path(__file__).resolve().parents[2]
WARM = Dynamics(min_workers=2, initial={"L40S": 2})


def sub(t: float, tenant: str, template: str, prompts: range) -> Submission:
    return Submission(t, tenant, TEMPLATES[template], tuple(prompts))


def test_identical_work_of_two_tenants_executes_once() -> None:
    subs = [sub(0, "a", "chain", range(50)), sub(5, "b", "chain", range(25, 75))]
    out = Engine(subs, FLOWMESH, WARM, seed=1).run()
    assert (out.workflows, out.unfinished) == (2, 0)
    assert out.requested == 2 * 50 * 4
    assert out.executed == 75 * 4  # 75 distinct prompts, four stages
    assert out.requested == out.executed + out.cache_hits + out.joins


def test_without_dedup_everything_runs_and_without_batching_every_batch_is_one() -> None:
    subs = [sub(0, "a", "sft", range(40)), sub(0, "b", "sft", range(40))]
    plain = Engine(subs, FLOWMESH.without("dedup"), WARM, seed=1).run()
    assert plain.executed == plain.requested == 2 * (40 + 40 + 1)
    single = Engine(subs, FLOWMESH.without("batching"), WARM, seed=1).run()
    assert single.batches == single.executed == 40 + 40 + 1  # same data: one SFT run


def test_preempted_work_is_replanned_and_nothing_is_lost() -> None:
    subs = make_submissions(
        tenants=4,
        workflows_per_tenant=2,
        prompts=200,
        overlap=0.5,
        arrival="fixed",
        horizon_s=1200,
        seed=3,
    )
    calm = Dynamics(marketplace=True, min_workers=2, initial={"L40S": 2})
    stormy = Dynamics(
        marketplace=True,
        preempt_per_hour=20.0,
        max_attempts=50,
        min_workers=2,
        initial={"L40S": 2},
    )
    quiet = Engine(subs, FLOWMESH, calm, seed=3).run()
    rough = Engine(subs, FLOWMESH, stormy, seed=3).run()
    assert rough.preemptions > 0
    assert rough.replanned > 0
    assert (rough.workflows, rough.unfinished, rough.lost) == (len(subs), 0, 0)
    assert rough.executed >= quiet.executed  # re-planned items ran again


def test_an_item_past_its_attempts_is_lost_and_its_workflows_fail() -> None:
    subs = [sub(0, "a", "sft", range(300)), sub(0, "b", "sft", range(300))]
    doomed = Dynamics(
        marketplace=True,
        preempt_per_hour=3600.0,
        max_attempts=1,
        min_workers=1,
        initial={"L40S": 1},
    )
    out = Engine(subs, FLOWMESH, doomed, seed=1).run()
    assert out.lost > 0
    assert (out.unfinished, out.workflows) == (2, 0)


def test_heterogeneity_off_buys_one_type_and_hides_the_others_from_the_scheduler() -> None:
    subs = make_submissions(
        tenants=3,
        workflows_per_tenant=1,
        prompts=300,
        overlap=0.0,
        arrival="fixed",
        horizon_s=60,
        seed=2,
    )
    out = Engine(subs, FLOWMESH.without("heterogeneous"), Dynamics(), seed=2).run()
    assert set(out.by_type) == {"A100"}
    hetero = Engine(subs, FLOWMESH, Dynamics(), seed=2).run()
    assert set(hetero.by_type) - {"A100"}


def test_rounds_go_through_the_products_round_plan(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    class Counting(RoundPlan):
        def next(self):  # type: ignore[no-untyped-def]
            decision = super().next()
            calls.append(decision)
            return decision

    monkeypatch.setattr(engine_module, "RoundPlan", Counting)
    out = Engine([sub(0, "a", "chain", range(10))], FLOWMESH, WARM, seed=1).run()
    assert out.batches == sum(1 for d in calls if d is not None)


def test_static_baseline_is_boot_plus_loads_plus_full_batches() -> None:
    roof = Roofline()
    a100 = ACCELERATORS["A100"]
    works = [st.work for st in TEMPLATES["sft"].stages]
    cap = Roofline.max_batch(a100, works)
    out = run_static([sub(0, "a", "sft", range(10))])
    gen, score, train = works
    expected = (
        a100.boot_s
        + roof.load_seconds(a100, gen.model)
        + roof.batch_seconds(a100, gen, 10)
        + roof.load_seconds(a100, score.model)
        + roof.batch_seconds(a100, score, 10)
        + roof.load_seconds(a100, train.model)
        + roof.batch_seconds(a100, train, 10)
    )
    assert cap >= 10
    assert out.latencies == [pytest.approx(expected)]
    assert out.usage.usd == pytest.approx(a100.on_demand_hr * expected / 3600)


def test_oracle_counts_only_distinct_work() -> None:
    subs = [sub(0, "a", "chain", range(50)), sub(5, "b", "chain", range(25, 75))]
    out = run_oracle(subs)
    assert (out.requested, out.executed) == (400, 300)


def test_roofline_orders_hardware_and_batching_pays() -> None:
    roof = Roofline()
    work = Work("llm.generate", "llama-3.2-1b", 256, 256)
    h100, l4 = ACCELERATORS["H100"], ACCELERATORS["L4"]
    assert roof.batch_seconds(h100, work, 1) < roof.batch_seconds(l4, work, 1)
    # decode is bandwidth-bound: 64 sequences cost far less than 64 x one
    assert roof.batch_seconds(h100, work, 64) < 8 * roof.batch_seconds(h100, work, 1)
    assert Roofline.max_batch(l4, [Work("llm.generate", "llama-3.2-3b", 640, 256)]) >= 16


def test_with_heterogeneity_and_locality_off_the_scheduler_sees_one_kind_of_worker() -> None:
    v = Variant("x", features=Features(locality=False, heterogeneous=False))
    works = list(TEMPLATES["chain"].stages)
    views = []
    for name in ("H100", "L4"):
        w = SimWorker(name, ACCELERATORS[name], 1.0, False, 8, 0.0, 0.0)
        w.warm_up(works[0].work.model)
        views.append(v.view(w))
    assert views[0].worker_id != views[1].worker_id
    same = [(x.accelerator, x.price_per_hour, x.watts, x.warm_models) for x in views]
    assert same[0] == same[1] == ("gpu", same[0][1], same[0][2], frozenset())
    assert FLOWMESH.view(w).accelerator == "L4"
    assert FLOWMESH.view(w).warm_models == frozenset({works[0].work.model})


def test_the_next_wave_is_read_from_the_graph_and_priced_on_its_own_type() -> None:
    """A dpo run at its first stage, through the product's next_wave: next comes a score
    over its 2 x 100 samples, then one DPO run; the wave needing more workers is used."""
    roof, dpo = Roofline(), TEMPLATES["dpo"]
    works = sorted({st.work for st in dpo.stages}, key=repr)
    subs = [Submission(0.0, "t", dpo, tuple(range(100)))]
    engine = Engine(subs, FLOWMESH, Dynamics(marketplace=True, drain_s=1.0), seed=1)
    engine._submit(subs[0])  # s0 starts: its 200 samples wait in the ready pool
    scaler = engine.scalers["all"]
    wave = engine._next_wave("all", scaler, Counter())
    assert wave is not None
    choice = ACCELERATORS[wave.type_name]
    score = Wave.of(roof, choice, {dpo.stages[1].work: [200, 0]}, works)
    # the graph says the DPO run trains on its upstream's 200 scored samples
    train = Wave.of(roof, choice, {dpo.stages[2].work: [200, 1]}, works)
    assert train.batches == 1  # a training run is one batch, however long
    assert score.seconds == pytest.approx(
        backlog_seconds(roof, choice, dpo.stages[1].work, 200, works)
    )
    assert wave.seconds in (score.seconds, train.seconds)
    assert wave.workers(1.0) == max(score.workers(1.0), train.workers(1.0))
    # nothing is coming for a pool the stages do not belong to, nor with no run in flight
    assert engine._next_wave("elsewhere", scaler, Counter()) is None
    assert Engine(subs, FLOWMESH, Dynamics(), seed=1)._next_wave("all", scaler, Counter()) is None


@pytest.mark.timeout(120)
def test_quick_run_writes_every_output_and_bad_input_is_one_line(tmp_path: Path) -> None:
    csv_path, png = tmp_path / "sim.csv", tmp_path / "sim.png"
    command = [sys.executable, str(ROOT / "bench" / "simulate.py"), "--quick"]
    run = subprocess.run(
        [*command, "--csv", str(csv_path), "--png", str(png)],
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    for scenario in ("paper-fixed", "paper-ramp", "paper-bursty", "preemption", "scale"):
        assert f"{scenario}:" in run.stdout
    for variant in (
        "static",
        "oracle",
        "flowmesh-market",
        "no-dedup",
        "no-batching",
        "no-locality",
        "no-heterogeneous",
        "round-robin",
        "cheapest-first",
        "fastest-first",
        "fixed-pipeline",
    ):
        assert variant in run.stdout
    assert csv_path.read_text().startswith("# date: ")
    assert png.read_bytes()[:4] == b"\x89PNG"
    bad = subprocess.run(
        [*command, "--scenarios", "nope"], capture_output=True, text=True, timeout=60, check=False
    )
    assert bad.returncode == 2
    assert "unknown scenario nope" in bad.stderr
    assert "Traceback" not in bad.stderr
