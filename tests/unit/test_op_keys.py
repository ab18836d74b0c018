"""Op keys and item keys: what FlowMesh de-duplicates (flowmesh_core.keys).

Each property here is one promise of the op key: equal meaning gives equal keys whatever
the spelling (dict order, defaults, inline or blob, how a list was split), and any change
of meaning gives a different key (kind, version, model, params, inputs, sample).
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flowmesh_core.errors import BlobNotFoundError, InvalidOperatorError, InvalidParamsError
from flowmesh_core.hashing import digest_value
from flowmesh_core.keys import Expansion, expand, key_of
from flowmesh_core.models import ItemBlob, ItemLiteral, ItemManifest, Operator
from flowmesh_core.registry import KindSpec, Registry

REGISTRY = Registry.default()
LIMIT = 1 << 20
EMBED = REGISTRY.get("embed")
# Built-in kinds cannot change their kind name or version, so these registries hold an
# exact copy of `embed` that differs only there.
ALT_KIND = Registry([EMBED, replace(EMBED, kind="embed.alt")])
NEXT_VERSION = Registry([replace(EMBED, version="2")])
# A batchable kind with an input that every item shares (no built-in kind has one).
WITH_CONTEXT = Registry(
    [
        KindSpec(
            kind="rerank",
            version="1",
            params_model=EMBED.params_model,
            required_inputs=frozenset({"docs", "query"}),
            batch_input="docs",
            needs_model=True,
        )
    ]
)

PROPERTY = settings(max_examples=60, deadline=None)
HEX64 = re.compile(r"[0-9a-f]{64}")

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53), max_value=2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)
input_names = st.from_regex(r"[a-z][a-z0-9_]{0,7}", fullmatch=True)


def run(data: dict[str, Any] | Operator, registry: Registry = REGISTRY, **kw: Any) -> Expansion:
    op = data if isinstance(data, Operator) else Operator.model_validate(data)
    return expand(op, registry, max_inline_bytes=LIMIT, **kw)


def item_keys(exp: Expansion) -> list[str]:
    return [item.op_key for item in exp.items]


def embed(texts: list[Any], **params: Any) -> dict[str, Any]:
    return {"kind": "embed", "model": "mini", "params": params, "inputs": {"texts": texts}}


def generate(prompts: list[str], **params: Any) -> dict[str, Any]:
    return {
        "kind": "llm.generate",
        "model": "tiny-lm",
        "params": params,
        "inputs": {"prompts": prompts},
    }


def reversed_dicts(value: Any) -> Any:
    """The same JSON value with every mapping's insertion order reversed, at every depth."""
    if isinstance(value, dict):
        return {key: reversed_dicts(value[key]) for key in reversed(list(value))}
    if isinstance(value, list):
        return [reversed_dicts(element) for element in value]
    return value


# --- canonical form -------------------------------------------------------------------


def test_key_of_is_hex_sha256_of_sorted_json() -> None:
    assert key_of({"b": [1, {"y": 2, "x": 1}], "a": None}) == key_of(
        {"a": None, "b": [1, {"x": 1, "y": 2}]}
    )
    assert HEX64.fullmatch(key_of({"a": 1}))
    assert key_of({"a": 1}) != key_of({"a": 2})


@PROPERTY
@given(
    kwargs=st.dictionaries(st.text(max_size=6), json_values, min_size=1, max_size=5),
    inputs=st.dictionaries(input_names, json_values, min_size=1, max_size=4),
)
def test_op_key_ignores_dict_order_in_params_and_inputs(
    kwargs: dict[str, Any], inputs: dict[str, Any]
) -> None:
    data = {
        "kind": "python",
        "version": "src-hash-1",
        "model": {"name": "m", "revision": "r1"},
        "params": {"function": "pkg.mod:fn", "kwargs": kwargs},
        "inputs": {name: {"value": value} for name, value in inputs.items()},
    }
    first, second = run(data), run(reversed_dicts(data))
    assert HEX64.fullmatch(first.op_key)
    assert first.op_key == second.op_key
    assert first.signature == second.signature


