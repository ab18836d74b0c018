"""The operator-kind registry: what a kind is, independent of how a worker runs it."""

from __future__ import annotations

from dataclasses import replace

import pytest
from pydantic import BaseModel, ConfigDict

from flowmesh_core.errors import InvalidOperatorError, InvalidParamsError, UnknownKindError
from flowmesh_core.registry import KindSpec, Registry

BUILTIN = [
    "data.dedup",
    "data.filter",
    "data.pairs",
    "data.template",
    "data.top_k",
    "embed",
    "llm.generate",
    "python",
    "score",
    "train.dpo",
    "train.lora",
    "train.sft",
]


class SampleParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    width: int = 4
    seed: int = 0
    salt_tag: str = "x"
    count: int = 1


SAMPLER = KindSpec(
    kind="test.sample",
    version="1",
    params_model=SampleParams,
    required_inputs=frozenset({"prompts"}),
    optional_inputs=frozenset({"system"}),
    batch_input="prompts",
    per_item_params=frozenset({"seed", "salt_tag"}),
    samples_param="count",
)
PLAIN = KindSpec(kind="test.plain", version="1", params_model=SampleParams)


def test_default_registry_has_the_builtin_kinds() -> None:
    assert Registry.default().kinds() == BUILTIN


def test_default_registries_are_independent() -> None:
    mine = Registry.default()
    mine.register(PLAIN)
    assert "test.plain" in mine.kinds()
    assert "test.plain" not in Registry.default().kinds()


def test_kinds_are_sorted() -> None:
    registry = Registry([replace(PLAIN, kind="b"), replace(PLAIN, kind="a"), PLAIN])
    assert registry.kinds() == ["a", "b", "test.plain"]


@pytest.mark.parametrize("existing", [PLAIN, replace(PLAIN, version="2", description="newer")])
def test_registering_a_kind_twice_raises(existing: KindSpec) -> None:
    registry = Registry([PLAIN])
    with pytest.raises(ValueError, match=r"kind 'test\.plain' is already registered"):
        registry.register(existing)
    assert registry.get("test.plain") is PLAIN


def test_a_duplicate_in_the_constructor_raises() -> None:
    with pytest.raises(ValueError, match="already registered"):
        Registry([PLAIN, PLAIN])


def test_a_builtin_kind_cannot_be_replaced() -> None:
    registry = Registry.default()
    with pytest.raises(ValueError, match=r"'embed' is already registered"):
        registry.register(replace(PLAIN, kind="embed"))


def test_get_of_an_unknown_kind_lists_the_known_ones() -> None:
    registry = Registry([SAMPLER, PLAIN])
    with pytest.raises(UnknownKindError) as info:
        registry.get("test.sampel")
    assert str(info.value) == (
        "unknown operator kind 'test.sampel'; known kinds: test.plain, test.sample"
    )


def test_get_returns_the_registered_spec() -> None:
    assert Registry([SAMPLER, PLAIN]).get("test.sample") is SAMPLER


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (SAMPLER, {"width": 4}),
        (replace(SAMPLER, samples_param=None), {"width": 4, "count": 1}),
        (replace(SAMPLER, per_item_params=frozenset()), {"width": 4, "seed": 0, "salt_tag": "x"}),
        (PLAIN, {"width": 4, "seed": 0, "salt_tag": "x", "count": 1}),
    ],
    ids=["per-item and samples", "per-item only", "samples only", "neither"],
)
def test_signature_params_exclude_per_item_params_and_samples(
    spec: KindSpec, expected: dict[str, object]
) -> None:
    params = spec.normalize_params({})
    assert spec.signature_params(params) == expected


def test_signature_params_leave_their_argument_alone() -> None:
    params = SAMPLER.normalize_params({"seed": 9})
    before = dict(params)
    SAMPLER.signature_params(params)
    assert params == before


def test_builtin_generate_signature_drops_seed_and_n() -> None:
    spec = Registry.default().get("llm.generate")
    params = spec.key_params(spec.normalize_params({"temperature": 0.5, "seed": 3, "n": 4}))
    signature = spec.signature_params(params)
    assert "seed" not in signature
    assert "n" not in signature
    assert signature["temperature"] == 0.5
    assert signature["max_new_tokens"] == 128


def test_normalize_params_fills_defaults_as_json() -> None:
    assert SAMPLER.normalize_params({"width": 8}) == {
        "width": 8,
        "seed": 0,
        "salt_tag": "x",
        "count": 1,
    }


def test_normalize_params_names_every_bad_field() -> None:
    with pytest.raises(InvalidParamsError) as info:
        SAMPLER.normalize_params({"width": "wide", "colour": "red"})
    message = str(info.value)
    assert message.startswith("kind 'test.sample': ")
    assert "params.width: " in message
    assert "params.colour: " in message


@pytest.mark.parametrize(
    ("names", "message"),
    [
        (set(), r"needs input 'prompts' \(it takes: prompts, system\)"),
        ({"system"}, r"needs input 'prompts'"),
        ({"prompts", "sytem"}, r"has no input 'sytem' \(it takes: prompts, system\)"),
    ],
)
def test_check_inputs(names: set[str], message: str) -> None:
    with pytest.raises(InvalidOperatorError, match=message):
        SAMPLER.check_inputs(names)


@pytest.mark.parametrize("names", [{"prompts"}, {"prompts", "system"}])
def test_check_inputs_accepts(names: set[str]) -> None:
    SAMPLER.check_inputs(names)


def test_open_inputs_still_require_the_required_ones() -> None:
    spec = replace(SAMPLER, open_inputs=True)
    spec.check_inputs({"prompts", "anything", "else"})
    with pytest.raises(InvalidOperatorError, match="needs input 'prompts'"):
        spec.check_inputs({"anything"})
