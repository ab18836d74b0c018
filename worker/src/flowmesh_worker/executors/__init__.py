"""Executors by kind. Each is imported only when a batch of its kind first arrives, so a
worker that only runs ``data.*`` never imports torch."""

from __future__ import annotations

import importlib
from collections.abc import Mapping

from flowmesh_core.errors import UnknownKindError
from flowmesh_worker.executors.base import (
    Batch,
    Checkpoint,
    Executor,
    ItemError,
    Loaded,
    WorkItem,
)

__all__ = [
    "EXECUTORS",
    "Batch",
    "Checkpoint",
    "Executor",
    "ItemError",
    "Loaded",
    "WorkItem",
    "create_executor",
]

EXECUTORS: Mapping[str, str] = {
    "embed": "flowmesh_worker.executors.embed:EmbedExecutor",
    "llm.generate": "flowmesh_worker.executors.generate:GenerateExecutor",
    "score": "flowmesh_worker.executors.score:ScoreExecutor",
    "data.template": "flowmesh_worker.executors.data:TemplateExecutor",
    "data.filter": "flowmesh_worker.executors.data:FilterExecutor",
    "data.dedup": "flowmesh_worker.executors.data:DedupExecutor",
    "data.top_k": "flowmesh_worker.executors.data:TopKExecutor",
    "data.pairs": "flowmesh_worker.executors.data:PairsExecutor",
    "train.sft": "flowmesh_worker.executors.train:SftExecutor",
    "train.lora": "flowmesh_worker.executors.train:LoraExecutor",
    "train.dpo": "flowmesh_worker.executors.train:DpoExecutor",
    "python": "flowmesh_worker.executors.python:PythonExecutor",
}
"""kind -> "module:class" of the executor that runs it."""

VLLM_GENERATE = "flowmesh_worker.executors.vllm:VllmGenerateExecutor"


def create_executor(
    kind: str,
    *,
    device: str = "cpu",
    python_modules: tuple[str, ...] = (),
    generate_backend: str = "transformers",
) -> Executor:
    """A new executor for ``kind`` on ``device``.

    ``python_modules`` is the allow-list of the ``python`` kind; ``generate_backend``
    picks ``transformers`` or ``vllm`` for ``llm.generate``.
    """
    target = EXECUTORS.get(kind)
    if kind == "llm.generate" and generate_backend == "vllm":
        target = VLLM_GENERATE
    if target is None:
        raise UnknownKindError(f"this worker has no executor for kind {kind!r}")
    module_name, class_name = target.split(":")
    cls: type[Executor] = getattr(importlib.import_module(module_name), class_name)
    if kind == "python":
        return cls(device=device, allowed_modules=python_modules)  # type: ignore[call-arg]
    return cls(device=device)