@PROPERTY
@given(
    pairs=st.lists(st.tuples(st.text(max_size=10), st.text(max_size=10)), min_size=1, max_size=6)
)
def test_item_keys_ignore_dict_order_inside_elements(pairs: list[tuple[str, str]]) -> None:
    forward = {
        "kind": "score",
        "model": "rm",
        "params": {"activation": "sigmoid", "max_length": 256},
        "inputs": {
            "pairs": [{"prompt": p, "completion": c, "meta": {"a": 1, "b": 2}} for p, c in pairs]
        },
    }
    first, second = run(forward), run(reversed_dicts(forward))
    assert first.op_key == second.op_key
    assert item_keys(first) == item_keys(second)
    assert len(first.items) == len(pairs)


# --- items: splitting and overlap ------------------------------------------------------


@PROPERTY
@given(texts=st.lists(st.text(max_size=12), max_size=10), data=st.data())
def test_item_keys_do_not_depend_on_how_the_list_was_split(texts: list[str], data: Any) -> None:
    k = data.draw(st.integers(min_value=0, max_value=len(texts)), label="split")
    whole = item_keys(run(embed(texts)))
    assert len(whole) == len(texts)
    assert whole == item_keys(run(embed(texts[:k]))) + item_keys(run(embed(texts[k:])))


@PROPERTY
@given(data=st.data())
def test_an_element_has_one_item_key_in_every_list(data: Any) -> None:
    pool = data.draw(
        st.lists(st.text(max_size=8), min_size=1, max_size=6, unique=True), label="pool"
    )
    lists = [
        data.draw(st.lists(st.sampled_from(pool), min_size=1, max_size=8), label=f"list {i}")
        for i in range(2)
    ]
    keys_of: dict[str, set[str]] = {}
    for texts in lists:
        for text, key in zip(texts, item_keys(run(embed(texts))), strict=True):
            keys_of.setdefault(text, set()).add(key)
    assert all(len(keys) == 1 for keys in keys_of.values()), keys_of
    distinct = [next(iter(keys)) for keys in keys_of.values()]
    assert len(set(distinct)) == len(distinct)


def test_items_keep_their_position_but_not_in_the_key() -> None:
    first, second = run(embed(["x", "y"])), run(embed(["y", "x"]))
    assert [item.index for item in first.items] == [0, 1]
    assert item_keys(first) == item_keys(second)[::-1]
    assert first.op_key != second.op_key  # the parent covers the list, order included


def test_whole_kinds_are_one_item_keyed_like_the_operator() -> None:
    exp = run(
        {
            "kind": "data.top_k",
            "params": {"k": 2},
            "inputs": {"items": [1, 2, 3], "scores": [3, 2, 1]},
        }
    )
    assert not exp.batched
    (item,) = exp.items
    assert item.op_key == exp.op_key
    assert item.inputs == {
        "items": ItemLiteral(value=[1, 2, 3]),
        "scores": ItemLiteral(value=[3, 2, 1]),
    }
    assert item.input_digests == {
        "items": digest_value([1, 2, 3]),
        "scores": digest_value([3, 2, 1]),
    }


def test_a_manifest_splits_into_the_same_items_as_the_inline_list() -> None:
    texts = ["alpha", "beta", "alpha"]
    manifest = {"manifest": [digest_value(t) for t in texts]}
    registry = Registry.default()
    inline = expand(
        Operator(kind="embed", model="m", inputs={"texts": texts}),
        registry,
        max_inline_bytes=1 << 20,
    )
    by_manifest = expand(
        Operator(kind="embed", model="m", inputs={"texts": {"blob": digest_value(manifest)}}),
        registry,
        max_inline_bytes=1 << 20,
        load_blob=lambda _digest: manifest,
    )
    assert [i.op_key for i in by_manifest.items] == [i.op_key for i in inline.items]
    assert by_manifest.items[1].inputs["texts"] == ItemBlob(digest=digest_value("beta"))


# --- every semantic field is in the key ----------------------------------------------

