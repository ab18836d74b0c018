"""The oracle: a lower bound that runs only the unique work, with no fabric around it.

Per stage, the distinct items across every tenant (as the fabric's items are: records,
prompts, {prompt, completion} pairs, each tenant's filter, kept generations) go through
the worker's own executors (``create_executor``, models from ``resolve_model``), called
in this process, in chunks of each batch size of ``sizes``; each stage counts at the size
that was fastest. Models are loaded and each size called once before anything is timed.
Nothing is read from or written to a store: no inputs resolved, no results hashed or
fsynced, no Redis. CPU time is this thread's (torch at one thread computes in it).

Apart from its timings, ``run`` then writes every distinct result once to a blob store
(canonical JSON, as a worker writes it) and times that too: what one result write costs
on this machine, one of the things the fabric pays per item and the oracle does not.

This module must never count a model load, nor run an item twice within a timing.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.tenancy.workload import (
    EMBED_MODEL,
    FILTER_MIN_SCORE,
    GENERATE_MODEL,
    NODES,
    SCORE_MODEL,
    TEMPLATE,
    PromptPlan,
)
from flowmesh_core.blobs import BlobStore
from flowmesh_core.hashing import canonical_json
from flowmesh_core.models import ModelRef
from flowmesh_core.registry import Registry
from flowmesh_worker.executors import Batch, Executor, ItemError, Loaded, WorkItem, create_executor
from flowmesh_worker.weights import resolve_model

__all__ = ["Oracle", "OracleRun", "StageRun"]

# node -> (kind, model, params)
STAGES: dict[str, tuple[str, str | None, dict[str, Any]]] = {
    "prompts": ("data.template", None, {"template": TEMPLATE}),
    "generate": ("llm.generate", GENERATE_MODEL, {"temperature": 0.0}),
    "score": ("score", SCORE_MODEL, {}),
    "filter": ("data.filter", None, {"min_score": FILTER_MIN_SCORE}),
    "embed": ("embed", EMBED_MODEL, {"field": "completion"}),
}


@dataclass(frozen=True)
class StageRun:
    """One stage of the oracle at its best batch size."""

    node: str
    requested: int
    executed: int  # the distinct items
    size: int
    batches: int
    wall_s: float
    cpu_s: float


@dataclass(frozen=True)
class OracleRun:
    stages: tuple[StageRun, ...]
    writes: int = 0  # results written to the blob store after the timings
    write_wall_s: float = 0.0
    write_cpu_s: float = 0.0

    def total(self, name: str) -> float:
        return float(sum(getattr(s, name) for s in self.stages))


class _Stage:
    """One node's executor, model and params, ready to run."""

    def __init__(self, node: str, model_dir: Path, max_new_tokens: int) -> None:
        kind, model, params = STAGES[node]
        if kind == "llm.generate":
            params = {**params, "max_new_tokens": max_new_tokens}
        spec = Registry.default().get(kind)
        self.node, self.kind, self.version = node, kind, spec.version or "1"
        self.params = spec.normalize_params(params)
        self.ref = ModelRef(name=model) if model else None
        self.executor: Executor = create_executor(kind)
        self.loaded: Loaded | None = None
        if self.ref is not None:
            self.loaded = self.executor.load(resolve_model(self.ref, model_dir=model_dir), self.ref)

    def run(self, inputs: Sequence[dict[str, Any]], size: int) -> list[Any]:
        items = [WorkItem(f"oracle-{i}", x, self.params) for i, x in enumerate(inputs)]
        out: list[Any] = []
        for start in range(0, len(items), size):
            batch = Batch(self.kind, self.version, self.ref, items[start : start + size])
            out += self.executor.run(batch, self.loaded)
        if bad := [o for o in out if isinstance(o, ItemError)]:
            raise RuntimeError(f"oracle {self.node}: the executor failed an item: {bad[0]}")
        return out


class Oracle:
    """Every stage's executor, loaded once; ``run`` times a plan's unique work."""

    def __init__(
        self, model_dir: Path, max_new_tokens: int, sizes: Sequence[int], blobs: BlobStore
    ) -> None:
        self.sizes = tuple(sizes)
        self.stages = {node: _Stage(node, model_dir, max_new_tokens) for node in NODES}
        self.blobs = blobs

    def run(self, plan: PromptPlan) -> OracleRun:
        """The distinct items of each stage, each stage at its fastest batch size."""
        rows = [r for s in plan.sets for r in s]
        prompt, s1 = self._timed("prompts", [{"records": r} for r in rows])
        prompts = [prompt[_key({"records": r})] for r in rows]
        gen, s2 = self._timed("generate", [{"prompts": p} for p in prompts])
        gens = [gen[_key({"prompts": p})] for p in prompts]
        score, s3 = self._timed("score", [{"pairs": g} for g in gens])
        ends = [sum(len(s) for s in plan.sets[: t + 1]) for t in range(len(plan.sets))]
        mine = [gens[end - len(s) : end] for s, end in zip(plan.sets, ends, strict=True)]
        filters = [{"items": g, "scores": [score[_key({"pairs": x})] for x in g]} for g in mine]
        kept, s4 = self._timed("filter", filters)
        texts = [x for f in filters for x in kept[_key(f)]]
        vectors, s5 = self._timed("embed", [{"texts": x} for x in texts])
        results = [*prompt.values(), *gen.values(), *score.values(), *kept.values()]
        return OracleRun((s1, s2, s3, s4, s5), *self._write([*results, *vectors.values()]))

    def _write(self, results: list[Any]) -> tuple[int, float, float]:
        """Put each result in the blob store: (count, wall seconds, CPU seconds)."""
        wall, cpu = time.perf_counter(), time.thread_time()
        for result in results:
            self.blobs.put_bytes(canonical_json(result))
        return len(results), time.perf_counter() - wall, time.thread_time() - cpu

    def _timed(self, node: str, inputs: list[dict[str, Any]]) -> tuple[dict[bytes, Any], StageRun]:
        """The output of each distinct input (by its canonical JSON) and the best timing;
        ``inputs`` holds every tenant's, duplicates included (they count as requested)."""
        stage = self.stages[node]
        unique = {_key(x): x for x in inputs}
        work = list(unique.values())
        best: StageRun | None = None
        outputs: list[Any] = []
        for size in self.sizes if work else ():
            stage.run(work[:size], size)  # untimed: this shape's first call
            wall, cpu = time.perf_counter(), time.thread_time()
            outputs = stage.run(work, size)
            wall, cpu = time.perf_counter() - wall, time.thread_time() - cpu
            run = StageRun(node, len(inputs), len(work), size, -(-len(work) // size), wall, cpu)
            if best is None or run.wall_s < best.wall_s:
                best = run
        best = best or StageRun(node, len(inputs), 0, 0, 0, 0.0, 0.0)
        return dict(zip(unique, outputs, strict=True)), best


def _key(value: Any) -> bytes:
    return canonical_json(value)
