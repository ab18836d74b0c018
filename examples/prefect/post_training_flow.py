"""A post-training data pipeline as a Prefect flow whose steps run on FlowMesh.

    generate -> score -> filter -> embed -> report

``generate`` completes each prompt with a small causal LM, ``score`` rates every
(prompt, completion) pair with a reward model, ``keep`` keeps the pairs whose reward is
at least ``min_score``, and ``embed`` embeds the kept completions (for dedup or retrieval
downstream). Each step is a ``@flowmesh_task``: one Prefect task run, one FlowMesh
operator. The steps return references (``returns="reference"``): a ``FlowMeshRef`` holds
the result's digest, and passing it to the next task makes that digest the next
operator's input, so no payload passes through Prefect. ``report`` reads back only what
it prints.

The models are ``flowmesh/tiny-gpt`` and ``flowmesh/tiny-reward`` (tiny random-weight
models every FlowMesh worker builds offline; their text is meaningless) and the real
all-MiniLM-L6-v2. Pass real model names (a local path or a Hugging Face cache entry) as
flow parameters for real text. See README.md beside this file to run it.
"""

from __future__ import annotations

from prefect import flow, task
from prefect.tasks import TaskOptions

from flowmesh_prefect import FlowMeshRef, computed_on_flowmesh, flowmesh_task

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

# No credentials= below: the tasks read FLOWMESH_SERVER_URL and FLOWMESH_TOKEN (what
# `flowmesh up` prints). Pass credentials="my-block" to use a saved FlowMeshCredentials.
# A retry re-attaches to the submission its task run already made, so retrying is cheap.
RETRY: TaskOptions = {"retries": 2, "retry_delay_seconds": 5}


@flowmesh_task(
    kind="llm.generate",
    returns="reference",
    call_params=["model", "max_new_tokens"],
    task_options=RETRY,
)
def generate(prompts: list[str], model: str, max_new_tokens: int) -> FlowMeshRef:
    """A completion per prompt: ``{prompt, completion, tokens}``."""
    return computed_on_flowmesh()


@flowmesh_task(
    kind="score",
    returns="reference",
    activation="sigmoid",
    call_params=["model"],
    task_options=RETRY,
)
def score(pairs: FlowMeshRef, model: str) -> FlowMeshRef:
    """A reward in (0, 1) per {prompt, completion} pair (generate's items are such pairs)."""
    return computed_on_flowmesh()


@flowmesh_task(
    kind="data.filter", returns="reference", call_params=["min_score"], task_options=RETRY
)
def keep(items: FlowMeshRef, scores: FlowMeshRef, min_score: float) -> FlowMeshRef:
    """The items whose score is at least ``min_score``."""
    return computed_on_flowmesh()


@flowmesh_task(
    kind="embed",
    returns="reference",
    field="completion",
    call_params=["model"],
    task_options=RETRY,
)
def embed(texts: FlowMeshRef, model: str) -> FlowMeshRef:
    """An embedding of each kept item's completion."""
    return computed_on_flowmesh()


@task
def report(generated: FlowMeshRef, kept: FlowMeshRef, embedded: FlowMeshRef) -> str:
    """Read the kept pairs back (small); the embeddings stay in FlowMesh's CAS."""
    pairs = kept.load()  # the value, read with the same FLOWMESH_* settings
    line = (
        f"kept {len(pairs)} of {generated.items} completions; {embedded.items} embeddings "
        f"at {embedded.digest} (generate: {generated.satisfied_by}, embed: "
        f"{embedded.satisfied_by})"
    )
    print(line)
    return line


@flow(name="flowmesh-post-training", log_prints=True)
def post_training(
    prompts: list[str] = PROMPTS,
    generator: str = "flowmesh/tiny-gpt",
    reward_model: str = "flowmesh/tiny-reward",
    embedder: str = "sentence-transformers/all-MiniLM-L6-v2",
    max_new_tokens: int = 32,
    # tiny-reward's scores (random weights) all lie near 0.4889: this bar keeps about
    # half of them. With a real reward model, set the bar your data needs.
    min_score: float = 0.48892,
) -> str:
    """generate -> score -> filter -> embed on FlowMesh, then a one-line report."""
    # Each step needs the one before: plain calls (a task run each) chain the references.
    completions = generate(prompts, model=generator, max_new_tokens=max_new_tokens)
    rewards = score(completions, model=reward_model)
    kept = keep(completions, rewards, min_score=min_score)
    vectors = embed(kept, model=embedder)
    return report(completions, kept, vectors)


if __name__ == "__main__":
    post_training()
