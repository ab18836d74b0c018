"""A post-training data pipeline as Dagster assets, each step run by FlowMesh.

    prompts      data.template  a prompt per topic record
    completions  llm.generate   flowmesh/tiny-gpt, two seeded samples per prompt
    scores       score          flowmesh/tiny-reward over each {prompt, completion}
    kept         data.filter    the completions whose reward clears `min_score`
    embeddings   embed          all-MiniLM-L6-v2 over the kept completions

Every asset is stored in FlowMesh's CAS by ``FlowMeshIOManager`` (its data version is its
content digest) and reaches the next step by digest (``CASRef``): the bytes stay in the
CAS, FlowMesh reads them where they lie. Run it against ``flowmesh up``; see README.md.
"""

# No `from __future__ import annotations`: Dagster reads these annotations as types.

from typing import Any

import dagster as dg

from flowmesh_dagster import CASRef, FlowMeshIOManager, FlowMeshResource

GENERATE_MODEL = "flowmesh/tiny-gpt"  # tiny random-weight models every worker builds
REWARD_MODEL = "flowmesh/tiny-reward"  # offline: name real ones for real text
EMBED_MODEL = "all-MiniLM-L6-v2"

TOPICS = [
    {"task": "Explain", "topic": "why rivers meander"},
    {"task": "Describe", "topic": "how a lighthouse lens focuses light"},
    {"task": "Summarize", "topic": "what makes sourdough rise"},
    {"task": "Explain", "topic": "how a hash table resolves collisions"},
    {"task": "List", "topic": "two ways bats find food in the dark"},
    {"task": "Describe", "topic": "the life cycle of a mayfly"},
]


class PipelineConfig(dg.Config):
    """Knobs a run may change from the launchpad."""

    samples: int = 2  # completions per prompt
    # Rewards are sigmoid-squashed into (0, 1). The tiny random-weight reward model gives
    # every completion about 0.49; with a real one, keep the best (e.g. 0.7).
    min_score: float = 0.0


@dg.asset(group_name="post_training")
def prompts(context: dg.AssetExecutionContext, flowmesh: FlowMeshResource) -> dg.Output[list[str]]:
    """One instruction per topic record, rendered by FlowMesh."""
    operator = {
        "kind": "data.template",
        "params": {"template": "{task} {topic} in one sentence."},
        "inputs": {"records": TOPICS},
    }
    return flowmesh.run(context, operator).output()


@dg.asset(group_name="post_training")
def completions(
    context: dg.AssetExecutionContext,
    config: PipelineConfig,
    flowmesh: FlowMeshResource,
    prompts: CASRef,
) -> dg.Output[list[dict[str, Any]]]:
    """Seeded samples per prompt: each {prompt, completion, tokens}."""
    operator = {
        "kind": "llm.generate",
        "model": GENERATE_MODEL,
        "params": {"max_new_tokens": 24, "temperature": 0.8, "seed": 7, "n": config.samples},
        "inputs": {"prompts": prompts.as_input()},
    }
    return flowmesh.run(context, operator).output()


@dg.asset(group_name="post_training")
def scores(
    context: dg.AssetExecutionContext, flowmesh: FlowMeshResource, completions: CASRef
) -> dg.Output[list[float]]:
    """A reward per completion (generate's items are score's {prompt, completion} pairs)."""
    operator = {
        "kind": "score",
        "model": REWARD_MODEL,
        "params": {"activation": "sigmoid"},
        "inputs": {"pairs": completions.as_input()},
    }
    return flowmesh.run(context, operator).output()


@dg.asset(group_name="post_training")
def kept(
    context: dg.AssetExecutionContext,
    config: PipelineConfig,
    flowmesh: FlowMeshResource,
    completions: CASRef,
    scores: CASRef,
) -> dg.Output[list[dict[str, Any]]]:
    """The completions whose reward is at least ``min_score``, in order."""
    operator = {
        "kind": "data.filter",
        "params": {"min_score": config.min_score},
        "inputs": {"items": completions.as_input(), "scores": scores.as_input()},
    }
    result = flowmesh.run(context, operator)
    context.log.info(f"kept {len(result.value)} completions")
    return result.output()


@dg.asset(group_name="post_training")
def embeddings(
    context: dg.AssetExecutionContext, flowmesh: FlowMeshResource, kept: CASRef
) -> dg.Output[list[list[float]]]:
    """A sentence embedding of each kept completion."""
    operator = {
        "kind": "embed",
        "model": EMBED_MODEL,
        "params": {"field": "completion"},
        "inputs": {"texts": kept.as_input()},
    }
    return flowmesh.run(context, operator).output()


defs = dg.Definitions(
    assets=[prompts, completions, scores, kept, embeddings],
    resources={
        # `flowmesh up` prints both variables; EnvVar keeps the token out of the UI.
        "flowmesh": FlowMeshResource(
            server_url=dg.EnvVar("FLOWMESH_SERVER_URL"), token=dg.EnvVar("FLOWMESH_TOKEN")
        ),
        # Uploads through the API as the same tenant, which then owns the stored assets
        # and may feed them to its operators by digest.
        "io_manager": FlowMeshIOManager(
            server_url=dg.EnvVar("FLOWMESH_SERVER_URL"), token=dg.EnvVar("FLOWMESH_TOKEN")
        ),
    },
)
