"""Training on tiny random-weight models with real TRL and PEFT (docs/training.md):
SFT lowers the completions' loss, a LoRA adapter loads on its base and generates, DPO
moves the preference margin towards the chosen completions, data.pairs builds pairs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from flowmesh_worker.executors.data import make_pairs
from flowmesh_worker.executors.train import (
    DpoParams,
    LoraParams,
    SftParams,
    TrainError,
    train_dpo,
    train_sft,
)
from flowmesh_worker.weights.tiny import TINY_GPT, ensure_tiny_model

# The first test in a process imports torch, transformers, TRL and PEFT (tens of seconds
# of CPU on a loaded machine); each test after that trains in seconds.
pytestmark = pytest.mark.timeout(240)

SFT_ROWS = [{"prompt": f"question {i} :", "completion": " the answer is blue ."} for i in range(8)]
DPO_ROWS = [
    {"prompt": f"pick a colour {i} :", "chosen": " green", "rejected": " red"} for i in range(8)
]


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ensure_tiny_model(TINY_GPT, model_dir=tmp_path_factory.mktemp("models"))


def test_sft_lowers_the_completion_loss(base: Path, tmp_path: Path) -> None:
    params = SftParams(epochs=3, learning_rate=1e-2, batch_size=4, seed=1)
    reports: list[Any] = []
    metrics = train_sft(base, tmp_path / "sft", SFT_ROWS, params, report=reports.append)
    assert metrics["steps"] == 6
    # Progress at every step: step of steps, the loss it logged, and the time left.
    assert [r["step"] for r in reports] == [1, 2, 3, 4, 5, 6]
    assert {r["steps"] for r in reports} == {6}
    assert [r["loss"] for r in reports] == pytest.approx(metrics["losses"])
    assert reports[-1]["eta_s"] == 0
    assert all(r["eta_s"] >= 0 for r in reports)
    assert metrics["nll_after"] < metrics["nll_before"] - 0.5
    assert metrics["losses"][-1] < metrics["losses"][0]
    assert (tmp_path / "sft" / "config.json").is_file()


# PEFT reads a property this transformers release renamed; the warning is theirs.
@pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing.*:FutureWarning")
def test_lora_adapter_loads_on_its_base_and_generates(base: Path, tmp_path: Path) -> None:
    from peft import PeftConfig, PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    params = LoraParams(epochs=3, learning_rate=2e-2, batch_size=4, lora_r=8, seed=2)
    metrics = train_sft(base, tmp_path / "lora", SFT_ROWS, params)
    assert metrics["nll_after"] < metrics["nll_before"]
    adapter = tmp_path / "lora"
    assert (adapter / "adapter_config.json").is_file()
    assert not (adapter / "model.safetensors").exists()  # only the adapter, not the base
    assert PeftConfig.from_pretrained(str(adapter)).base_model_name_or_path == str(base)
    model = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(str(base)), str(adapter)
    ).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(adapter))
    ids = tokenizer("question 3 :", add_special_tokens=False, return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        out = model.generate(input_ids=ids, max_new_tokens=4, do_sample=False)
    assert out.shape[1] == ids.shape[1] + 4


def test_dpo_moves_the_margin_towards_chosen(base: Path, tmp_path: Path) -> None:
    params = DpoParams(epochs=2, learning_rate=5e-3, batch_size=4, beta=0.1, seed=3)
    metrics = train_dpo(base, tmp_path / "dpo", DPO_ROWS, params)
    assert metrics["steps"] == 4
    assert metrics["margin_after"] > metrics["margin_before"] + 0.5


def test_pairs_from_scored_samples() -> None:
    samples = [
        {"prompt": "a", "completion": "x"},
        {"prompt": "a", "completion": "y"},
        {"prompt": "a", "completion": "z"},
        {"prompt": "b", "completion": "u"},
        {"prompt": "c", "completion": "v"},
        {"prompt": "c", "completion": "w"},
    ]
    pairs = make_pairs(samples, [0.1, 0.9, 0.5, 1.0, 0.3, 0.3])
    assert pairs == [{"prompt": "a", "chosen": "y", "rejected": "x", "margin": pytest.approx(0.8)}]
    assert make_pairs(samples, [0.1, 0.9, 0.5, 1.0, 0.3, 0.3], min_margin=0.9) == []
    with pytest.raises(ValueError, match="one score per sample"):
        make_pairs(samples, [0.1])
    with pytest.raises(ValueError, match="finite number"):
        make_pairs(samples[:1], [float("nan")])


def test_bad_examples_say_what_to_fix(base: Path, tmp_path: Path) -> None:
    with pytest.raises(TrainError, match="dataset is empty"):
        train_sft(base, tmp_path / "x", [], SftParams())
    with pytest.raises(TrainError, match="needs a string 'chosen'"):
        train_dpo(base, tmp_path / "y", [{"prompt": "p", "rejected": "r"}], DpoParams())
    assert not (tmp_path / "x").exists()
    assert not (tmp_path / "y").exists()
