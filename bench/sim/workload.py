"""Workloads shaped like the paper's: many tenants' post-training pipelines over shared prompts.

A workflow is a chain of stages. A batchable stage turns each upstream item into
``samples`` items (one per prompt at the first stage); a training stage is one operator
over everything upstream. An item's op key is built from its stage's signature and its
upstream key, so two tenants running the same stage over the same prompt produce the same
key (the dedup FlowMesh exploits), while a training run over a tenant's own mix of data
is that tenant's alone.

Templates (1B and 3B models, the paper's three pipeline shapes):
- ``sft``:   generate (3B) -> reward score (1B) -> SFT (1B)
- ``dpo``:   generate 2 samples (1B, sampled) -> reward score -> DPO (1B)
- ``chain``: draft (1B) -> critique (3B) -> rewrite (3B) -> embed (MiniLM)
"""

from __future__ import annotations

import hashlib
import math
import random
from dataclasses import dataclass

from bench.sim.hardware import Work

__all__ = [
    "ARRIVALS",
    "TEMPLATES",
    "Stage",
    "Submission",
    "Template",
    "item_keys",
    "make_submissions",
    "training_key",
]


@dataclass(frozen=True, slots=True)
class Stage:
    name: str
    work: Work
    params: str  # the params that enter the signature (a tag)
    samples: int = 1

    @property
    def signature(self) -> str:
        return f"{self.work.kind}/{self.work.model}/{self.params}"

    @property
    def training(self) -> bool:
        return self.work.kind.startswith("train.")


def training_key(stage: Stage, upstream: list[str]) -> str:
    """A training run's op key: its signature and the set of examples it trains on."""
    digest = hashlib.sha256("|".join(sorted(upstream)).encode()).hexdigest()[:16]
    return f"{stage.signature}:{digest}"


def item_keys(stage: Stage, upstream: list[str]) -> list[str]:
    """A batchable stage's op keys: one per upstream key and sample."""
    return [f"{stage.signature}:{u}#{s}" for u in upstream for s in range(stage.samples)]


@dataclass(frozen=True, slots=True)
class Template:
    name: str
    stages: tuple[Stage, ...]


def _gen(name: str, model: str, prompt: int, out: int, params: str, samples: int = 1) -> Stage:
    return Stage(name, Work("llm.generate", model, prompt, out), params, samples)


TEMPLATES: dict[str, Template] = {
    t.name: t
    for t in (
        Template(
            "sft",
            (
                _gen("generate", "llama-3.2-3b", 256, 256, "greedy-256"),
                Stage("score", Work("score", "rm-1b", 512), "rm"),
                Stage("sft", Work("train.sft", "llama-3.2-1b", 512), "sft-1ep"),
            ),
        ),
        Template(
            "dpo",
            (
                _gen("sample", "llama-3.2-1b", 256, 256, "t0.8-256", samples=2),
                Stage("score", Work("score", "rm-1b", 512), "rm"),
                # per pair: policy forward+backward on chosen and rejected (2 passes) and
                # the reference model's forward on both (2 x 1/3 of a training pass)
                Stage(
                    "dpo", Work("train.dpo", "llama-3.2-1b", 512, passes=2.0 + 2.0 / 3.0), "b0.1"
                ),
            ),
        ),
        Template(
            "chain",
            (
                _gen("draft", "llama-3.2-1b", 256, 256, "greedy-256"),
                _gen("critique", "llama-3.2-3b", 512, 128, "greedy-128"),
                _gen("rewrite", "llama-3.2-3b", 640, 256, "greedy-256"),
                Stage("embed", Work("embed", "minilm-l6", 256), "mean"),
            ),
        ),
    )
}


@dataclass(frozen=True, slots=True)
class Submission:
    time: float
    tenant: str
    template: Template
    prompts: tuple[int, ...]


def _fixed(n: int, horizon: float, rng: random.Random) -> list[float]:
    return [horizon * (i + 0.5) / n for i in range(n)]


def _ramp(n: int, horizon: float, rng: random.Random) -> list[float]:
    # arrival rate rising linearly from 0: the CDF is (t/H)^2
    return [horizon * math.sqrt((i + 0.5) / n) for i in range(n)]


def _bursty(n: int, horizon: float, rng: random.Random) -> list[float]:
    bursts = sorted(rng.uniform(0, horizon * 0.9) for _ in range(max(1, n // 16)))
    return sorted(rng.choice(bursts) + rng.expovariate(1 / 20.0) for _ in range(n))


ARRIVALS = {"fixed": _fixed, "ramp": _ramp, "bursty": _bursty}


def make_submissions(
    *,
    tenants: int,
    workflows_per_tenant: int,
    prompts: int,
    overlap: float,
    arrival: str,
    horizon_s: float,
    seed: int,
    templates: tuple[str, ...] = ("sft", "dpo", "chain"),
) -> list[Submission]:
    """Every submission of a scenario, in time order.

    Each workflow draws ``overlap`` of its ``prompts`` from a shared pool (four workflows'
    worth, so tenants overlap with each other, not only with themselves) and the rest
    fresh; tenant ``i`` runs template ``templates[i % len(templates)]``.
    """
    rng = random.Random(seed)
    shared_pool = list(range(4 * prompts))
    fresh = iter(range(len(shared_pool), 1 << 62))
    n = tenants * workflows_per_tenant
    times = ARRIVALS[arrival](n, horizon_s, rng)
    order = list(range(n))
    rng.shuffle(order)
    subs = []
    for slot, t in zip(order, times, strict=True):
        tenant = slot % tenants
        k = round(prompts * overlap)
        chosen = rng.sample(shared_pool, k) + [next(fresh) for _ in range(prompts - k)]
        template = TEMPLATES[templates[tenant % len(templates)]]
        subs.append(Submission(t, f"t{tenant:03d}", template, tuple(chosen)))
    subs.sort(key=lambda s: s.time)
    return subs
