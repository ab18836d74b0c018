"""The ``llm.generate`` kind on CPU (or any torch device) with transformers.

One ``model.generate`` call per batch over left-padded prompts. Results must not depend
on what else is in the batch, since the control plane batches strangers' items together
and dedups on the item's key alone: greedy decoding is batch-invariant by itself, and
sampling is made so by giving every row its own ``torch.Generator``, seeded from the
item's ``seed`` and ``sample_index`` (``item_seed``), and sampling each row with it
inside a logits processor while ``generate`` itself runs greedily. This module must
never draw from torch's global RNG, nor let a model's generation_config defaults (a
temperature, a top_p) change what the params asked for.
"""

from __future__ import annotations

import bisect
import hashlib
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    GenerationConfig,
    LogitsProcessor,
    LogitsProcessorList,
)

from flowmesh_core.errors import InvalidOperatorError
from flowmesh_core.models import ModelRef
from flowmesh_worker.executors.base import Batch, Executor, ItemError, Loaded, WorkItem
from flowmesh_worker.weights.cache import nbytes_of

__all__ = ["GenerateExecutor", "RowSampler", "item_seed"]


def item_seed(seed: int, sample_index: int | None) -> int:
    """The RNG seed of one sampled item: a 63-bit hash of (``seed``, ``sample_index``).

    Shared by every ``llm.generate`` backend, so that an item's seed never depends on
    which engine runs it. ``None`` (an unsampled item) counts as sample 0.
    """
    text = f"flowmesh/llm.generate/{seed}/{sample_index or 0}".encode()
    return int.from_bytes(hashlib.sha256(text).digest()[:8], "big") >> 1


class RowSampler(LogitsProcessor):
    """Samples each row's next token with that row's own generator.

    Temperature, then top-k (every token tied with the k-th is kept), then top-p are
    applied to the whole batch (row-wise operations, so a row's result does not depend
    on the other rows); each row then draws one uniform number from its generator and
    picks its token by inverse CDF. The returned scores are ``-inf`` everywhere but the
    chosen token, so greedy ``generate`` simply takes it.
    """

    def __init__(
        self,
        generators: Sequence[torch.Generator],
        temperature: float,
        top_k: int | None,
        top_p: float,
    ) -> None:
        self.generators = list(generators)
        self.temperature = temperature
        self.top_k = top_k
        self.top_p = top_p

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        probs = self.filtered_probs(scores)
        draws = torch.cat(
            [
                torch.rand(1, generator=g, dtype=torch.float64, device=g.device)
                for g in self.generators
            ]
        )
        chosen = _inverse_cdf(probs, draws.to(probs.device))
        out = torch.full_like(scores, float("-inf"))
        out.scatter_(1, chosen.unsqueeze(1), 0.0)
        return out  # type: ignore[return-value]

    def filtered_probs(self, scores: torch.Tensor) -> torch.Tensor:
        """Each row's distribution after temperature, top-k and top-p (float64)."""
        logits = scores.double() / self.temperature
        if self.top_k is not None and self.top_k < logits.shape[-1]:
            kth = torch.topk(logits, self.top_k, dim=-1).values[:, -1:]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        probs = torch.softmax(logits, dim=-1)
        return _top_p(probs, self.top_p) if self.top_p < 1.0 else probs


def _top_p(probs: torch.Tensor, top_p: float) -> torch.Tensor:
    """Per row, the smallest prefix of tokens (by probability, ties by token id) whose
    mass reaches ``top_p``; the most likely token is always kept.

    Only the tokens that have mass are sorted (after top-k, a few dozen instead of the
    whole vocabulary). Taking more than a row's own count (the widest row sets it) adds
    only zeros after that row's tokens, so a row's result never depends on its batch.
    """
    vocab = probs.shape[-1]
    width = int((probs > 0).sum(dim=-1).max())
    if width < vocab:
        candidates = torch.sort(torch.topk(probs, width, dim=-1).indices, dim=-1).values
    else:
        candidates = torch.arange(vocab, device=probs.device).expand_as(probs)
    ordered, order = torch.sort(probs.gather(1, candidates), dim=-1, descending=True, stable=True)
    drop = (torch.cumsum(ordered, dim=-1) - ordered) >= top_p
    kept = torch.zeros_like(probs)
    return kept.scatter(1, candidates.gather(1, order), ordered.masked_fill(drop, 0.0))


def _inverse_cdf(probs: torch.Tensor, draws: torch.Tensor) -> torch.Tensor:
    """Per row, the token whose CDF interval holds ``draw`` (in [0, 1)) times the row's
    mass; never a token of probability zero."""
    cdf = torch.cumsum(probs, dim=-1)
    target = (draws * cdf[:, -1]).unsqueeze(1)
    index = torch.searchsorted(cdf, target, right=True).squeeze(1)
    # Rounding can put the target on the total mass: take the last token that has any.
    last = probs.shape[-1] - 1 - torch.argmax(torch.flip(probs > 0, dims=[-1]).int(), dim=-1)
    return torch.minimum(index, last)