DIGEST = digest_value("checkpoint")
Case = tuple[dict[str, Any], Registry]
SEMANTIC_CHANGES: list[tuple[str, Case, Case]] = [
    ("kind", (embed(["a", "b"]), ALT_KIND), ({**embed(["a", "b"]), "kind": "embed.alt"}, ALT_KIND)),
    ("kind version", (embed(["a", "b"]), REGISTRY), (embed(["a", "b"]), NEXT_VERSION)),
    (
        "model name",
        (embed(["a", "b"]), REGISTRY),
        ({**embed(["a", "b"]), "model": "other"}, REGISTRY),
    ),
    (
        "model revision added",
        (embed(["a", "b"]), REGISTRY),
        ({**embed(["a", "b"]), "model": {"name": "mini", "revision": "r1"}}, REGISTRY),
    ),
    (
        "model revision changed",
        ({**embed(["a", "b"]), "model": {"name": "mini", "revision": "r1"}}, REGISTRY),
        ({**embed(["a", "b"]), "model": {"name": "mini", "revision": "r2"}}, REGISTRY),
    ),
    (
        "model name vs checkpoint digest",
        (embed(["a", "b"]), REGISTRY),
        ({**embed(["a", "b"]), "model": DIGEST}, REGISTRY),
    ),
    (
        "embed normalize",
        (embed(["a", "b"]), REGISTRY),
        (embed(["a", "b"], normalize=False), REGISTRY),
    ),
    (
        "embed max_seq_length",
        (embed(["a", "b"]), REGISTRY),
        (embed(["a", "b"], max_seq_length=128), REGISTRY),
    ),
    (
        "generate max_new_tokens",
        (generate(["p", "q"], max_new_tokens=16), REGISTRY),
        (generate(["p", "q"], max_new_tokens=17), REGISTRY),
    ),
    (
        "generate stop",
        (generate(["p", "q"]), REGISTRY),
        (generate(["p", "q"], stop=["\n"]), REGISTRY),
    ),
    (
        "generate greedy vs sampled",
        (generate(["p", "q"]), REGISTRY),
        (generate(["p", "q"], temperature=0.7), REGISTRY),
    ),
    (
        "generate temperature",
        (generate(["p", "q"], temperature=0.7), REGISTRY),
        (generate(["p", "q"], temperature=0.8), REGISTRY),
    ),
    (
        "generate seed under sampling",
        (generate(["p", "q"], temperature=0.7, seed=1), REGISTRY),
        (generate(["p", "q"], temperature=0.7, seed=2), REGISTRY),
    ),
    (
        "generate top_p under sampling",
        (generate(["p", "q"], temperature=0.7), REGISTRY),
        (generate(["p", "q"], temperature=0.7, top_p=0.9), REGISTRY),
    ),
    (
        "score activation",
        (
            {
                "kind": "score",
                "model": "rm",
                "inputs": {"pairs": [{"prompt": "p", "completion": "c"}]},
            },
            REGISTRY,
        ),
        (
            {
                "kind": "score",
                "model": "rm",
                "params": {"activation": "softmax"},
                "inputs": {"pairs": [{"prompt": "p", "completion": "c"}]},
            },
            REGISTRY,
        ),
    ),
    (
        "template text",
        (
            {
                "kind": "data.template",
                "params": {"template": "Q: {q}"},
                "inputs": {"records": [{"q": 1}]},
            },
            REGISTRY,
        ),
        (
            {
                "kind": "data.template",
                "params": {"template": "Q:{q}"},
                "inputs": {"records": [{"q": 1}]},
            },
            REGISTRY,
        ),
    ),
    (
        "python version",
        ({"kind": "python", "version": "a1", "params": {"function": "m:f"}}, REGISTRY),
        ({"kind": "python", "version": "a2", "params": {"function": "m:f"}}, REGISTRY),
    ),
    (
        "python function",
        ({"kind": "python", "version": "a1", "params": {"function": "m:f"}}, REGISTRY),
        ({"kind": "python", "version": "a1", "params": {"function": "m:g"}}, REGISTRY),
    ),
    (
        "python kwargs",
        (
            {"kind": "python", "version": "a1", "params": {"function": "m:f", "kwargs": {"x": 1}}},
            REGISTRY,
        ),
        (
            {
                "kind": "python",
                "version": "a1",
                "params": {"function": "m:f", "kwargs": {"x": 1.5}},
            },
            REGISTRY,
        ),
    ),
    (
        "python input value",
        (
            {"kind": "python", "version": "a1", "params": {"function": "m:f"}, "inputs": {"x": 1}},
            REGISTRY,
        ),
        (
            {"kind": "python", "version": "a1", "params": {"function": "m:f"}, "inputs": {"x": 2}},
            REGISTRY,
        ),
    ),
    (
        "python input name",
        (
            {"kind": "python", "version": "a1", "params": {"function": "m:f"}, "inputs": {"x": 1}},
            REGISTRY,
        ),
        (
            {"kind": "python", "version": "a1", "params": {"function": "m:f"}, "inputs": {"y": 1}},
            REGISTRY,
        ),
    ),
    (
        "shared input of a batched kind",
        (
            {"kind": "rerank", "model": "m", "inputs": {"docs": ["d1", "d2"], "query": "q1"}},
            WITH_CONTEXT,
        ),
        (
            {"kind": "rerank", "model": "m", "inputs": {"docs": ["d1", "d2"], "query": "q2"}},
            WITH_CONTEXT,
        ),
    ),
]


