"""Training kinds in the registry and the keys (docs/training.md): the op key covers base
model, dataset, hyperparameters and seed; an item's weight is examples times epochs, and
reaches the scheduler's utility through the signature's stored meaning."""

from __future__ import annotations

import json
from typing import Any

import pytest

from flowmesh_core.control.scheduler import _candidate
from flowmesh_core.errors import InvalidParamsError
from flowmesh_core.hashing import canonical_json, digest_bytes
from flowmesh_core.keys import Expansion, expand
from flowmesh_core.manifest import build_manifest
from flowmesh_core.models import Operator
from flowmesh_core.registry import Registry
from flowmesh_core.store.ledger import signature_meta

REGISTRY = Registry.default()
ROWS = [{"prompt": f"q{i}", "completion": "a"} for i in range(8)]


def sft(**changes: Any) -> Expansion:
    fields: dict[str, Any] = {
        "kind": "train.sft",
        "model": "flowmesh/tiny-gpt",
        "params": {"epochs": 3, "seed": 1},
        "inputs": {"dataset": ROWS},
    }
    fields.update(changes)
    return expand(Operator.model_validate(fields), REGISTRY, max_inline_bytes=1 << 20)


def test_the_op_key_covers_base_dataset_hyperparameters_and_seed() -> None:
    key = sft().op_key
    assert sft().op_key == key
    assert sft(params={"epochs": 3, "seed": 1, "learning_rate": 5e-4}).op_key == key  # default
    # How often it checkpoints cannot change the result: not part of the key.
    assert sft(params={"epochs": 3, "seed": 1, "checkpoint_every": 7}).op_key == key
    others = [
        sft(model="sha256:" + "a" * 64),
        sft(inputs={"dataset": ROWS[:7]}),
        sft(params={"epochs": 3, "seed": 2}),
        sft(params={"epochs": 4, "seed": 1}),
        sft(params={"epochs": 3, "seed": 1, "learning_rate": 1e-3}),
        sft(kind="train.lora"),
        sft(kind="train.lora", params={"epochs": 3, "seed": 1, "merge": True}),
    ]
    assert len({key, *(o.op_key for o in others)}) == len(others) + 1


def test_an_item_weighs_examples_times_epochs_and_the_scheduler_sees_it() -> None:
    (item,) = sft().items
    assert item.weight == len(ROWS) * 3
    meta = json.loads(signature_meta(item))
    assert meta["weight"] == 24
    candidate = _candidate(item.signature, 1, [("t|d|k", 0.0)], {item.signature: meta}, 1.0)
    assert candidate.item_weight == 24
    # Other kinds keep weight 1 and their stored meaning unchanged.
    (other,) = expand(
        Operator(kind="data.top_k", params={"k": 1}, inputs={"items": [1], "scores": [1]}),
        REGISTRY,
        max_inline_bytes=1 << 20,
    ).items
    assert other.weight == 1
    assert "weight" not in json.loads(signature_meta(other))


def test_each_training_run_is_its_own_batch_group() -> None:
    assert sft().signature != sft(inputs={"dataset": ROWS[:4]}).signature
    assert sft().signature == sft().signature


def test_a_dataset_given_as_a_manifest_or_a_blob_weighs_its_elements() -> None:
    digests = ["sha256:" + f"{i:064x}" for i in range(5)]
    manifest = build_manifest(digests)
    listed = canonical_json(ROWS[:6])
    blobs = {digest_bytes(manifest): manifest, digest_bytes(listed): listed}

    def load(digest: str) -> Any:
        return json.loads(blobs[digest])

    for digest, count in ((digest_bytes(manifest), 5), (digest_bytes(listed), 6)):
        op = Operator.model_validate(
            {"kind": "train.dpo", "model": "m", "inputs": {"dataset": {"blob": digest}}}
        )
        (item,) = expand(op, REGISTRY, max_inline_bytes=1 << 20, load_blob=load).items
        assert item.weight == count  # one epoch by default


def test_bad_hyperparameters_say_what_to_fix() -> None:
    with pytest.raises(InvalidParamsError, match=r"params\.learning_rate"):
        sft(params={"learning_rate": 0})
    with pytest.raises(InvalidParamsError, match=r"params\.lora_r"):
        sft(kind="train.lora", params={"lora_r": 0})
    with pytest.raises(InvalidParamsError, match=r"params\.loss_type"):
        sft(kind="train.dpo", params={"loss_type": "mystery"})


def test_flowmesh_status_shows_a_running_trainings_progress() -> None:
    import io

    from rich.console import Console

    from flowmesh_core.cli._inspect import status_table
    from flowmesh_core.models.api import NodeState, NodeStatus, WorkflowStatus

    progress = {"step": 12, "steps": 64, "loss": 9.8123, "eta_s": 3.4, "worker": "w-1"}
    node = NodeStatus(node="sft", state=NodeState.RUNNING, items_total=1, progress=progress)
    status = WorkflowStatus(
        workflow_id="w", name="n", state=NodeState.RUNNING, created_at=0.0, nodes=[node]
    )
    out = io.StringIO()
    Console(file=out, width=200).print(status_table(status))
    assert "step 12/64, loss 9.81, ETA 3s" in out.getvalue()


def test_flowmesh_status_shows_a_cold_model_load() -> None:
    import io

    from rich.console import Console

    from flowmesh_core.cli._inspect import status_table
    from flowmesh_core.models.api import NodeState, NodeStatus, WorkflowStatus

    progress = {"phase": "loading", "model": "flowmesh/tiny-gpt", "worker": "w-1", "at": 1.0}
    node = NodeStatus(node="gen", state=NodeState.RUNNING, items_total=4, progress=progress)
    status = WorkflowStatus(
        workflow_id="w", name="n", state=NodeState.RUNNING, created_at=0.0, nodes=[node]
    )
    out = io.StringIO()
    Console(file=out, width=200).print(status_table(status))
    assert "loading flowmesh/tiny-gpt on w-1" in out.getvalue()
