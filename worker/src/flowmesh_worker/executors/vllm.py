"""The ``llm.generate`` kind on a GPU with vLLM: same params, same result shape as the
transformers executor, one ``LLM.generate`` call per batch.

Each item gets its own ``SamplingParams`` whose seed is ``item_seed`` of its ``seed``
and ``sample_index``, exactly as on CPU, so vLLM's per-request seeded sampling keeps the
batch invariance that dedup relies on. (The same seed does not make vLLM and
transformers draw the same tokens: engines differ; the op key names the model, not the
engine.) vLLM is not a dependency of this package: it is imported only in ``load``, and
this module must never import it at module level.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from flowmesh_core.errors import ConfigError
from flowmesh_core.models import ModelRef
from flowmesh_worker.executors.base import Batch, Executor, ItemError, Loaded, WorkItem
from flowmesh_worker.executors.generate import item_seed

__all__ = ["VllmGenerateExecutor"]


class VllmGenerateExecutor(Executor):
    """Completes prompts with vLLM; one ``{prompt, completion, tokens}`` per item."""

    kind: ClassVar[str] = "llm.generate"
    needs_model: ClassVar[bool] = True

    def load(self, path: Path, model: ModelRef) -> Loaded:
        try:
            import vllm
        except ImportError as exc:
            raise ConfigError(
                "this worker is set to run llm.generate with vLLM, but vllm is not "
                "installed: `pip install vllm` on a GPU machine (it brings its own CUDA "
                "build of torch), or set worker_generate_backend to transformers"
            ) from exc
        llm = vllm.LLM(model=str(path))
        return Loaded(
            model=llm, nbytes=_weights_on_disk(path), extra={"sampling_params": vllm.SamplingParams}
        )

    def run(self, batch: Batch, loaded: Loaded | None) -> list[Any]:
        assert loaded is not None, "llm.generate needs a model"
        outcomes: list[Any] = [_check_prompt(item) for item in batch.items]
        rows = [i for i, outcome in enumerate(outcomes) if outcome is None]
        if not rows:
            return outcomes
        make = loaded.extra["sampling_params"]
        prompts = [str(batch.items[i].inputs["prompts"]) for i in rows]
        params = [make(**_sampling_kwargs(batch.items[i])) for i in rows]
        results = loaded.model.generate(prompts, params, use_tqdm=False)
        for i, prompt, result in zip(rows, prompts, results, strict=True):
            best = result.outputs[0]
            outcomes[i] = {
                "prompt": prompt,
                "completion": best.text,
                "tokens": len(best.token_ids),
            }
        return outcomes


def _sampling_kwargs(item: WorkItem) -> dict[str, Any]:
    p = item.params
    kwargs: dict[str, Any] = {
        "n": 1,
        "temperature": float(p["temperature"]),
        "max_tokens": int(p["max_new_tokens"]),
        "stop": list(p.get("stop") or []) or None,
    }
    if kwargs["temperature"] > 0:
        kwargs["top_p"] = float(p.get("top_p", 1.0))
        kwargs["top_k"] = int(p["top_k"]) if p.get("top_k") else 0
        kwargs["seed"] = item_seed(int(p["seed"]), item.sample_index)
    return kwargs


def _weights_on_disk(path: Path) -> int:
    """The size of the weight files: what the warm cache budgets. (vLLM also reserves
    most of the GPU for its KV cache up front; that is the engine's, not the model's.)"""
    files = [*path.glob("*.safetensors"), *path.glob("*.bin")]
    return sum(f.stat().st_size for f in files)


def _check_prompt(item: WorkItem) -> ItemError | None:
    prompt = item.inputs.get("prompts")
    if isinstance(prompt, str):
        return None
    return ItemError(
        f"llm.generate: each prompt must be a string, got {type(prompt).__name__} "
        f"{repr(prompt)[:60]}"
    )