@pytest.mark.parametrize(
    ("before", "after"),
    [(b, a) for _, b, a in SEMANTIC_CHANGES],
    ids=[c[0] for c in SEMANTIC_CHANGES],
)
def test_a_semantic_change_changes_every_key(before: Case, after: Case) -> None:
    first, second = run(before[0], before[1]), run(after[0], after[1])
    assert first.op_key != second.op_key
    assert len(first.items) == len(second.items)
    if first.kind != "python":
        assert first.items, "the case must exercise item keys too"
    assert not set(item_keys(first)) & set(item_keys(second))


def test_changing_one_element_changes_only_its_item_key() -> None:
    first, second = run(embed(["a", "b", "c"])), run(embed(["a", "X", "c"]))
    assert first.op_key != second.op_key
    one, two = item_keys(first), item_keys(second)
    assert (one[0], one[2]) == (two[0], two[2])
    assert one[1] != two[1]


# --- defaults --------------------------------------------------------------------------

GENERATE_DEFAULTS = {
    "max_new_tokens": 128,
    "temperature": 0.0,
    "top_p": 1.0,
    "top_k": None,
    "seed": 0,
    "n": 1,
    "stop": [],
}
DEFAULTS: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    ("embed", embed(["a", "b"]), embed(["a", "b"], normalize=True, max_seq_length=None)),
    ("generate", generate(["p"]), generate(["p"], **GENERATE_DEFAULTS)),
    (
        "generate sampled, int vs float",
        generate(["p"], temperature=1, n=2),
        generate(["p"], **{**GENERATE_DEFAULTS, "temperature": 1.0, "n": 2}),
    ),
    (
        "score",
        {"kind": "score", "model": "rm", "inputs": {"pairs": [{"prompt": "p", "completion": "c"}]}},
        {
            "kind": "score",
            "model": "rm",
            "params": {"activation": "none", "max_length": 512},
            "inputs": {"pairs": [{"prompt": "p", "completion": "c"}]},
        },
    ),
    (
        "data.dedup",
        {"kind": "data.dedup", "inputs": {"items": ["a", "a"]}},
        {
            "kind": "data.dedup",
            "params": {"field": None, "case_sensitive": True},
            "inputs": {"items": ["a", "a"]},
        },
    ),
    (
        "data.top_k",
        {"kind": "data.top_k", "params": {"k": 1}, "inputs": {"items": [1], "scores": [1]}},
        {
            "kind": "data.top_k",
            "params": {"k": 1, "descending": True},
            "inputs": {"items": [1], "scores": [1]},
        },
    ),
    (
        "python",
        {"kind": "python", "version": "h", "params": {"function": "m:f"}},
        {"kind": "python", "version": "h", "params": {"function": "m:f", "kwargs": {}}},
    ),
]


