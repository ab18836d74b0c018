"""The ``data.*`` executors: results, per-item errors, and templates that cannot escape.

Batches are built the way the control plane builds them (``flowmesh_core.keys.expand``),
so these tests also pin what an executor receives: one record per ``data.template`` item,
the whole lists for the others.
"""

from __future__ import annotations

from typing import Any

import pytest

from flowmesh_core.errors import InvalidParamsError
from flowmesh_core.hashing import digest_value
from flowmesh_core.keys import expand
from flowmesh_core.models import Item, ItemLiteral, Operator
from flowmesh_core.registry import Registry
from flowmesh_worker.executors import Batch, ItemError, WorkItem, create_executor

REGISTRY = Registry.default()


def literals(item: Item) -> dict[str, Any]:
    """What the worker hands an executor for an item whose inputs are all literals."""
    assert all(isinstance(inp, ItemLiteral) for inp in item.inputs.values()), item.inputs
    return {name: inp.value for name, inp in item.inputs.items()}  # type: ignore[union-attr]


def batch_of(kind: str, params: dict[str, Any], **inputs: Any) -> Batch:
    """The batch a worker gets for one operator (all of its items)."""
    op = Operator(kind=kind, params=params, inputs=inputs)
    expansion = expand(op, REGISTRY, max_inline_bytes=1 << 20)
    items = [WorkItem(i.op_key, literals(i), i.params, i.sample_index) for i in expansion.items]
    return Batch(expansion.kind, expansion.version, None, items)


def run(kind: str, params: dict[str, Any], **inputs: Any) -> list[Any]:
    return create_executor(kind).run(batch_of(kind, params, **inputs), None)


def run_one(kind: str, params: dict[str, Any], **inputs: Any) -> Any:
    """The single outcome of a whole-list operator."""
    [outcome] = run(kind, params, **inputs)
    return outcome


def error_of(outcome: Any) -> str:
    assert isinstance(outcome, ItemError), f"expected an ItemError, got {outcome!r}"
    assert outcome.deterministic, f"{outcome!r} should not be retried: its input is the fault"
    return outcome.message


# ---------------------------------------------------------------------------- template


def test_template_renders_each_record_in_order() -> None:
    records = [{"title": "A", "n": 1}, {"title": "B", "n": 2}, "plain"]
    outcomes = run("data.template", {"template": "{title}#{n}"}, records=records[:2])
    assert outcomes == ["A#1", "B#2"]
    assert run("data.template", {"template": "<{text}>"}, records=["x", "y"]) == ["<x>", "<y>"]


def test_template_supports_conversions_specs_and_literal_braces() -> None:
    template = "{name!r} {n:>4} {ratio:.2f} {{name}}"
    [out] = run(
        "data.template", {"template": template}, records=[{"name": "a", "n": 7, "ratio": 0.5}]
    )
    assert out == "'a'    7 0.50 {name}"
    assert out == template.format_map({"name": "a", "n": 7, "ratio": 0.5})


def test_template_renders_json_values_as_python_formats_them() -> None:
    [out] = run(
        "data.template", {"template": "{a} {b} {c}"}, records=[{"a": None, "b": True, "c": [1]}]
    )
    assert out == "None True [1]"


def test_a_missing_field_fails_only_that_record_and_names_the_fields() -> None:
    records = [{"title": "ok"}, {"name": "x", "body": "y"}]
    good, bad = run("data.template", {"template": "T: {title}"}, records=records)
    assert good == "T: ok"
    message = error_of(bad)
    assert "no field 'title'" in message
    assert "body, name" in message


def test_a_string_record_offers_only_text() -> None:
    message = error_of(run("data.template", {"template": "{title}"}, records=["hello"])[0])
    assert "no field 'title'" in message
    assert "fields: text" in message


@pytest.mark.parametrize("record", [3, None, ["a"], True])
def test_a_record_must_be_an_object_or_a_string(record: Any) -> None:
    message = error_of(run("data.template", {"template": "{text}"}, records=[record])[0])
    assert "must be an object" in message


@pytest.mark.parametrize("template", ["{", "}", "a {b", "{b!}"])
def test_a_malformed_template_fails_every_record_clearly(template: str) -> None:
    outcomes = run("data.template", {"template": template}, records=["x", "y"])
    assert len(outcomes) == 2
    for outcome in outcomes:
        message = error_of(outcome)
        assert message.startswith("data.template: malformed template")
        assert "{{" in message


