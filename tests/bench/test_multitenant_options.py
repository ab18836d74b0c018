"""The multi-tenant benchmark's training stage, without running it: who asks for what
(bench/tenancy/training.py) and the options that choose the stages."""

from __future__ import annotations

import pytest

from bench.tenancy.errors import UsageError
from bench.tenancy.options import parse_options
from bench.tenancy.training import (
    GROUP_SIZE,
    NODES,
    TRAINING_NODES,
    groups,
    plan_training,
    training_workflow,
)


def test_tenants_of_a_group_ask_for_the_same_records_and_groups_share_half() -> None:
    plan = plan_training(tenants=5, prompts=8, salt=4, nonce=1)
    assert groups(5) == 3
    assert len(plan.sets) == 5
    assert plan.sets[0] == plan.sets[1]
    assert plan.sets[2] == plan.sets[3]
    assert plan.sets[4] != plan.sets[2]
    common = set(map(str, plan.sets[0])) & set(map(str, plan.sets[2]))
    assert len(common) == plan.shared == 4
    other = plan_training(tenants=5, prompts=8, salt=3, nonce=1)  # another variant's salt
    assert not set(map(str, other.sets[0])) & set(map(str, plan.sets[0]))


def test_the_workflow_trains_sft_on_the_top_half_and_dpo_on_pairs_of_two_samples() -> None:
    plan = plan_training(tenants=GROUP_SIZE, prompts=6, salt=4, nonce=2)
    flow = training_workflow(plan.sets[0], max_new_tokens=8, dedup=False)
    assert tuple(flow.nodes) == NODES
    nodes = flow.nodes
    assert nodes["best"].params["k"] == 3
    assert nodes["samples"].params["n"] == 2
    assert [nodes[n].kind for n in TRAINING_NODES] == ["train.sft", "train.dpo"]
    assert not any(node.dedup for node in nodes.values())


def test_stages_are_chosen_and_checked() -> None:
    assert parse_options([], "").stages == ("data",)
    quick = parse_options(["--quick", "--stages", "training,data"], "")
    assert quick.stages == ("data", "training")  # always in this order
    assert quick.training_prompts == 4
    with pytest.raises(UsageError, match="unknown --stages value"):
        parse_options(["--stages", "rlhf"], "")
    with pytest.raises(UsageError, match="no oracle"):
        parse_options(["--stages", "training", "--variants", "oracle"], "")
