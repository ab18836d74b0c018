"""The ``train.sft``, ``train.lora`` and ``train.dpo`` executors, on TRL and PEFT.

Each item trains on its own: the base model directory (resolved by the worker, a named
model or a checkpoint materialised from the CAS), the item's ``dataset`` and its typed
params (``flowmesh_core.builtin_kinds``). It trains on this process's device, writes the
result with ``save_pretrained`` (a full model, or a LoRA adapter) into a scratch
directory and returns it as a ``Checkpoint``, which the worker stores in the CAS as a
tree of file blobs (docs/training.md). Metrics measured on the training data before and
after (completion NLL for SFT, preference margin for DPO) travel in the tree.

These executors never touch Redis or the CAS, and never modify the base directory: the
model is loaded fresh for every item (training mutates it), so ``load`` only hands the
path on.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar, Literal

from flowmesh_core.builtin_kinds import DpoParams, LoraParams, SftParams, TrainParams
from flowmesh_core.models import ModelRef
from flowmesh_worker.executors.base import (
    Batch,
    Checkpoint,
    Executor,
    ItemError,
    Loaded,
    Resumable,
    WorkItem,
)
from flowmesh_worker.weights.checkpoints import merge_adapter

__all__ = [
    "DpoExecutor",
    "DpoParams",
    "LoraExecutor",
    "LoraParams",
    "SftExecutor",
    "SftParams",
    "TrainError",
    "train_dpo",
    "train_sft",
]


class TrainError(ValueError):
    """Bad training input: the message says what to fix."""


Report = Callable[[Mapping[str, Any]], None]


def _progress(report: Report | None) -> list[Any]:
    """A trainer callback that reports step, steps, loss and ETA at every logged step."""
    if report is None:
        return []
    from transformers import TrainerCallback

    class Progress(TrainerCallback):
        started = time.monotonic()

        def on_log(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            loss = (kwargs.get("logs") or {}).get("loss")
            step, steps = int(state.global_step), int(state.max_steps)
            if loss is None or step <= 0:
                return
            per_step = (time.monotonic() - self.started) / step
            eta = round(per_step * max(steps - step, 0), 3)
            assert report is not None
            report({"step": step, "steps": steps, "loss": float(loss), "eta_s": eta})

    return [Progress()]


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


def _saver(checkpoints: Resumable | None) -> list[Any]:
    """A trainer callback that hands each checkpoint the trainer saved to ``checkpoints``."""
    if checkpoints is None:
        return []
    from transformers import TrainerCallback

    class Saver(TrainerCallback):
        def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            step = int(state.global_step)
            if step >= int(state.max_steps):
                return  # the trainer's save at the end: the result itself follows
            assert checkpoints is not None
            checkpoints.save(Path(args.output_dir) / f"checkpoint-{step}", step)

    return [Saver()]


def _resume(trainer: Any, out_dir: Path, checkpoints: Resumable | None) -> int:
    """Train, from the item's latest intermediate checkpoint if it has one; its step."""
    start = checkpoints.latest(out_dir.parent / "resume") if checkpoints else None
    trainer.train(resume_from_checkpoint=str(start[0]) if start else None)
    return start[1] if start else 0


def _common_args(
    params: TrainParams, out_dir: Path, device: str, *, saving: bool = False
) -> dict[str, Any]:
    """The trainer's arguments; ``saving``: a checkpoint every ``checkpoint_every`` steps
    (only the latest kept on disk: the CAS holds them)."""
    saves: dict[str, Any] = {"save_strategy": "no"}
    if saving and params.checkpoint_every > 0:
        saves = {
            "save_strategy": "steps",
            "save_steps": params.checkpoint_every,
            "save_total_limit": 1,
        }
    return {
        **saves,
        "output_dir": str(out_dir / ".trainer"),
        "learning_rate": params.learning_rate,
        "num_train_epochs": params.epochs,
        "per_device_train_batch_size": params.batch_size,
        "max_length": params.max_length,
        "seed": params.seed,
        "data_seed": params.seed,
        "use_cpu": device == "cpu",
        "report_to": [],
        "logging_steps": 1,
        "disable_tqdm": True,
        # TRL defaults to checkpointing activations through the deprecated name; tiny
        # models do not need it, and a GPU run with big ones can turn it on later.
        "gradient_checkpointing": None,
        "activation_checkpointing": False,
    }


def _fit(trainer: Any, out_dir: Path, checkpoints: Resumable | None) -> dict[str, Any]:
    """Train (from the latest saved state, if any), save the model: the run's metrics."""
    resumed = _resume(trainer, out_dir, checkpoints)
    return {**_finish(trainer, out_dir), "resumed_from_step": resumed}


@contextmanager
def _quiet_renamed_property() -> Iterator[None]:
    with warnings.catch_warnings():
        # PEFT and TRL read a property that this transformers release renamed (its own
        # FutureWarning, not ours to act on).
        warnings.filterwarnings(
            "ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning
        )
        yield