@pytest.mark.parametrize(
    "template",
    [
        "{0.__class__}",
        "{text.__class__}",
        "{text.__class__.__mro__}",
        "{text[0]}",
        "{0}",
        "{}",
        "{!r}",
        "{ text }",
    ],
)
def test_templates_that_reach_past_a_plain_field_are_refused(template: str) -> None:
    message = error_of(run("data.template", {"template": template}, records=["x"])[0])
    assert "not a plain name" in message
    assert "class" not in message.split("not a plain name")[1]


def test_fields_inside_a_format_spec_are_refused() -> None:
    records = [{"text": "x", "w": 10**9}]
    message = error_of(run("data.template", {"template": "{text:>{w}}"}, records=records)[0])
    assert "field inside its format spec" in message


@pytest.mark.parametrize("number", ["4097", "999999999", "9" * 5000])
def test_a_huge_width_is_refused_before_it_is_allocated(number: str) -> None:
    template = "{text:>" + number + "}"
    message = error_of(run("data.template", {"template": template}, records=["x"])[0])
    assert "over the limit of 4096" in message


def test_a_width_within_the_limit_is_kept() -> None:
    [out] = run("data.template", {"template": "{text:>4096}"}, records=["x"])
    assert len(out) == 4096


def test_an_unknown_conversion_is_refused() -> None:
    message = error_of(run("data.template", {"template": "{text!x}"}, records=["x"])[0])
    assert "unknown conversion" in message


def test_a_spec_that_does_not_fit_the_value_fails_that_record() -> None:
    records = [{"n": 3}, {"n": "three"}]
    good, bad = run("data.template", {"template": "{n:03d}"}, records=records)
    assert good == "003"
    assert "cannot format field 'n' with '03d'" in error_of(bad)


# ------------------------------------------------------------------------------ filter


def test_filter_keeps_items_within_inclusive_bounds_in_order() -> None:
    items = ["a", "b", "c", "d"]
    scores = [0.1, 0.5, 0.9, 0.5]
    params = {"min_score": 0.5, "max_score": 0.9}
    assert run_one("data.filter", params, items=items, scores=scores) == ["b", "c", "d"]


def test_filter_bounds_are_open_when_unset() -> None:
    items, scores = ["a", "b", "c"], [-5, 0, 5]
    assert run_one("data.filter", {}, items=items, scores=scores) == items
    assert run_one("data.filter", {"min_score": 0}, items=items, scores=scores) == ["b", "c"]
    assert run_one("data.filter", {"max_score": 0}, items=items, scores=scores) == ["a", "b"]


def test_filter_reads_scores_from_objects() -> None:
    items = [{"id": 1}, {"id": 2}]
    scores = [{"score": 0.2, "label": "x"}, {"score": 0.8}]
    assert run_one("data.filter", {"min_score": 0.5}, items=items, scores=scores) == [{"id": 2}]


def test_filter_needs_as_many_scores_as_items() -> None:
    message = error_of(run_one("data.filter", {}, items=["a", "b"], scores=[1]))
    assert "'items' has 2 entries but 'scores' has 1" in message


@pytest.mark.parametrize(
    ("scores", "shown"),
    [
        (["high"], "a string"),
        ([True], "a boolean"),
        ([{"label": 1}], "an object"),
        ([[1]], "a list"),
    ],
)
def test_filter_rejects_scores_that_are_not_numbers(scores: list[Any], shown: str) -> None:
    message = error_of(run_one("data.filter", {}, items=["a"], scores=scores))
    assert f"scores[0] is {shown}" in message
    assert 'numeric "score"' in message


def test_filter_rejects_inputs_that_are_not_lists() -> None:
    message = error_of(run_one("data.filter", {}, items={"a": 1}, scores=[1]))
    assert "input 'items' must be a list, got an object" in message


def test_filter_with_crossed_bounds_is_refused_at_submission() -> None:
    params = {"min_score": 0.9, "max_score": 0.1}
    with pytest.raises(InvalidParamsError, match=r"min_score 0\.9 is above max_score 0\.1"):
        run_one("data.filter", params, items=["a"], scores=[0.5])


# ------------------------------------------------------------------------------- dedup


def test_dedup_keeps_first_occurrences_in_order() -> None:
    items = ["b", "a", "b", "c", "a"]
    assert run_one("data.dedup", {}, items=items) == ["b", "a", "c"]


def test_dedup_can_ignore_case() -> None:
    items = ["Hello", "hello", "HELLO", "Straße", "STRASSE"]
    assert run_one("data.dedup", {}, items=items) == items
    assert run_one("data.dedup", {"case_sensitive": False}, items=items) == ["Hello", "Straße"]


