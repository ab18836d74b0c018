"""A post-training data pipeline as an Airflow DAG whose steps run on FlowMesh.

    generate -> score -> filter -> embed -> report

``generate`` completes each prompt with a small causal LM, ``score`` rates every
(prompt, completion) pair with a reward model, ``filter`` keeps the pairs whose reward is
at least ``min_score``, and ``embed`` embeds the kept completions (for dedup or retrieval
downstream). Each step is one deferrable ``FlowMeshOperator``: while FlowMesh works, the
task waits in Airflow's triggerer, not in a worker slot. Steps hand each other results by
reference: a task's XCom holds its result's digest, and the next task's operator names
that digest as a ``{"blob": ...}`` input, so no payload passes through Airflow.

The models are ``flowmesh/tiny-gpt`` and ``flowmesh/tiny-reward`` (tiny random-weight models
every FlowMesh worker builds offline; their text is meaningless) and the real
all-MiniLM-L6-v2. Put real model names (a local path or a Hugging Face cache entry) in
``params`` for real text. See README.md beside this file to run it.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import DAG, Param, task

from flowmesh_airflow import FlowMeshHook, FlowMeshOperator

PROMPTS = [
    "Explain what a content-addressable store is, in one sentence.",
    "Give one reason to batch inference requests.",
    "Describe gradient checkpointing to a new engineer.",
    "What is the difference between greedy decoding and sampling?",
    "Summarise why reward models are used in RLHF.",
    "Name a risk of training on model-generated data.",
    "Why deduplicate a fine-tuning dataset?",
    "Explain top-k filtering of generated samples.",
]


def result_of(task_id: str) -> dict[str, str]:
    """An operator input that names ``task_id``'s result by digest (resolved at run time)."""
    return {"blob": f"{{{{ ti.xcom_pull(task_ids='{task_id}')['result_digest'] }}}}"}


with DAG(
    dag_id="flowmesh_post_training",
    description="generate -> score -> filter -> embed on FlowMesh",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    # Jinja renders to native values, so the params below stay numbers inside the specs.
    render_template_as_native_obj=True,
    params={
        "generator": Param("flowmesh/tiny-gpt", type="string"),
        "reward_model": Param("flowmesh/tiny-reward", type="string"),
        "embedder": Param("sentence-transformers/all-MiniLM-L6-v2", type="string"),
        "max_new_tokens": Param(32, type="integer", minimum=1),
        # tiny-reward's scores (random weights) all lie near 0.4889: this bar keeps about
        # half of them. With a real reward model, set the bar your data needs.
        "min_score": Param(0.48892, type="number"),
    },
    # A retry re-attaches to the submission its task already made, so retrying is cheap.
    default_args={
        "flowmesh_conn_id": "flowmesh_default",
        # Wait in the triggerer whatever [operators] default_deferrable says.
        "deferrable": True,
        "retries": 2,
        "retry_delay": timedelta(seconds=10),
    },
    tags=["flowmesh", "post-training"],
):
    generate = FlowMeshOperator(
        task_id="generate",
        operator={
            "kind": "llm.generate",
            "model": "{{ params.generator }}",
            "params": {"max_new_tokens": "{{ params.max_new_tokens }}"},
            "inputs": {"prompts": PROMPTS},
        },
    )
    score = FlowMeshOperator(
        task_id="score",
        operator={
            "kind": "score",
            "model": "{{ params.reward_model }}",
            "params": {"activation": "sigmoid"},
            # generate's items are {prompt, completion, tokens}: the pairs score reads.
            "inputs": {"pairs": result_of("generate")},
        },
    )
    keep = FlowMeshOperator(
        task_id="filter",
        operator={
            "kind": "data.filter",
            "params": {"min_score": "{{ params.min_score }}"},
            "inputs": {"items": result_of("generate"), "scores": result_of("score")},
        },
    )
    embed = FlowMeshOperator(
        task_id="embed",
        operator={
            "kind": "embed",
            "model": "{{ params.embedder }}",
            "params": {"field": "completion"},
            "inputs": {"texts": result_of("filter")},
        },
    )

    @task
    def report(generated: dict[str, Any], kept: dict[str, Any], embedded: dict[str, Any]) -> str:
        """Read the small results back through the hook; the embeddings stay in FlowMesh."""
        pairs = FlowMeshHook("flowmesh_default").read(kept)
        line = (
            f"kept {len(pairs)} of {generated['items']['total']} completions; "
            f"{embedded['items']['total']} embeddings at {embedded['result_digest']} "
            f"(generate: {generated['satisfied_by']}, embed: {embedded['satisfied_by']})"
        )
        print(line)
        return line

    generate >> score >> keep >> embed
    report(generate.output, keep.output, embed.output)