class GenerateExecutor(Executor):
    """Completes prompts with a causal LM; one ``{prompt, completion, tokens}`` per item."""

    kind: ClassVar[str] = "llm.generate"
    needs_model: ClassVar[bool] = True

    def load(self, path: Path, model: ModelRef) -> Loaded:
        tokenizer = AutoTokenizer.from_pretrained(
            str(path), local_files_only=True, padding_side="left"
        )
        if tokenizer.pad_token is None:
            if tokenizer.eos_token is None:
                raise InvalidOperatorError(
                    f"model {model.key!r} has a tokenizer with neither a pad nor an eos "
                    "token, so its prompts cannot be batched: use a causal LM whose "
                    "tokenizer defines one"
                )
            tokenizer.pad_token = tokenizer.eos_token
        lm = AutoModelForCausalLM.from_pretrained(str(path), local_files_only=True)
        lm = lm.to(self.device).eval()  # type: ignore[arg-type]
        # One batch at a time per loaded model: a Rust tokenizer fails when two threads
        # use it at once, and two batches would only share the same cores anyway.
        extra = {"tokenizer": tokenizer, "lock": threading.Lock()}
        return Loaded(model=lm, nbytes=nbytes_of(lm), extra=extra)

    def run(self, batch: Batch, loaded: Loaded | None) -> list[Any]:
        assert loaded is not None, "llm.generate needs a model"
        with loaded.extra["lock"]:
            return self._run(batch, loaded)

    def _run(self, batch: Batch, loaded: Loaded) -> list[Any]:
        tokenizer = loaded.extra["tokenizer"]
        params = batch.params
        max_new = int(params["max_new_tokens"])
        outcomes: list[Any] = [
            _check_prompt(item, tokenizer, loaded.model, max_new) for item in batch.items
        ]
        rows = [i for i, outcome in enumerate(outcomes) if outcome is None]
        if not rows:
            return outcomes
        items = [batch.items[i] for i in rows]
        prompts = [str(item.inputs["prompts"]) for item in items]
        generated = self._generate(loaded, prompts, items, params)
        eos = _eos_ids(loaded.model)
        stop = [str(s) for s in params.get("stop") or []]
        for i, prompt, ids in zip(rows, prompts, generated, strict=True):
            completion, count = _finish(tokenizer, ids, eos, stop)
            outcomes[i] = {"prompt": prompt, "completion": completion, "tokens": count}
        return outcomes

    def _generate(
        self, loaded: Loaded, prompts: list[str], items: list[WorkItem], params: Any
    ) -> list[list[int]]:
        model = loaded.model
        tokenizer = loaded.extra["tokenizer"]
        encoded = tokenizer(prompts, return_tensors="pt", padding=True)
        input_ids = encoded["input_ids"].to(model.device)
        config = _generation_config(model, tokenizer, int(params["max_new_tokens"]))
        processors = LogitsProcessorList()
        temperature = float(params["temperature"])
        if temperature > 0:
            generators = [
                torch.Generator(device=model.device).manual_seed(
                    item_seed(int(item.params["seed"]), item.sample_index)
                )
                for item in items
            ]
            top_k = params.get("top_k")
            top_p = float(params.get("top_p", 1.0))
            processors.append(RowSampler(generators, temperature, top_k, top_p))
        with torch.inference_mode():
            out = model.generate(
                input_ids=input_ids,
                attention_mask=encoded["attention_mask"].to(model.device),
                generation_config=config,
                logits_processor=processors,
            )
        new_tokens: list[list[int]] = out[:, input_ids.shape[1] :].tolist()
        return new_tokens


def _check_prompt(item: WorkItem, tokenizer: Any, model: Any, max_new: int) -> ItemError | None:
    prompt = item.inputs.get("prompts")
    if not isinstance(prompt, str):
        shown = repr(prompt)[:60]
        return ItemError(
            f"llm.generate: each prompt must be a string, got {type(prompt).__name__} {shown}",
            deterministic=True,
        )
    length = len(tokenizer(prompt)["input_ids"])
    if length == 0:
        return ItemError(
            "llm.generate: the prompt is empty and this model adds no BOS token", deterministic=True
        )
    limit = getattr(model.config, "max_position_embeddings", None)
    if isinstance(limit, int) and length + max_new > limit:
        return ItemError(
            f"llm.generate: the prompt ({length} tokens) plus max_new_tokens ({max_new}) is "
            f"more than this model's context ({limit} tokens): shorten the prompt or lower "
            "max_new_tokens",
            deterministic=True,
        )
    return None


def _generation_config(model: Any, tokenizer: Any, max_new_tokens: int) -> GenerationConfig:
    """Greedy decoding with the model's special tokens and nothing else of its defaults."""
    defaults = model.generation_config
    return GenerationConfig(  # type: ignore[no-untyped-call]
        max_new_tokens=max_new_tokens,
        do_sample=False,
        num_beams=1,
        bos_token_id=defaults.bos_token_id,
        eos_token_id=defaults.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def _eos_ids(model: Any) -> set[int]:
    eos = model.generation_config.eos_token_id
    if eos is None:
        return set()
    return {int(eos)} if isinstance(eos, int) else {int(e) for e in eos}


def _finish(tokenizer: Any, ids: list[int], eos: set[int], stop: list[str]) -> tuple[str, int]:
    """The completion text and its token count: up to and including the first EOS, or
    up to the first stop string (cut out of the text, its tokens counted), whichever
    comes first. Counted this way, the vLLM backend reports the same number."""
    end = next((i + 1 for i, token in enumerate(ids) if token in eos), len(ids))
    ids = ids[:end]
    text: str = tokenizer.decode(ids, skip_special_tokens=True)
    cuts = [pos for pos in (text.find(s) for s in stop if s) if pos >= 0]
    if not cuts:
        return text, end

    def holds_stop(count: int) -> bool:
        prefix = tokenizer.decode(ids[:count], skip_special_tokens=True)
        return any(s and s in prefix for s in stop)

    count = bisect.bisect_left(range(end + 1), True, key=holds_stop)
    return text[: min(cuts)], min(count, end)
