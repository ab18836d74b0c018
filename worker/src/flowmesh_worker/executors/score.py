"""The ``score`` kind: a reward or classifier score per {prompt, completion} pair.

Each item is one pair, tokenized as a text pair (prompt, completion) and truncated to
``max_length``; the whole batch goes through the model in one forward pass. The score is
the model's last label: the only one of a reward model (``num_labels == 1``), the
"positive" class of a binary classifier. ``activation`` maps it: ``none`` (the raw
logit), ``sigmoid``, or ``softmax`` (over all labels, then the last label's probability;
meaningless with one label, so such items fail with an error saying to use ``sigmoid``).
This module must never guess a missing prompt or completion.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from flowmesh_core.models import ModelRef
from flowmesh_worker.executors.base import Batch, Executor, ItemError, Loaded
from flowmesh_worker.weights.cache import nbytes_of

__all__ = ["ScoreExecutor"]

_KEYS = ("prompt", "completion")


class ScoreExecutor(Executor):
    """Scores pairs with a sequence-classification model; one float per item."""

    kind: ClassVar[str] = "score"
    needs_model: ClassVar[bool] = True

    def load(self, path: Path, model: ModelRef) -> Loaded:
        tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        classifier = AutoModelForSequenceClassification.from_pretrained(
            str(path), local_files_only=True
        )
        classifier = classifier.to(self.device).eval()
        # One batch at a time per loaded model (a Rust tokenizer fails when shared).
        extra = {"tokenizer": tokenizer, "lock": threading.Lock()}
        return Loaded(model=classifier, nbytes=nbytes_of(classifier), extra=extra)

    def run(self, batch: Batch, loaded: Loaded | None) -> list[Any]:
        assert loaded is not None, "score needs a model"
        with loaded.extra["lock"]:
            return self._run(batch, loaded)

    def _run(self, batch: Batch, loaded: Loaded) -> list[Any]:
        activation = str(batch.params.get("activation", "none"))
        labels = int(loaded.model.config.num_labels)
        if activation == "softmax" and labels < 2:
            error = ItemError(
                "score: activation 'softmax' needs a model with two or more labels, and this "
                "one has one (a softmax over one label is always 1.0): use 'sigmoid' or 'none'",
                deterministic=True,
            )
            return [error] * len(batch.items)
        outcomes: list[Any] = [_pair_of(item.inputs) for item in batch.items]
        rows = [i for i, outcome in enumerate(outcomes) if isinstance(outcome, tuple)]
        if rows:
            pairs = [outcomes[i] for i in rows]
            scores = self._score(loaded, pairs, int(batch.params.get("max_length", 512)))
            for i, logits in zip(rows, scores, strict=True):
                outcomes[i] = _activate(logits, activation)
        return outcomes

    def _score(self, loaded: Loaded, pairs: list[tuple[str, str]], max_length: int) -> torch.Tensor:
        tokenizer = loaded.extra["tokenizer"]
        model_max = getattr(tokenizer, "model_max_length", None)
        if isinstance(model_max, int) and model_max < 1_000_000:
            # Longer inputs would overrun the model's position embeddings.
            max_length = min(max_length, model_max)
        encoded = tokenizer(
            [prompt for prompt, _ in pairs],
            [completion for _, completion in pairs],
            truncation=True,
            max_length=max_length,
            padding=True,
            return_tensors="pt",
        )
        device = loaded.model.device
        with torch.inference_mode():
            logits: torch.Tensor = loaded.model(
                **{k: v.to(device) for k, v in encoded.items()}
            ).logits
        return logits.float().cpu()


def _pair_of(inputs: Mapping[str, Any]) -> tuple[str, str] | ItemError:
    pair = inputs.get("pairs")
    if not isinstance(pair, dict):
        return ItemError(
            "score: each pair must be an object {prompt: ..., completion: ...}, "
            f"got {type(pair).__name__} {repr(pair)[:60]}",
            deterministic=True,
        )
    for key in _KEYS:
        if key not in pair:
            return ItemError(
                f"score: the pair has no {key!r} (it has: {', '.join(sorted(pair)) or 'none'}); "
                "each pair needs string 'prompt' and 'completion' keys",
                deterministic=True,
            )
        if not isinstance(pair[key], str):
            return ItemError(
                f"score: the pair's {key!r} must be a string, got {type(pair[key]).__name__}",
                deterministic=True,
            )
    return pair["prompt"], pair["completion"]


def _activate(logits: torch.Tensor, activation: str) -> float:
    if activation == "softmax":
        return float(torch.softmax(logits, dim=-1)[-1])
    last = logits[-1]
    if activation == "sigmoid":
        return float(torch.sigmoid(last))
    return float(last)
