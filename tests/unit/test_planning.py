"""One scheduling round (flowmesh_core.control.planning.RoundPlan), without Redis.

The round asks the policy, the caller claims, the plan accounts for the claim; these tests
check that the view follows each claim exactly as the scheduler and the simulator rely on.
"""

from __future__ import annotations

from collections import Counter

from flowmesh_core.control.planning import RoundPlan, member_tenant
from flowmesh_core.control.policies import POLICIES
from flowmesh_core.control.throughput import ThroughputModel
from flowmesh_core.control.utility import BatchCandidate, UtilityWeights, WorkerView
from flowmesh_core.store.keys import KeySpace


def worker(worker_id: str, slots: int = 1, max_batch: int = 4) -> WorkerView:
    return WorkerView(
        worker_id=worker_id,
        accelerator="cpu",
        price_per_hour=0.1,
        watts=50.0,
        free_slots=slots,
        max_batch=max_batch,
        warm_models=frozenset(),
    )


def plan(members: list[str], workers: list[WorkerView]) -> RoundPlan:
    candidate = BatchCandidate(
        signature="sig",
        kind="embed",
        model="m@1",
        ready=len(members),
        oldest_wait_s=1.0,
        tenant_items=Counter(member_tenant(m) for m in members),
    )
    return RoundPlan(
        {"sig": candidate},
        {"sig": members},
        workers,
        policy=POLICIES["utility"],
        throughput=ThroughputModel(seeds={("cpu", "embed"): 100.0}),
        weights=UtilityWeights(),
        usage={},
    )


def test_each_claim_shrinks_the_group_and_uses_a_slot_until_nothing_is_left() -> None:
    members = [KeySpace.ready_member("a" if i < 3 else "b", "global", f"k{i}") for i in range(6)]
    p = plan(members, [worker("w1", slots=2), worker("w2")])
    taken = []
    while (d := p.next()) is not None:
        taken.append((d.worker_id, d.size))
        p.account(d, d.size)
    assert sum(size for _, size in taken) == 6
    assert len(taken) == 2  # max_batch 4: a batch of 4, then the last 2
    assert not p.candidates


def test_the_group_left_behind_counts_only_its_remaining_tenants() -> None:
    members = [
        KeySpace.ready_member(t, "global", k) for t, k in ("a1", "a2", "a3", "a4", "b5", "b6")
    ]
    p = plan(members, [worker("w1", max_batch=4), worker("w2", max_batch=4)])
    d = p.next()
    assert d is not None
    assert d.size == 4
    p.account(d, 4)
    assert p.candidates["sig"].ready == 2
    assert p.candidates["sig"].tenant_items == Counter({"b": 2})
    assert [w.worker_id for w in p.workers] == ["w2" if d.worker_id == "w1" else "w1"]


def test_a_claim_that_found_nothing_drops_the_group_and_the_worker_warms_the_model() -> None:
    p = plan([KeySpace.ready_member("a", "global", k) for k in "12"], [worker("w1", slots=2)])
    d = p.next()
    assert d is not None
    p.account(d, 0)
    assert not p.candidates
    assert p.workers[0].free_slots == 1
    assert p.workers[0].warm_models == frozenset({"m@1"})
    assert p.next() is None


def test_terms_are_the_decisions_score_and_name_no_tenant() -> None:
    members = [
        KeySpace.ready_member("alice" if i < 2 else "bob", "global", f"k{i}") for i in range(3)
    ]
    p = plan(members, [worker("w1"), worker("w2")])
    decision = p.next()
    assert decision is not None
    terms = p.terms(decision)
    s = decision.score
    assert (terms["value"], terms["cost_usd"], terms["energy_wh"]) == (
        s.value,
        s.cost_usd,
        s.energy_wh,
    )
    assert (terms["seconds"], terms["utility"], terms["rate"]) == (s.seconds, s.utility, s.rate)
    assert terms["size"] == decision.size == 3
    assert terms["ready"] == 3
    assert terms["free_workers"] == 2
    assert terms["model_warm"] is False
    assert (terms["input_bytes"], terms["input_local"]) == (0.0, 0.0)
    assert terms["oldest_wait_s"] == 1.0
    assert terms["fairness"] == 0.0  # no usage yet
    assert (terms["accelerator"], terms["price_per_hour"], terms["watts"]) == ("cpu", 0.1, 50.0)
    assert not any("alice" in str(v) or "bob" in str(v) for v in terms.values())
    p.account(decision, decision.size)  # terms read the view; they change nothing in it
    assert not p.candidates