@pytest.mark.parametrize(
    ("implicit", "explicit"), [(i, e) for _, i, e in DEFAULTS], ids=[d[0] for d in DEFAULTS]
)
def test_defaults_filled_in_give_the_same_keys(
    implicit: dict[str, Any], explicit: dict[str, Any]
) -> None:
    first, second = run(implicit), run(explicit)
    assert first.op_key == second.op_key
    assert first.signature == second.signature
    assert item_keys(first) == item_keys(second)
    assert first.params == second.params


# --- sampling (a sample's seed and index are in its key) ---------------------------


@PROPERTY
@given(
    prompts=st.lists(st.text(max_size=10), min_size=1, max_size=4, unique=True),
    n=st.integers(min_value=1, max_value=5),
    seed=st.integers(min_value=0, max_value=2**63 - 1),
)
def test_sampling_gives_n_distinct_items_shared_across_requests(
    prompts: list[str], n: int, seed: int
) -> None:
    first = run(generate(prompts, temperature=0.8, n=n, seed=seed))
    second = run(generate(prompts, temperature=0.8, n=n, seed=seed))  # another tenant
    assert len(first.items) == len(prompts) * n
    assert len(set(item_keys(first))) == len(prompts) * n
    assert item_keys(first) == item_keys(second)
    for index in range(len(prompts)):
        samples = [item.sample_index for item in first.items if item.index == index]
        assert samples == list(range(n))


@PROPERTY
@given(
    prompt=st.text(max_size=10),
    n=st.integers(min_value=1, max_value=4),
    more=st.integers(min_value=1, max_value=3),
    seed=st.integers(min_value=0, max_value=1000),
)
def test_asking_for_more_samples_reuses_the_first_ones(
    prompt: str, n: int, more: int, seed: int
) -> None:
    few = item_keys(run(generate([prompt], temperature=0.8, n=n, seed=seed)))
    many = item_keys(run(generate([prompt], temperature=0.8, n=n + more, seed=seed)))
    assert many[:n] == few
    assert not set(many[n:]) & set(few)


@PROPERTY
@given(
    prompts=st.lists(st.text(max_size=10), min_size=1, max_size=3),
    seeds=st.lists(
        st.integers(min_value=0, max_value=2**63 - 1), min_size=2, max_size=2, unique=True
    ),
)
def test_a_different_seed_gives_different_samples(prompts: list[str], seeds: list[int]) -> None:
    one = run(generate(prompts, temperature=0.8, n=2, seed=seeds[0]))
    two = run(generate(prompts, temperature=0.8, n=2, seed=seeds[1]))
    assert one.op_key != two.op_key
    assert not set(item_keys(one)) & set(item_keys(two))


@pytest.mark.parametrize(
    "knobs",
    [
        {"seed": 7},
        {"seed": 2**40},
        {"top_p": 0.5},
        {"top_k": 40},
        {"seed": 3, "top_p": 0.1, "top_k": 1},
    ],
    ids=["seed", "big seed", "top_p", "top_k", "all"],
)
def test_greedy_decoding_ignores_sampling_knobs(knobs: dict[str, Any]) -> None:
    plain, tuned = run(generate(["p", "q"])), run(generate(["p", "q"], **knobs))
    assert plain.op_key == tuned.op_key
    assert plain.signature == tuned.signature
    assert item_keys(plain) == item_keys(tuned)
    assert [item.sample_index for item in tuned.items] == [None, None]


@pytest.mark.parametrize("n", [2, 5])
def test_several_greedy_samples_are_rejected(n: int) -> None:
    with pytest.raises(InvalidParamsError, match=r"temperature") as info:
        run(generate(["p"], n=n))
    assert "n > 1" in str(info.value)


# --- dedup opt-out -----------------------------------------------------------------------