def _finish(trainer: Any, out_dir: Path) -> dict[str, Any]:
    history = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    trainer.save_model(str(out_dir))
    trainer.processing_class.save_pretrained(str(out_dir))
    shutil.rmtree(out_dir / ".trainer", ignore_errors=True)  # the trainer's own scratch
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
    report: Report | None = None,
    checkpoints: Resumable | None = None,
) -> dict[str, Any]:
    """Supervised fine-tuning on {prompt, completion} examples (loss on completions only).

    With ``LoraParams`` only a LoRA adapter is trained and ``out_dir`` holds the
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
    if isinstance(params, LoraParams):
        from peft import LoraConfig

        peft_config = LoraConfig(
            r=params.lora_r,
            lora_alpha=params.lora_alpha,
            lora_dropout=params.lora_dropout,
            target_modules="all-linear",
            task_type="CAUSAL_LM",
        )
    common = _common_args(params, out_dir, device, saving=checkpoints is not None)
    args = SFTConfig(**common, completion_only_loss=True)
    with _quiet_renamed_property():
        trainer = SFTTrainer(
            model=model,
            args=args,
            train_dataset=Dataset.from_list(examples),
            processing_class=tokenizer,
            peft_config=peft_config,
            callbacks=[*_progress(report), *_saver(checkpoints)],
        )
        metrics = _fit(trainer, out_dir, checkpoints)
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
    report: Report | None = None,
    checkpoints: Resumable | None = None,
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
        **_common_args(params, out_dir, device, saving=checkpoints is not None),
        beta=params.beta,
        loss_type=[params.loss_type],
    )
    with _quiet_renamed_property():
        trainer = DPOTrainer(
            model=model,
            args=args,
            train_dataset=Dataset.from_list(pairs),
            processing_class=tokenizer,
            callbacks=[*_progress(report), *_saver(checkpoints)],
        )
        metrics = _fit(trainer, out_dir, checkpoints)
        metrics["margin_after"] = _margin(_trained(trainer), tokenizer, pairs)
    metrics["margin_before"] = margin_before
    metrics["examples"] = len(pairs) * params.epochs
    return metrics


class _TrainExecutor(Executor):
    """One training run per item; the result is a ``Checkpoint`` for the worker to store."""

    needs_model: ClassVar[bool] = True
    format: ClassVar[Literal["full", "lora"]] = "full"
    params_model: ClassVar[type[TrainParams]]

    def load(self, path: Path, model: ModelRef) -> Loaded:
        return Loaded(model=path, nbytes=0)

    def run(self, batch: Batch, loaded: Loaded | None) -> list[Any]:
        assert loaded is not None, f"{self.kind} needs a base model"
        return [self._one(item, loaded.model, batch.model) for item in batch.items]

    def _one(self, item: WorkItem, base: Path, model: ModelRef | None) -> Checkpoint | ItemError:
        rows = item.inputs.get("dataset")
        if not isinstance(rows, list):
            return ItemError(
                f"{self.kind}: input 'dataset' must be a list of examples (a list, a JSON "
                f"blob holding one, or another node's output), got {type(rows).__name__}"
            )
        params = self.params_model.model_validate(dict(item.params))
        scratch = Path(tempfile.mkdtemp(prefix="flowmesh-train-"))
        out = scratch / "model"
        try:
            metrics = self._train(base, out, rows, params, item)
        except TrainError as exc:
            shutil.rmtree(scratch, ignore_errors=True)
            return ItemError(str(exc))
        except BaseException:
            shutil.rmtree(scratch, ignore_errors=True)
            raise
        metrics.pop("runtime_s", None)  # wall time is no property of the checkpoint
        if self.format == "lora" and model is not None:
            _name_base(out, model)
        if isinstance(params, LoraParams) and params.merge:
            merged = scratch / "merged"
            merge_adapter(base, out, merged)
            return Checkpoint(merged, scratch, "full", model, {**metrics, "merged": True})
        return Checkpoint(out, scratch, self.format, model, metrics)

    def _train(
        self, base: Path, out: Path, rows: Sequence[Any], params: TrainParams, item: WorkItem
    ) -> dict[str, Any]:
        raise NotImplementedError


def _name_base(adapter: Path, model: ModelRef) -> None:
    """Record the base by its reference, not this worker's local path: the path means
    nothing elsewhere and would make the same adapter's bytes differ between workers."""
    path = adapter / "adapter_config.json"
    config = json.loads(path.read_text())
    config["base_model_name_or_path"] = model.key
    path.write_text(json.dumps(config, indent=2, sort_keys=True))


class SftExecutor(_TrainExecutor):
    """``train.sft``: every weight fine-tuned on {prompt, completion} examples."""

    kind: ClassVar[str] = "train.sft"
    params_model: ClassVar[type[TrainParams]] = SftParams

    def _train(
        self, base: Path, out: Path, rows: Sequence[Any], params: TrainParams, item: WorkItem
    ) -> dict[str, Any]:
        assert isinstance(params, SftParams)
        return train_sft(
            base, out, rows, params, device=self.device, report=item.report,
            checkpoints=item.checkpoints,
        )  # fmt: skip


class LoraExecutor(SftExecutor):
    """``train.lora``: a LoRA adapter trained on {prompt, completion} examples."""

    kind: ClassVar[str] = "train.lora"
    format: ClassVar[Literal["full", "lora"]] = "lora"
    params_model: ClassVar[type[TrainParams]] = LoraParams


class DpoExecutor(_TrainExecutor):
    """``train.dpo``: preference optimisation on {prompt, chosen, rejected} pairs."""

    kind: ClassVar[str] = "train.dpo"
    params_model: ClassVar[type[TrainParams]] = DpoParams

    def _train(
        self, base: Path, out: Path, rows: Sequence[Any], params: TrainParams, item: WorkItem
    ) -> dict[str, Any]:
        assert isinstance(params, DpoParams)
        return train_dpo(
            base, out, rows, params, device=self.device, report=item.report,
            checkpoints=item.checkpoints,
        )  # fmt: skip
