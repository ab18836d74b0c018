"""The model executors on real weights: all-MiniLM-L6-v2 for embed, the tiny built-in
models for llm.generate and score, and the vLLM executor's wiring (no GPU here)."""

from __future__ import annotations

import math
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import torch

from flowmesh_core.errors import ConfigError, InvalidParamsError
from flowmesh_core.models import ModelRef
from flowmesh_core.registry import Registry
from flowmesh_worker.executors.base import Batch, ItemError, Loaded, WorkItem
from flowmesh_worker.executors.embed import EmbedExecutor
from flowmesh_worker.executors.generate import (
    GenerateExecutor,
    RowSampler,
    _finish,
    _inverse_cdf,
    item_seed,
)
from flowmesh_worker.executors.score import ScoreExecutor
from flowmesh_worker.executors.vllm import VllmGenerateExecutor
from flowmesh_worker.weights import TINY_GPT, TINY_REWARD, resolve_model

REGISTRY = Registry.default()
INPUT = {"embed": "texts", "llm.generate": "prompts", "score": "pairs"}
PROMPTS = [
    "the cat sat on the mat",
    "a",
    "a much longer prompt that talks about many different things at once",
    "hello world",
]


EXECUTORS = {"embed": EmbedExecutor(), "llm.generate": GenerateExecutor(), "score": ScoreExecutor()}
MODELS = {"embed": "all-MiniLM-L6-v2", "llm.generate": TINY_GPT, "score": TINY_REWARD}


@pytest.fixture(scope="session")
def models(model_dir: Path) -> dict[str, Loaded]:
    """Each executor's model, loaded once for the session (tiny ones built in the
    session's model directory, see conftest)."""
    loaded = {}
    for kind, name in MODELS.items():
        ref = ModelRef(name=name)
        loaded[kind] = EXECUTORS[kind].load(resolve_model(ref, model_dir=model_dir), ref)
    return loaded


def batch(
    kind: str,
    values: Sequence[Any],
    params: dict[str, Any] | None = None,
    *,
    seeds: Sequence[int] | None = None,
    samples: Sequence[int | None] | None = None,
) -> Batch:
    """A batch as the worker builds it: params normalized by the kind's registered model."""
    normalized = REGISTRY.get(kind).normalize_params(params or {})
    items = [
        WorkItem(
            op_key=f"k{i}",
            inputs={INPUT[kind]: value},
            params={**normalized, "seed": seeds[i]} if seeds else normalized,
            sample_index=samples[i] if samples else None,
        )
        for i, value in enumerate(values)
    ]
    return Batch(kind=kind, version="1", model=ModelRef(name="m"), items=items)


def run(models: dict[str, Loaded], b: Batch) -> list[Any]:
    return EXECUTORS[b.kind].run(b, models[b.kind])


# --- embed ----------------------------------------------------------------------------


def _cos(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))


def test_embed_normalized_vectors_that_mean_something(models: dict[str, Loaded]) -> None:
    texts = ["A cat sits on the mat.", "A kitten rests on a rug.", "The stock market crashed."]
    cat, kitten, market = run(models, batch("embed", texts))
    assert len(cat) == 384
    assert all(isinstance(x, float) for x in cat)
    assert sum(x * x for x in cat) == pytest.approx(1.0, abs=1e-5)
    assert _cos(cat, kitten) > _cos(cat, market) + 0.3


def test_embed_normalize_false_keeps_the_raw_pooling(models: dict[str, Loaded]) -> None:
    (raw,) = run(models, batch("embed", ["hello there"], {"normalize": False}))
    (unit,) = run(models, batch("embed", ["hello there"]))
    assert sum(x * x for x in raw) > 2.0
    assert _cos(raw, unit) == pytest.approx(1.0, abs=1e-6)


def test_embed_does_not_depend_on_the_batch(models: dict[str, Loaded]) -> None:
    (alone,) = run(models, batch("embed", [PROMPTS[0]]))
    together = run(models, batch("embed", PROMPTS))
    assert together[0] == pytest.approx(alone, abs=1e-5)


def test_embed_field_reads_generate_outputs(models: dict[str, Loaded]) -> None:
    outputs = [{"prompt": "p", "completion": t, "tokens": 3} for t in PROMPTS[:2]]
    by_field = run(models, batch("embed", outputs, {"field": "completion"}))
    plain = run(models, batch("embed", PROMPTS[:2]))
    for got, want in zip(by_field, plain, strict=True):
        assert got == pytest.approx(want, abs=1e-5)


