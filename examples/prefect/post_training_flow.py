"""Post-training pipelines as Prefect flows whose steps run on FlowMesh.

``post_training`` (the default) is the data pipeline::

    generate -> score -> filter -> embed -> report

``sft`` (``python post_training_flow.py sft``) fine-tunes on the best generations and
generates with the result (docs/training.md)::

    generate -> score -> best -> fine_tune -> generate with the checkpoint -> sft_report

``dpo`` (``python post_training_flow.py dpo``) turns two samples per prompt into
preference pairs and trains on them::

    sample (2 per prompt) -> score -> pairs -> preference_tune -> dpo_report

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

In ``sft``, ``best`` keeps the ``k`` best-scored completions (``data.top_k``), and
``fine_tune`` (``train.sft``) trains the base model on them; its result is a checkpoint
tree in FlowMesh's CAS, and its digest is the ``model`` of the last generation, which a
worker materialises (every file verified) and loads like any model. The tenant may name
that checkpoint because its own lineage holds it. The same run asked for again, by this
flow or another tenant's, is a cache hit or joins the run in flight: it trains once.

In ``dpo``, ``pairs`` (``data.pairs``) makes per prompt the better-scored sample
"chosen" and the worse "rejected", and ``preference_tune`` (``train.dpo``) runs direct
preference optimisation on them, the base model being the frozen reference.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

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


@flowmesh_task(kind="data.top_k", returns="reference", call_params=["k"], task_options=RETRY)
def best(items: FlowMeshRef, scores: FlowMeshRef, k: int) -> FlowMeshRef:
    """The ``k`` items with the highest scores: ``{prompt, completion}`` examples."""
    return computed_on_flowmesh()


@flowmesh_task(
    kind="train.sft",
    returns="reference",
    call_params=["model", "epochs", "learning_rate", "seed"],
    batch_size=4,
    task_options=RETRY,
)
def fine_tune(
    dataset: FlowMeshRef, model: str, epochs: int, learning_rate: float, seed: int
) -> FlowMeshRef:
    """Supervised fine-tuning of ``model`` on ``dataset``: a checkpoint tree in the CAS."""
    return computed_on_flowmesh()


@task
def sft_report(examples: FlowMeshRef, checkpoint: FlowMeshRef, answers: FlowMeshRef) -> str:
    """Read back the checkpoint's metrics and the trained model's answers (small)."""
    # Each value is read with the same FLOWMESH_* settings as the tasks.
    dataset, replies = examples.load(), answers.load()
    metrics = checkpoint.load()["metrics"]  # a checkpoint tree is a JSON document
    line = (
        f"fine-tuned on {len(dataset)} examples ({checkpoint.satisfied_by}): completion "
        f"NLL {metrics['nll_before']:.3f} -> {metrics['nll_after']:.3f}; checkpoint "
        f"{checkpoint.digest} answered {len(replies)} prompt(s), first: "
        f"{replies[0]['completion']!r}"
    )
    print(line)
    return line


SFT_QUESTIONS = ["Explain what a checkpoint tree is, in one sentence."]


@flow(name="flowmesh-sft", log_prints=True)
def sft(
    prompts: list[str] = PROMPTS,
    questions: list[str] = SFT_QUESTIONS,
    base_model: str = "flowmesh/tiny-gpt",
    reward_model: str = "flowmesh/tiny-reward",
    k: int = 4,
    epochs: int = 2,
    learning_rate: float = 5e-4,
    seed: int = 0,
    max_new_tokens: int = 32,
) -> str:
    """generate -> score -> top k -> SFT -> generate with the checkpoint, on FlowMesh."""
    completions = generate(prompts, model=base_model, max_new_tokens=max_new_tokens)
    rewards = score(completions, model=reward_model)
    examples = best(completions, rewards, k=k)
    checkpoint = fine_tune(
        examples, model=base_model, epochs=epochs, learning_rate=learning_rate, seed=seed
    )
    # A checkpoint digest is a model: the next generation runs on the fine-tuned weights.
    answers = generate(questions, model=checkpoint.digest, max_new_tokens=max_new_tokens)
    return sft_report(examples, checkpoint, answers)


@flowmesh_task(
    kind="llm.generate",
    returns="reference",
    temperature=1.0,
    n=2,
    call_params=["model", "max_new_tokens", "seed"],
    task_options=RETRY,
)
def sample(prompts: list[str], model: str, max_new_tokens: int, seed: int) -> FlowMeshRef:
    """Two sampled completions per prompt (the seed makes them reproducible)."""
    return computed_on_flowmesh()


@flowmesh_task(kind="data.pairs", returns="reference", task_options=RETRY)
def pairs(samples: FlowMeshRef, scores: FlowMeshRef) -> FlowMeshRef:
    """Per prompt, ``{prompt, chosen, rejected, margin}``: its best and worst sample."""
    return computed_on_flowmesh()


@flowmesh_task(
    kind="train.dpo",
    returns="reference",
    call_params=["model", "epochs", "learning_rate", "beta", "seed"],
    batch_size=4,
    task_options=RETRY,
)
def preference_tune(
    dataset: FlowMeshRef, model: str, epochs: int, learning_rate: float, beta: float, seed: int
) -> FlowMeshRef:
    """Direct preference optimisation of ``model`` on ``dataset``: a checkpoint tree."""
    return computed_on_flowmesh()


@task
def dpo_report(preferences: FlowMeshRef, checkpoint: FlowMeshRef) -> str:
    """Read back how many pairs there were and the checkpoint's metrics (small)."""
    dataset, metrics = preferences.load(), checkpoint.load()["metrics"]
    line = (
        f"preference-tuned on {len(dataset)} pairs ({checkpoint.satisfied_by}): mean margin "
        f"log p(chosen) - log p(rejected) {metrics['margin_before']:.4f} -> "
        f"{metrics['margin_after']:.4f}; checkpoint {checkpoint.digest}"
    )
    print(line)
    return line


@flow(name="flowmesh-dpo", log_prints=True)
def dpo(
    prompts: list[str] = PROMPTS,
    base_model: str = "flowmesh/tiny-gpt",
    reward_model: str = "flowmesh/tiny-reward",
    epochs: int = 2,
    learning_rate: float = 5e-4,
    beta: float = 0.1,
    seed: int = 0,
    max_new_tokens: int = 32,
) -> str:
    """2 samples per prompt -> score -> pairs -> DPO, on FlowMesh."""
    samples = sample(prompts, model=base_model, max_new_tokens=max_new_tokens, seed=seed)
    rewards = score(samples, model=reward_model)
    preferences = pairs(samples, rewards)
    checkpoint = preference_tune(
        preferences, model=base_model, epochs=epochs, learning_rate=learning_rate, beta=beta,
        seed=seed,
    )  # fmt: skip
    return dpo_report(preferences, checkpoint)


FLOWS: dict[str, Callable[[], str]] = {"post_training": post_training, "sft": sft, "dpo": dpo}

if __name__ == "__main__":
    chosen = sys.argv[1] if len(sys.argv) > 1 else "post_training"
    if chosen not in FLOWS or len(sys.argv) > 2:
        sys.exit(f"usage: post_training_flow.py [{' | '.join(FLOWS)}]")
    FLOWS[chosen]()
