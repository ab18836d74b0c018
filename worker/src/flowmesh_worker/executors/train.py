"""Training on a local model directory with TRL and PEFT: SFT, LoRA-SFT and DPO.

These are the building blocks of the ``train.sft``, ``train.lora`` and ``train.dpo``
kinds (docs/training.md). Each takes a base model directory, a list of examples and
typed params, trains on this process's device, writes the result to ``out_dir`` with
``save_pretrained`` (a full model, or a LoRA adapter that records its base) and returns
metrics measured on the training data before and after. They never touch Redis or the
CAS. They are not yet registered as kinds: a checkpoint must first be storable in the
CAS as a tree, so that another worker can use it.

``data.pairs`` turns scored samples into preference pairs for DPO: per prompt, the best
and the worst scored completion, when their scores differ by at least ``min_margin``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "DpoParams",
    "SftParams",
    "TrainError",
    "make_pairs",
    "train_dpo",
    "train_sft",
]


class TrainError(ValueError):
    """Bad training input: the message says what to fix."""


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    learning_rate: float = Field(default=5e-4, gt=0.0, le=1.0)
    epochs: int = Field(default=1, ge=1, le=1000)
    batch_size: int = Field(default=8, ge=1, le=4096)
    max_length: int = Field(default=256, ge=8, le=32768)
    seed: int = Field(default=0, ge=0, le=2**31 - 1)


class SftParams(_Params):
    """SFT hyperparameters; ``lora_r > 0`` trains a LoRA adapter instead of all weights."""

    lora_r: int = Field(default=0, ge=0, le=1024)
    lora_alpha: int = Field(default=16, ge=1, le=4096)
    lora_dropout: float = Field(default=0.0, ge=0.0, lt=1.0)


class DpoParams(_Params):
    """DPO hyperparameters: ``beta`` is the strength of the KL tie to the base model."""

    beta: float = Field(default=0.1, gt=0.0, le=100.0)
    loss_type: Literal["sigmoid", "ipo", "hinge"] = "sigmoid"


def _check_rows(rows: Sequence[Any], keys: tuple[str, ...], kind: str) -> list[dict[str, str]]:
    if not rows:
        raise TrainError(f"{kind}: the dataset is empty; give at least one example")
    out: list[dict[str, str]] = []
    for i, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise TrainError(
                f"{kind}: example {i} must be an object with {', '.join(keys)}, "
                f"got {type(row).__name__}"
            )
        for key in keys:
            if not isinstance(row.get(key), str):
                raise TrainError(f"{kind}: example {i} needs a string {key!r}")
        out.append({key: row[key] for key in keys})
    return out


def _load_causal(base: Path) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(base), local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(str(base), local_files_only=True)
    return model, tokenizer


def _mean_completion_nll(model: Any, tokenizer: Any, rows: list[dict[str, str]]) -> float:
    """Mean per-token negative log-likelihood of each completion given its prompt."""
    total = 0.0
    for row in rows:
        total += _completion_logp(model, tokenizer, row["prompt"], row["completion"], mean=True)
    return -total / len(rows)


def _completion_logp(
    model: Any, tokenizer: Any, prompt: str, completion: str, *, mean: bool
) -> float:
    import torch

    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    completion_ids = tokenizer(completion, add_special_tokens=False)["input_ids"]
    ids = torch.tensor([prompt_ids + completion_ids], device=model.device)
    with torch.inference_mode():
        logits = model(input_ids=ids).logits.float()
    logp = torch.log_softmax(logits[0, :-1], dim=-1)
    targets = ids[0, 1:]
    picked = logp.gather(1, targets.unsqueeze(1)).squeeze(1)[len(prompt_ids) - 1 :]
    value = float(picked.sum())
    return value / max(1, len(completion_ids)) if mean else value


def _margin(model: Any, tokenizer: Any, rows: list[dict[str, str]]) -> float:
    """Mean of log p(chosen) - log p(rejected) over the pairs."""
    total = 0.0
    for row in rows:
        chosen = _completion_logp(model, tokenizer, row["prompt"], row["chosen"], mean=False)
        rejected = _completion_logp(model, tokenizer, row["prompt"], row["rejected"], mean=False)
        total += chosen - rejected
    return total / len(rows)


def _common_args(params: _Params, out_dir: Path, device: str) -> dict[str, Any]:
    return {
        "output_dir": str(out_dir / ".trainer"),
        "learning_rate": params.learning_rate,
        "num_train_epochs": params.epochs,
        "per_device_train_batch_size": params.batch_size,
        "max_length": params.max_length,
        "seed": params.seed,
        "data_seed": params.seed,
        "use_cpu": device == "cpu",
        "report_to": [],
        "save_strategy": "no",
        "logging_steps": 1,
        "disable_tqdm": True,
        # TRL defaults to checkpointing activations through the deprecated name; tiny
        # models do not need it, and a GPU run with big ones can turn it on later.
        "gradient_checkpointing": None,
        "activation_checkpointing": False,
    }


def _finish(trainer: Any, out_dir: Path) -> dict[str, Any]:
    history = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    trainer.save_model(str(out_dir))
    trainer.processing_class.save_pretrained(str(out_dir))
    runtime = trainer.state.log_history[-1].get("train_runtime", float("nan"))
    return {"steps": int(trainer.state.global_step), "losses": history, "runtime_s": runtime}


def _trained(trainer: Any) -> Any:
    model = trainer.model
    assert model is not None, "the trainer lost its model"
    return model.eval()


def train_sft(
    base: Path,
    out_dir: Path,
    rows: Sequence[Any],
    params: SftParams,
    *,
    device: str = "cpu",
) -> dict[str, Any]:
    """Supervised fine-tuning on {prompt, completion} examples (loss on completions only).

    With ``params.lora_r > 0`` only a LoRA adapter is trained and ``out_dir`` holds the
    adapter, whose config names ``base``. Returns steps, per-step losses and the mean
    completion NLL on the training data before and after.
    """
    from datasets import Dataset  # type: ignore[import-untyped]
    from trl.trainer.sft_config import SFTConfig
    from trl.trainer.sft_trainer import SFTTrainer

    examples = _check_rows(rows, ("prompt", "completion"), "train.sft")
    model, tokenizer = _load_causal(base)
    nll_before = _mean_completion_nll(model, tokenizer, examples)
    peft_config = None
    if params.lora_r > 0:
        from peft import LoraConfig

        peft_config = LoraConfig(
            r=params.lora_r,
            lora_alpha=params.lora_alpha,
            lora_dropout=params.lora_dropout,
            target_modules="all-linear",
            task_type="CAUSAL_LM",
        )
    args = SFTConfig(**_common_args(params, out_dir, device), completion_only_loss=True)
    with warnings.catch_warnings():
        # PEFT reads a property that this transformers release renamed (its own warning).
        warnings.filterwarnings(
            "ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning
        )
        trainer = SFTTrainer(
            model=model,
            args=args,
            train_dataset=Dataset.from_list(examples),
            processing_class=tokenizer,
            peft_config=peft_config,
        )
        trainer.train()
        metrics = _finish(trainer, out_dir)
        metrics["nll_after"] = _mean_completion_nll(_trained(trainer), tokenizer, examples)
    metrics["nll_before"] = nll_before
    metrics["examples"] = len(examples) * params.epochs
    return metrics


def train_dpo(
    base: Path,
    out_dir: Path,
    rows: Sequence[Any],
    params: DpoParams,
    *,
    device: str = "cpu",
) -> dict[str, Any]:
    """Direct preference optimisation on {prompt, chosen, rejected} pairs; the base model
    is the frozen reference. Returns steps, losses and the mean preference margin
    (log p(chosen) - log p(rejected)) on the training pairs before and after."""
    from datasets import Dataset
    from trl.trainer.dpo_config import DPOConfig
    from trl.trainer.dpo_trainer import DPOTrainer

    pairs = _check_rows(rows, ("prompt", "chosen", "rejected"), "train.dpo")
    model, tokenizer = _load_causal(base)
    margin_before = _margin(model, tokenizer, pairs)
    args = DPOConfig(
        **_common_args(params, out_dir, device), beta=params.beta, loss_type=[params.loss_type]
    )
    with warnings.catch_warnings():
        # TRL reads a property that this transformers release renamed (its own warning).
        warnings.filterwarnings(
            "ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning
        )
        trainer = DPOTrainer(
            model=model,
            args=args,
            train_dataset=Dataset.from_list(pairs),
            processing_class=tokenizer,
        )
        trainer.train()
        metrics = _finish(trainer, out_dir)
        metrics["margin_after"] = _margin(_trained(trainer), tokenizer, pairs)
    metrics["margin_before"] = margin_before
    metrics["examples"] = len(pairs) * params.epochs
    return metrics


def make_pairs(
    samples: Sequence[Any], scores: Sequence[Any], *, min_margin: float = 0.0
) -> list[dict[str, Any]]:
    """Preference pairs from scored samples: for each prompt with two or more samples,
    the highest-scored completion is ``chosen`` and the lowest ``rejected``; prompts whose
    best and worst scores differ by less than ``min_margin`` (or not at all) give none."""
    if len(samples) != len(scores):
        raise TrainError(
            f"data.pairs: {len(samples)} samples but {len(scores)} scores; "
            "give one score per sample, in the same order"
        )
    by_prompt: dict[str, list[tuple[float, str]]] = {}
    for i, (sample, score) in enumerate(zip(samples, scores, strict=True)):
        if not isinstance(sample, Mapping) or not isinstance(sample.get("prompt"), str):
            raise TrainError(f"data.pairs: sample {i} needs a string 'prompt'")
        if not isinstance(sample.get("completion"), str):
            raise TrainError(f"data.pairs: sample {i} needs a string 'completion'")
        number = isinstance(score, int | float) and not isinstance(score, bool)
        if not number or not math.isfinite(score):
            raise TrainError(f"data.pairs: score {i} must be a finite number, got {score!r}")
        by_prompt.setdefault(sample["prompt"], []).append((float(score), sample["completion"]))
    pairs: list[dict[str, Any]] = []
    for prompt, scored in by_prompt.items():
        if len(scored) < 2:
            continue
        best = max(scored, key=lambda s: s[0])
        worst = min(scored, key=lambda s: s[0])
        margin = best[0] - worst[0]
        if margin <= 0 or margin < min_margin or best[1] == worst[1]:
            continue
        pairs.append({"prompt": prompt, "chosen": best[1], "rejected": worst[1], "margin": margin})
    return pairs