@pytest.mark.parametrize(
    ("params", "text", "expected"),
    [
        ({}, 7, "must be a string, got int 7"),
        ({}, {"completion": "x"}, "set the 'field' param"),
        ({"field": "completion"}, "plain", "drop the 'field' param"),
        ({"field": "completion"}, {"text": "x"}, "no key 'completion' (it has: text)"),
        ({"field": "completion"}, {"completion": ["x"]}, "must hold a string, got list"),
    ],
)
def test_embed_bad_text_fails_only_its_item(
    models: dict[str, Loaded], params: dict[str, Any], text: Any, expected: str
) -> None:
    good = {"completion": "fine"} if params else "fine"
    first, bad = run(models, batch("embed", [good, text], params))
    assert isinstance(first, list)
    assert isinstance(bad, ItemError)
    assert expected in bad.message


def test_embed_max_seq_length_truncates_for_that_batch_only(models: dict[str, Loaded]) -> None:
    encoder = models["embed"].model
    default = encoder.max_seq_length
    head = "one two three four five"
    long_a, long_b = head + " six seven eight", head + " nine ten eleven twelve"
    a, b = run(models, batch("embed", [long_a, long_b], {"max_seq_length": 6}))
    assert a == pytest.approx(b, abs=1e-6)  # [CLS] + 4 words + [SEP]: the tails are cut
    a, b = run(models, batch("embed", [long_a, long_b]))
    assert _cos(a, b) < 0.99
    assert encoder.max_seq_length == default
    # Longer than the model's 512 positions: cut to them rather than fail.
    texts = ["word " * 300 + "end", "word " * 300 + "finish", "word " * 2000]
    a, b, c = run(models, batch("embed", texts, {"max_seq_length": 4096}))
    assert len(c) == 384
    assert _cos(a, b) < 1 - 1e-6  # 300 < 512: the ends were seen, not cut at the default 256


def test_embed_field_param_is_validated() -> None:
    spec = REGISTRY.get("embed")
    assert spec.normalize_params({"field": "completion"})["field"] == "completion"
    assert spec.normalize_params({})["field"] is None
    with pytest.raises(InvalidParamsError, match="field"):
        spec.normalize_params({"field": ""})


# --- llm.generate ---------------------------------------------------------------------


GREEDY = {"max_new_tokens": 16}
SAMPLED = {"max_new_tokens": 16, "temperature": 0.9, "top_p": 0.95, "top_k": 200}


def test_generate_result_shape(models: dict[str, Loaded]) -> None:
    (out,) = run(models, batch("llm.generate", ["hello world"], GREEDY))
    assert set(out) == {"prompt", "completion", "tokens"}
    assert out["prompt"] == "hello world"
    assert isinstance(out["completion"], str)
    assert out["completion"]
    assert out["tokens"] == 16  # random weights almost never emit EOS ([SEP])


def test_greedy_is_deterministic_and_batch_invariant(models: dict[str, Loaded]) -> None:
    alone = [run(models, batch("llm.generate", [p], GREEDY))[0] for p in PROMPTS]
    together = run(models, batch("llm.generate", PROMPTS * 3, GREEDY))
    assert together == alone * 3
    assert run(models, batch("llm.generate", PROMPTS, GREEDY)) == alone


def test_sampling_is_batch_invariant(models: dict[str, Loaded]) -> None:
    (alone,) = run(models, batch("llm.generate", [PROMPTS[0]], SAMPLED, seeds=[7], samples=[2]))
    mixed = run(
        models,
        batch(
            "llm.generate",
            [PROMPTS[2], PROMPTS[0], PROMPTS[1], PROMPTS[0]],
            SAMPLED,
            seeds=[1, 7, 7, 7],
            samples=[0, 2, 2, 0],
        ),
    )
    assert mixed[1] == alone
    assert mixed[3] != alone  # another sample of the same prompt


def test_samples_differ_by_index_and_seed(models: dict[str, Loaded]) -> None:
    prompts = [PROMPTS[3]] * 4
    by_index = run(
        models, batch("llm.generate", prompts, SAMPLED, seeds=[5] * 4, samples=[0, 1, 2, 3])
    )
    assert len({out["completion"] for out in by_index}) == 4
    by_seed = run(
        models, batch("llm.generate", prompts, SAMPLED, seeds=[1, 2, 3, 4], samples=[0] * 4)
    )
    assert len({out["completion"] for out in by_seed}) == 4


def test_sampling_never_touches_the_global_rng(models: dict[str, Loaded]) -> None:
    state = torch.get_rng_state()
    run(models, batch("llm.generate", PROMPTS, SAMPLED, seeds=[1, 2, 3, 4], samples=[0] * 4))
    assert torch.equal(state, torch.get_rng_state())


@pytest.mark.parametrize("narrowing", [{"top_k": 1}, {"top_p": 1e-9}])
def test_sampling_narrowed_to_one_token_is_greedy(
    models: dict[str, Loaded], narrowing: dict[str, Any]
) -> None:
    params = {"max_new_tokens": 8, "temperature": 1.5, **narrowing}
    sampled = run(models, batch("llm.generate", PROMPTS, params, seeds=[3] * 4, samples=[0] * 4))
    greedy = run(models, batch("llm.generate", PROMPTS, {"max_new_tokens": 8}))
    assert sampled == greedy