def test_opting_out_gives_fresh_keys_every_time() -> None:
    data = {**embed(["a", "b"]), "dedup": False}
    first, second, shared = run(data), run(data), run(embed(["a", "b"]))
    assert first.salt is not None
    assert second.salt is not None
    assert first.salt != second.salt
    assert shared.salt is None
    assert len({first.op_key, second.op_key, shared.op_key}) == 3
    assert not set(item_keys(first)) & set(item_keys(second))
    assert not set(item_keys(first)) & set(item_keys(shared))


def test_an_explicit_equal_salt_gives_equal_keys() -> None:
    data = {**embed(["a", "b"]), "dedup": False}
    first, second = run(data, salt="req-1"), run(data, salt="req-1")
    assert first.op_key == second.op_key
    assert item_keys(first) == item_keys(second)
    assert first.op_key != run(data, salt="req-2").op_key


def test_opting_out_of_dedup_does_not_opt_out_of_batching() -> None:
    # The batch signature is kind, version, model and the params the executor
    # cannot vary per item; a private salt is none of those, so opted-out items can still
    # share an execution with anyone's compatible items.
    private = run({**embed(["a"]), "dedup": False})
    shared = run(embed(["b"]))
    assert private.op_key != run(embed(["a"])).op_key
    assert private.signature == shared.signature
    assert private.items[0].signature == shared.items[0].signature


# --- batch signature -------------------------------------------------------------------


def test_signature_ignores_per_item_params_and_sample_count() -> None:
    variants = [
        run(generate(["p"], temperature=0.8, seed=1)),
        run(generate(["p"], temperature=0.8, seed=2)),
        run(generate(["q", "r"], temperature=0.8, seed=3, n=4)),
    ]
    assert len({exp.signature for exp in variants}) == 1
    assert {item.signature for exp in variants for item in exp.items} == {variants[0].signature}
    assert variants[0].items[0].op_key != variants[1].items[0].op_key


@pytest.mark.parametrize(
    ("one", "two"),
    [
        (generate(["p"], max_new_tokens=16), generate(["p"], max_new_tokens=32)),
        (generate(["p"], temperature=0.8), generate(["p"], temperature=0.9)),
        (generate(["p"]), {**generate(["p"]), "model": "other-lm"}),
        (embed(["a"]), embed(["a"], normalize=False)),
    ],
    ids=["max_new_tokens", "temperature", "model", "normalize"],
)
def test_signature_differs_when_a_signature_param_differs(
    one: dict[str, Any], two: dict[str, Any]
) -> None:
    first, second = run(one), run(two)
    assert first.signature != second.signature
    assert first.items[0].signature != second.items[0].signature


def test_signature_does_not_depend_on_inputs() -> None:
    assert run(embed(["a"])).signature == run(embed(["b", "c"])).signature


# --- blob inputs ---------------------------------------------------------------------------


@PROPERTY
@given(texts=st.lists(st.text(max_size=12), max_size=8))
def test_a_list_as_blob_keys_like_the_same_list_inline(texts: list[str]) -> None:
    digest = digest_value(texts)
    loaded: list[str] = []

    def load_blob(requested: str) -> list[str]:
        loaded.append(requested)
        return {digest: texts}[requested]

    inline = run(embed(texts))
    by_blob = run(embed({"blob": digest}), load_blob=load_blob)  # type: ignore[arg-type]
    assert loaded == [digest]
    assert by_blob.op_key == inline.op_key
    assert by_blob.signature == inline.signature
    assert item_keys(by_blob) == item_keys(inline)
    assert [item.inputs for item in by_blob.items] == [item.inputs for item in inline.items]


def test_sampled_prompts_as_blob_key_like_inline() -> None:
    prompts = ["p", "q"]
    digest = digest_value(prompts)
    inline = run(generate(prompts, temperature=0.5, n=3, seed=9))
    by_blob = run(
        generate({"blob": digest}, temperature=0.5, n=3, seed=9),  # type: ignore[arg-type]
        load_blob={digest: prompts}.__getitem__,
    )
    assert by_blob.op_key == inline.op_key
    assert item_keys(by_blob) == item_keys(inline)