def test_dedup_by_field_keeps_whole_objects() -> None:
    items = [{"text": "x", "id": 1}, {"text": "y", "id": 2}, {"text": "x", "id": 3}]
    kept = run_one("data.dedup", {"field": "text"}, items=items)
    assert kept == [{"text": "x", "id": 1}, {"text": "y", "id": 2}]


def test_dedup_by_field_still_compares_strings_as_themselves() -> None:
    items = ["x", {"text": "x"}, "y"]
    assert run_one("data.dedup", {"field": "text"}, items=items) == ["x", "y"]


def test_dedup_by_field_needs_the_field() -> None:
    items = [{"text": "x"}, {"body": "y", "id": 2}]
    message = error_of(run_one("data.dedup", {"field": "text"}, items=items))
    assert "items[1] has no field 'text'; its fields: body, id" in message


def test_dedup_by_field_rejects_items_that_have_no_fields() -> None:
    message = error_of(run_one("data.dedup", {"field": "text"}, items=[{"text": "x"}, 7]))
    assert "items[1] is a number, which has no field 'text'" in message


def test_dedup_compares_objects_by_canonical_json() -> None:
    items = [{"a": 1, "b": [1, 2]}, {"b": [1, 2], "a": 1}, {"a": 1, "b": [2, 1]}]
    assert run_one("data.dedup", {}, items=items) == [items[0], items[2]]


def test_dedup_keeps_a_string_and_a_number_apart() -> None:
    assert run_one("data.dedup", {}, items=["1", 1, "1", 1]) == ["1", 1]


def test_dedup_equality_is_that_of_digests() -> None:
    # 1 and 1.0 have different canonical JSON, hence different digests in the CAS.
    assert digest_value(1) != digest_value(1.0)
    assert run_one("data.dedup", {}, items=[1, 1.0, 1]) == [1, 1.0]


def test_dedup_ignoring_case_still_compares_whole_objects_exactly() -> None:
    items = [{"t": "Hi"}, {"t": "hi"}]
    assert run_one("data.dedup", {"case_sensitive": False}, items=items) == items


def test_dedup_does_not_touch_its_input() -> None:
    items = ["a", "a"]
    batch = batch_of("data.dedup", {}, items=items)
    create_executor("data.dedup").run(batch, None)
    assert batch.items[0].inputs["items"] == ["a", "a"]


# ------------------------------------------------------------------------------- top_k


def test_top_k_takes_the_best_first() -> None:
    items, scores = ["a", "b", "c", "d"], [0.3, 0.9, 0.1, 0.5]
    assert run_one("data.top_k", {"k": 2}, items=items, scores=scores) == ["b", "d"]
    params = {"k": 2, "descending": False}
    assert run_one("data.top_k", params, items=items, scores=scores) == ["c", "a"]


@pytest.mark.parametrize("descending", [True, False])
def test_top_k_breaks_ties_by_original_order(descending: bool) -> None:
    items, scores = ["a", "b", "c", "d"], [1, 2, 1, 2]
    params = {"k": 3, "descending": descending}
    expected = ["b", "d", "a"] if descending else ["a", "c", "b"]
    assert run_one("data.top_k", params, items=items, scores=scores) == expected


def test_top_k_returns_everything_when_k_is_larger() -> None:
    items = [{"id": 1}, {"id": 2}]
    scores = [{"score": 1}, {"score": 2}]
    assert run_one("data.top_k", {"k": 10}, items=items, scores=scores) == items[::-1]


def test_top_k_needs_as_many_scores_as_items() -> None:
    message = error_of(run_one("data.top_k", {"k": 1}, items=["a"], scores=[1, 2]))
    assert "'items' has 1 entries but 'scores' has 2" in message


def test_top_k_rejects_scores_that_are_not_numbers() -> None:
    message = error_of(run_one("data.top_k", {"k": 1}, items=["a"], scores=[None]))
    assert "scores[0] is null" in message


# ------------------------------------------------------------------------ the registry


@pytest.mark.parametrize("kind", ["data.template", "data.filter", "data.dedup", "data.top_k"])
def test_each_kind_has_its_executor(kind: str) -> None:
    executor = create_executor(kind)
    assert executor.kind == kind
    assert not executor.needs_model


def test_an_empty_batch_gives_no_outcomes() -> None:
    assert create_executor("data.dedup").run(Batch("data.dedup", "1", None, []), None) == []