def test_row_sampler_keeps_top_k_and_top_p_mass() -> None:
    scores = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05], [0.25, 0.25, 0.25, 0.25]]))
    probs = RowSampler([], temperature=1.0, top_k=2, top_p=1.0).filtered_probs(scores)
    assert (probs > 0).sum(dim=1).tolist() == [2, 4]  # every token tied with the k-th stays
    assert probs.sum(dim=1).tolist() == pytest.approx([1.0, 1.0])
    probs = RowSampler([], temperature=1.0, top_k=None, top_p=0.8).filtered_probs(scores)
    assert (probs[0] > 0).tolist() == [True, True, False, False]
    assert (probs[1] > 0).tolist() == [True, True, True, True]  # ties: 0.75 < 0.8


def test_top_p_over_top_k_candidates_matches_a_full_sort() -> None:
    scores = torch.randn(6, 1000, generator=torch.Generator().manual_seed(0))
    scores[1, :500] = 3.0  # ties, broken by token id
    for top_k in (None, 1, 7, 600):
        probs = RowSampler([], temperature=0.7, top_k=top_k, top_p=0.6).filtered_probs(scores)
        full = RowSampler([], temperature=0.7, top_k=top_k, top_p=1.0).filtered_probs(scores)
        ordered, order = torch.sort(full, dim=-1, descending=True, stable=True)
        drop = (torch.cumsum(ordered, dim=-1) - ordered) >= 0.6
        assert torch.equal(probs, full.scatter(1, order, ordered.masked_fill(drop, 0.0)))


def test_row_sampler_never_picks_a_token_without_mass() -> None:
    scores = torch.tensor([[0.0, 5.0, float("-inf")]])
    probs = RowSampler([], temperature=1.0, top_k=None, top_p=1.0).filtered_probs(scores)
    # Draws at the edges, up to one that rounding could put on the total mass.
    for draw in (0.0, 0.5, 1.0 - 2**-53, 1.0):
        chosen = _inverse_cdf(probs, torch.tensor([draw], dtype=torch.float64))
        assert probs[0, int(chosen)] > 0


def test_item_seed_is_stable_and_spread() -> None:
    assert item_seed(0, None) == item_seed(0, 0)
    assert item_seed(0, 1) != item_seed(0, 0) != item_seed(1, 0)
    assert 0 <= item_seed(2**63 - 1, 1023) < 2**63
    assert item_seed(42, 3) == item_seed(42, 3)