# --- typed item inputs leave every key as it was ------------------------------------------

LEAKED = digest_value("tenant A's result")
MANIFEST = {"manifest": [digest_value("alpha"), digest_value("beta")]}
MANIFEST_DIGEST = digest_value(MANIFEST)
BLOBS: dict[str, Any] = {MANIFEST_DIGEST: MANIFEST, LEAKED: ["x", "y"]}
PYTHON = {"kind": "python", "version": "h", "params": {"function": "m:f"}}
TYPED_CASES: dict[str, dict[str, Any]] = {
    "literal_lookalike": {**PYTHON, "inputs": {"x": {"value": {"blob": LEAKED}}}},
    "blob": {**PYTHON, "inputs": {"x": {"blob": LEAKED}}},
    "element_lookalike": {
        "kind": "data.template",
        "params": {"template": "{blob}"},
        "inputs": {"records": [{"blob": LEAKED}, "alpha"]},
    },
    "manifest_split": {
        "kind": "embed",
        "model": "mini",
        "inputs": {"texts": {"blob": MANIFEST_DIGEST}},
    },
    "manifest_whole": {
        "kind": "data.top_k",
        "params": {"k": 1},
        "inputs": {"items": {"blob": MANIFEST_DIGEST}, "scores": [1, 2]},
    },
    "sampled": {
        "kind": "llm.generate",
        "model": "tiny",
        "params": {"temperature": 0.7, "n": 2, "seed": 3},
        "inputs": {"prompts": ["p", {"blob": LEAKED}]},
    },
}
# The keys these operators had before item inputs were typed (computed then, pinned now):
# typing what a worker reads must never orphan a cached result.
PINNED_KEYS: dict[str, tuple[str, list[str]]] = {
    "literal_lookalike": (
        "7d6a139892400d6d7a13873444118bf24bf1c53d6b512e2d355ab6af7cabe7b7",
        [
            "7d6a139892400d6d7a13873444118bf24bf1c53d6b512e2d355ab6af7cabe7b7",
        ],
    ),
    "blob": (
        "d89241d5f8d6ac12f77d6458acab4e0f738899d6f83f2e4613b7cf65f4b495a2",
        [
            "d89241d5f8d6ac12f77d6458acab4e0f738899d6f83f2e4613b7cf65f4b495a2",
        ],
    ),
    "element_lookalike": (
        "39d6326494b9fb900c2f63ae06a74c4c4911edf9aef33548e0988bfb96c7b92c",
        [
            "2cc3180dd8c252db238d8d101caa69e38982164197e7823f08625ed930c053ce",
            "f773043d326a3d03a76e0fb3b2ccb27354fc668c7de7abf0a73b47337a9060fc",
        ],
    ),
    "manifest_split": (
        "4c54ed987d610259d3b3e211e9b58865a3e328e76bf0bd0d374915ba905795d9",
        [
            "9d61073cf2460ab40e6c8d98fc0c75c0e5bace47861b5bbfeac1be80642029b9",
            "afd724a07c8b3de1a3acc3955c9dff30abe981d421b0587801b00efa082644ec",
        ],
    ),
    "manifest_whole": (
        "d9bc811b564b38a62e592a587da62c507991a7de080b23650da4bc73a0735a6c",
        [
            "d9bc811b564b38a62e592a587da62c507991a7de080b23650da4bc73a0735a6c",
        ],
    ),
    "sampled": (
        "68f835c411b9c40cd5a406d1b932dbf3fbdf376d5c284997affb1626a062467e",
        [
            "e249c4d8ab294d0c2aef7479f93209a87242eedee119a8ca7725fdd38e434c80",
            "d985222b35aff7f5015aba6e3801f46fdeb1ba1115fa3c24eeae1da634343c21",
            "3b843225835bec2cd29a964ad21ed86bba5d1c875d9280f77f290b81585c21a6",
            "a213599fc9aa81f2b3980c4c612514e285ff60cfdb90d6d7d6ffde56a2a4e4ed",
        ],
    ),
}


@pytest.mark.parametrize("case", sorted(TYPED_CASES))
def test_typing_item_inputs_left_the_keys_as_they_were(case: str) -> None:
    exp = run(TYPED_CASES[case], load_blob=BLOBS.__getitem__)
    assert (exp.op_key, item_keys(exp)) == PINNED_KEYS[case]


def test_a_list_element_shaped_like_a_blob_reference_is_a_literal_item_input() -> None:
    exp = run(TYPED_CASES["element_lookalike"])
    assert [item.inputs["records"] for item in exp.items] == [
        ItemLiteral(value={"blob": LEAKED}),
        ItemLiteral(value="alpha"),
    ]
    assert exp.manifest_digests == ()
    sampled = run(TYPED_CASES["sampled"])
    assert [item.inputs["prompts"] for item in sampled.items if item.index == 1] == [
        ItemLiteral(value={"blob": LEAKED})
    ] * 2


def test_a_literal_shaped_like_a_blob_reference_is_a_literal_item_input() -> None:
    (item,) = run(TYPED_CASES["literal_lookalike"], load_blob=BLOBS.__getitem__).items
    assert item.inputs == {"x": ItemLiteral(value={"blob": LEAKED})}


def test_a_split_manifest_lists_its_digests_for_the_rights_check() -> None:
    exp = run(TYPED_CASES["manifest_split"], load_blob=BLOBS.__getitem__)
    assert [item.inputs["texts"] for item in exp.items] == [
        ItemBlob(digest=d) for d in MANIFEST["manifest"]
    ]
    assert exp.manifests == {MANIFEST_DIGEST: tuple(MANIFEST["manifest"])}
    assert exp.manifest_digests == tuple(MANIFEST["manifest"])


def test_a_blob_holding_a_manifest_becomes_a_manifest_input_and_lists_its_digests() -> None:
    loaded: list[str] = []

    def load_blob(digest: str) -> Any:
        loaded.append(digest)
        return BLOBS[digest]

    exp = run(TYPED_CASES["manifest_whole"], load_blob=load_blob)
    (item,) = exp.items
    assert item.inputs == {
        "items": ItemManifest(digest=MANIFEST_DIGEST),
        "scores": ItemLiteral(value=[1, 2]),
    }
    assert exp.manifests == {MANIFEST_DIGEST: tuple(MANIFEST["manifest"])}
    assert loaded == [MANIFEST_DIGEST]  # literals are never looked up


def test_a_shared_blob_input_of_a_split_kind_is_typed_too() -> None:
    op = {
        "kind": "rerank",
        "model": "m",
        "inputs": {"docs": ["d1", "d2"], "query": {"blob": MANIFEST_DIGEST}},
    }
    exp = run(op, WITH_CONTEXT, load_blob=BLOBS.__getitem__)
    assert {item.inputs["query"] for item in exp.items} == {ItemManifest(digest=MANIFEST_DIGEST)}
    assert exp.manifest_digests == tuple(MANIFEST["manifest"])
    plain = run(op, WITH_CONTEXT)  # no blob store: a plain blob, never followed
    assert {item.inputs["query"] for item in plain.items} == {ItemBlob(digest=MANIFEST_DIGEST)}
    assert item_keys(plain) == item_keys(exp)
    assert plain.manifests == {}


@pytest.mark.parametrize(
    "error", [BlobNotFoundError("absent"), ValueError("not JSON")], ids=["absent", "not JSON"]
)
def test_a_blob_that_cannot_be_read_here_stays_a_plain_blob(error: Exception) -> None:
    def load_blob(_digest: str) -> Any:
        raise error

    (item,) = run(TYPED_CASES["blob"], load_blob=load_blob).items
    assert item.inputs == {"x": ItemBlob(digest=LEAKED)}


def test_a_manifest_written_inline_is_not_read_as_one() -> None:
    with pytest.raises(InvalidOperatorError, match="never read as a manifest"):
        run(embed({"manifest": MANIFEST["manifest"]}))  # type: ignore[arg-type]