def test_stop_string_cuts_the_completion(models: dict[str, Loaded]) -> None:
    (full,) = run(models, batch("llm.generate", [PROMPTS[0]], GREEDY))
    words = full["completion"].split()
    stop = words[len(words) // 2]
    cut_at = full["completion"].index(stop)
    (cut,) = run(models, batch("llm.generate", [PROMPTS[0]], {**GREEDY, "stop": ["zzqx", stop]}))
    assert cut["completion"] == full["completion"][:cut_at]
    assert 0 < cut["tokens"] < full["tokens"]
    (same,) = run(models, batch("llm.generate", [PROMPTS[0]], {**GREEDY, "stop": ["zzqx"]}))
    assert same == full


def test_eos_ends_the_completion_and_counts() -> None:
    class Decoder:
        def decode(self, ids: list[int], skip_special_tokens: bool) -> str:
            return " ".join(str(i) for i in ids if i != 2)

    assert _finish(Decoder(), [5, 6, 2, 0, 0], {2}, []) == ("5 6", 3)
    assert _finish(Decoder(), [5, 6, 7, 8], {2}, ["7"]) == ("5 6 ", 3)


def test_generate_bad_prompts_fail_only_their_items(models: dict[str, Loaded]) -> None:
    long_prompt = "word " * 1100
    good, not_text, too_long = run(
        models, batch("llm.generate", ["fine", {"prompt": "x"}, long_prompt], GREEDY)
    )
    assert isinstance(good, dict)
    assert isinstance(not_text, ItemError)
    assert "must be a string, got dict" in not_text.message
    assert not_text.deterministic  # failed at once, not retried
    assert isinstance(too_long, ItemError)
    assert too_long.deterministic
    assert "more than this model's context (1024 tokens)" in too_long.message


def test_batches_on_one_model_from_several_threads(models: dict[str, Loaded]) -> None:
    want = run(models, batch("llm.generate", PROMPTS, GREEDY))
    got: list[list[Any]] = []
    threads = [
        threading.Thread(
            target=lambda: got.append(run(models, batch("llm.generate", PROMPTS, GREEDY)))
        )
        for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert got == [want] * 3


# --- score ----------------------------------------------------------------------------


def _pairs(*completions: str) -> list[dict[str, Any]]:
    return [{"prompt": "how are you?", "completion": c} for c in completions]


def test_score_is_a_float_per_pair_and_batch_invariant(models: dict[str, Loaded]) -> None:
    pairs = _pairs("fine, thanks", "terrible", "a much longer answer about how i am doing")
    scores = run(models, batch("score", pairs))
    assert all(isinstance(s, float) for s in scores)
    assert len(set(scores)) == 3
    (alone,) = run(models, batch("score", pairs[2:]))
    assert scores[2] == pytest.approx(alone, abs=1e-5)


def test_score_activations(models: dict[str, Loaded]) -> None:
    pairs = _pairs("fine")
    (raw,) = run(models, batch("score", pairs))
    (squashed,) = run(models, batch("score", pairs, {"activation": "sigmoid"}))
    assert squashed == pytest.approx(1 / (1 + math.exp(-raw)), abs=1e-6)
    (softmax,) = run(models, batch("score", pairs, {"activation": "softmax"}))
    assert isinstance(softmax, ItemError)
    assert softmax.deterministic
    assert "use 'sigmoid' or 'none'" in softmax.message


def test_score_takes_generate_outputs_and_truncates(models: dict[str, Loaded]) -> None:
    base = "one two three four five six"
    pairs = [
        {"prompt": "p", "completion": base + " seven", "tokens": 7},
        {"prompt": "p", "completion": base + " eight nine ten"},
    ]
    a, b = run(models, batch("score", pairs, {"max_length": 8}))
    assert a == pytest.approx(b, abs=1e-6)
    a, b = run(models, batch("score", pairs))
    assert a != pytest.approx(b, abs=1e-6)


@pytest.mark.parametrize(
    ("pair", "expected"),
    [
        ({"prompt": "p"}, "the pair has no 'completion' (it has: prompt)"),
        ({"completion": "c"}, "the pair has no 'prompt'"),
        ({"prompt": 1, "completion": "c"}, "'prompt' must be a string, got int"),
        ("just text", "must be an object {prompt: ..., completion: ...}, got str"),
    ],
)
def test_score_bad_pair_fails_only_its_item(
    models: dict[str, Loaded], pair: Any, expected: str
) -> None:
    good, bad = run(models, batch("score", [*_pairs("ok"), pair]))
    assert isinstance(good, float)
    assert isinstance(bad, ItemError)
    assert expected in bad.message


# --- vLLM (wiring only: no GPU here) --------------------------------------------------


def test_vllm_missing_says_how_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "vllm", None)  # import vllm -> ImportError
    with pytest.raises(ConfigError, match=r"`pip install vllm` on a GPU machine"):
        VllmGenerateExecutor().load(tmp_path, ModelRef(name=TINY_GPT))


class _FakeOutput:
    def __init__(self, text: str) -> None:
        self.text = text
        self.token_ids = list(range(len(text.split())))


class _FakeRequest:
    def __init__(self, text: str) -> None:
        self.outputs = [_FakeOutput(text)]


class _FakeLLM:
    def __init__(self) -> None:
        self.calls: list[tuple[list[str], list[dict[str, Any]]]] = []

    def generate(self, prompts: list[str], params: list[dict[str, Any]], use_tqdm: bool) -> Any:
        self.calls.append((prompts, params))
        return [_FakeRequest(f"re {p}") for p in prompts]


def test_vllm_gets_one_seeded_sampling_params_per_item() -> None:
    llm = _FakeLLM()
    loaded = Loaded(model=llm, nbytes=0, extra={"sampling_params": dict})
    b = batch(
        "llm.generate",
        ["a b", 3, "c"],
        {**SAMPLED, "stop": ["\n"]},
        seeds=[9, 9, 4],
        samples=[1, 0, 0],
    )
    out = VllmGenerateExecutor().run(b, loaded)
    assert out[0] == {"prompt": "a b", "completion": "re a b", "tokens": 3}
    assert isinstance(out[1], ItemError)
    ((prompts, params),) = llm.calls
    assert prompts == ["a b", "c"]
    assert [p["seed"] for p in params] == [item_seed(9, 1), item_seed(4, 0)]
    assert params[0] | {"seed": 0} == {
        "n": 1,
        "temperature": 0.9,
        "top_p": 0.95,
        "top_k": 200,
        "max_tokens": 16,
        "stop": ["\n"],
        "seed": 0,
    }


def test_vllm_greedy_has_no_seed() -> None:
    llm = _FakeLLM()
    loaded = Loaded(model=llm, nbytes=0, extra={"sampling_params": dict})
    VllmGenerateExecutor().run(batch("llm.generate", ["a"], GREEDY), loaded)
    ((_, (params,)),) = llm.calls
    assert params == {"n": 1, "temperature": 0.0, "max_tokens": 16, "stop": None}
