"""The wire models: workflows as DAGs, model references, input forms, immutability."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from flowmesh_core.hashing import digest_value
from flowmesh_core.keys import expand
from flowmesh_core.models import (
    BlobInput,
    Item,
    ItemBlob,
    ItemLiteral,
    ItemManifest,
    LineageRecord,
    LiteralInput,
    ModelRef,
    NodeRef,
    Operator,
    Requester,
    WorkerProfile,
    Workflow,
    WorkflowNode,
    referenced_blobs,
)
from flowmesh_core.registry import Registry

DIGEST = digest_value(["a", "b"])
OTHER_DIGEST = digest_value("weights")
REGISTRY = Registry.default()

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=10,
)


def node(*refs: str, kind: str = "python") -> dict[str, Any]:
    return {"kind": kind, "inputs": {f"in{i}": {"ref": ref} for i, ref in enumerate(refs)}}


def op_key(op: Operator) -> str:
    return expand(op, REGISTRY, max_inline_bytes=1 << 20).op_key


# --- workflows -----------------------------------------------------------------------------


@st.composite
def dags(draw: st.DrawFn) -> tuple[list[str], dict[str, list[str]]]:
    """Node names in written order, and each node's dependencies (an acyclic graph)."""
    count = draw(st.integers(min_value=1, max_value=25))
    names = draw(st.permutations([f"n{i}" for i in range(count)]))  # names[i] is rank i
    deps = {
        name: draw(st.lists(st.sampled_from(names[:rank]), max_size=3)) if rank else []
        for rank, name in enumerate(names)
    }
    written = draw(st.permutations(names))
    return list(written), deps


@settings(max_examples=80, deadline=None)
@given(dag=dags())
def test_topological_order_puts_every_node_after_what_it_reads(
    dag: tuple[list[str], dict[str, list[str]]],
) -> None:
    written, deps = dag
    workflow = Workflow.model_validate({"nodes": {name: node(*deps[name]) for name in written}})
    order = workflow.topological_order()
    assert sorted(order) == sorted(written)
    position = {name: i for i, name in enumerate(order)}
    for name, reads in deps.items():
        assert all(position[dep] < position[name] for dep in reads), (name, reads, order)


def test_diamond_with_repeated_reference() -> None:
    workflow = Workflow.model_validate(
        {
            "nodes": {
                "join": node("left", "right", "left"),
                "left": node("root"),
                "right": node("root"),
                "root": node(),
            }
        }
    )
    order = workflow.topological_order()
    assert order[0] == "root"
    assert order[-1] == "join"
    assert workflow.nodes["join"].dependencies() == ["left", "right", "left"]


def test_a_long_chain_does_not_hit_the_recursion_limit() -> None:
    length = 5_000
    names = [f"n{i}" for i in range(length)]
    # Written last-first so the order cannot come from the mapping's own order.
    spec = {names[i]: node(names[i - 1]) if i else node() for i in reversed(range(length))}
    started = time.perf_counter()
    workflow = Workflow.model_validate({"nodes": spec})
    assert workflow.topological_order() == names
    assert time.perf_counter() - started < 10


def test_nodes_keep_the_order_they_were_written_in() -> None:
    workflow = Workflow.model_validate({"nodes": {"b": node(), "a": node(), "c": node()}})
    assert list(workflow.nodes) == ["b", "a", "c"]


def test_to_operator_substitutes_references() -> None:
    wf_node = WorkflowNode.model_validate(
        {
            "kind": "embed",
            "model": {"name": "mini", "revision": "r1"},
            "params": {"normalize": False},
            "inputs": {"texts": {"ref": "generate"}},
            "dedup": False,
        }
    )
    assert wf_node.dependencies() == ["generate"]
    op = wf_node.to_operator({"texts": LiteralInput(value=["x", "y"])})
    assert op == Operator(
        kind="embed",
        model=ModelRef(name="mini", revision="r1"),
        params={"normalize": False},
        inputs={"texts": ["x", "y"]},
        dedup=False,
    )
    by_blob = wf_node.to_operator({"texts": BlobInput(blob=DIGEST)})
    assert by_blob.inputs == {"texts": BlobInput(blob=DIGEST)}


def test_to_operator_keys_like_the_operator_written_by_hand() -> None:
    wf_node = WorkflowNode.model_validate(
        {"kind": "python", "version": "h1", "params": {"function": "m:f"},
         "inputs": {"a": {"ref": "up"}, "b": [1, 2], "c": {"blob": DIGEST}}}
    )  # fmt: skip
    op = wf_node.to_operator({"a": LiteralInput(value={"k": 1})})
    assert op.inputs == {
        "a": LiteralInput(value={"k": 1}),
        "b": LiteralInput(value=[1, 2]),
        "c": BlobInput(blob=DIGEST),
    }
    by_hand = Operator.model_validate(
        {"kind": "python", "version": "h1", "params": {"function": "m:f"},
         "inputs": {"a": {"k": 1}, "b": [1, 2], "c": {"blob": DIGEST}}}
    )  # fmt: skip
    assert op_key(op) == op_key(by_hand)


@settings(max_examples=50, deadline=None)
@given(
    values=st.dictionaries(st.from_regex(r"[a-z]{1,6}", fullmatch=True), json_values, max_size=4)
)
def test_operator_survives_a_json_round_trip(values: dict[str, Any]) -> None:
    op = Operator.model_validate(
        {
            "kind": "python",
            "version": "h",
            "model": "sha256:" + "0" * 64,
            "params": {"function": "m:f", "kwargs": values},
            "inputs": {**values, "blobbed": {"blob": DIGEST}},
        }
    )
    again = Operator.model_validate_json(op.model_dump_json())
    assert again == op
    assert op_key(again) == op_key(op)


def test_workflow_survives_a_json_round_trip() -> None:
    workflow = Workflow.model_validate(
        {
            "name": "wf",
            "nodes": {"a": {"kind": "embed", "inputs": {"texts": ["x"]}}, "b": node("a")},
        }
    )
    assert Workflow.model_validate_json(workflow.model_dump_json()) == workflow


# --- model references ----------------------------------------------------------------------

HEX = "ab" * 32


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        ("all-MiniLM-L6-v2", {"name": "all-MiniLM-L6-v2"}),
        ("org/model", {"name": "org/model"}),
        (f"sha256:{HEX}", {"digest": f"sha256:{HEX}"}),
        ({"name": "m", "revision": "main"}, {"name": "m", "revision": "main"}),
        ({"digest": f"sha256:{HEX}"}, {"digest": f"sha256:{HEX}"}),
    ],
)
def test_model_ref_from_written_forms(written: Any, expected: dict[str, str]) -> None:
    ref = ModelRef.model_validate(written)
    assert ref.canonical() == expected
    assert Operator(kind="embed", model=written).model == ref


@pytest.mark.parametrize(
    ("written", "message"),
    [
        ({"name": "m", "digest": f"sha256:{HEX}"}, "either 'name'"),
        ({}, "either 'name'"),
        ({"revision": "main"}, "either 'name'"),
        ("sha256:abc", "malformed digest"),
        (f"sha256:{HEX.upper()}", "malformed digest"),
        ("", "at least 1 character"),
        ({"name": "m", "rev": "x"}, "Extra inputs are not permitted"),
    ],
    ids=["both", "neither", "revision only", "short digest", "uppercase digest", "empty", "extra"],
)
def test_model_ref_rejects(written: Any, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ModelRef.model_validate(written)


def test_model_ref_revision_goes_with_a_name_only() -> None:
    # A digest already pins the exact weights; a revision beside it means nothing, yet it
    # would enter the op key and split the cache for the very same checkpoint.
    with pytest.raises(ValidationError, match="revision"):
        ModelRef.model_validate({"digest": f"sha256:{HEX}", "revision": "main"})


# --- input forms ---------------------------------------------------------------------------

INPUT_FORMS: list[tuple[str, Any, Any]] = [
    ("list literal", ["a", "b"], LiteralInput(value=["a", "b"])),
    ("string literal", "text", LiteralInput(value="text")),
    ("number literal", 3, LiteralInput(value=3)),
    ("null literal", None, LiteralInput(value=None)),
    ("empty mapping literal", {}, LiteralInput(value={})),
    ("other one-key mapping", {"text": "a"}, LiteralInput(value={"text": "a"})),
    (
        "two-key mapping with blob",
        {"blob": DIGEST, "n": 1},
        LiteralInput(value={"blob": DIGEST, "n": 1}),
    ),
    ("explicit value", {"value": 5}, LiteralInput(value=5)),
    ("value that looks like a blob", {"value": {"blob": 1}}, LiteralInput(value={"blob": 1})),
    ("value that looks like a ref", {"value": {"ref": "a"}}, LiteralInput(value={"ref": "a"})),
    ("blob", {"blob": DIGEST}, BlobInput(blob=DIGEST)),
    ("literal model", LiteralInput(value=[1]), LiteralInput(value=[1])),
    ("blob model", BlobInput(blob=DIGEST), BlobInput(blob=DIGEST)),
]


@pytest.mark.parametrize(
    ("written", "expected"), [f[1:] for f in INPUT_FORMS], ids=[f[0] for f in INPUT_FORMS]
)
@pytest.mark.parametrize("model", [Operator, WorkflowNode])
def test_input_forms(model: type[Operator | WorkflowNode], written: Any, expected: Any) -> None:
    parsed = model.model_validate({"kind": "python", "inputs": {"x": written}})
    assert parsed.inputs["x"] == expected
    assert type(parsed.inputs["x"]) is type(expected)


def test_ref_form_in_a_workflow_node() -> None:
    parsed = WorkflowNode.model_validate({"kind": "embed", "inputs": {"texts": {"ref": "up"}}})
    assert parsed.inputs["texts"] == NodeRef(ref="up")


def test_explicit_value_form_keys_like_the_bare_literal() -> None:
    bare = Operator(kind="embed", model="m", inputs={"texts": ["a", "b"]})
    explicit = Operator(kind="embed", model="m", inputs={"texts": {"value": ["a", "b"]}})
    assert op_key(bare) == op_key(explicit)
    inline_blob_lookalike = Operator(
        kind="python",
        version="h",
        params={"function": "m:f"},
        inputs={"x": {"value": {"blob": DIGEST}}},
    )
    real_blob = Operator(
        kind="python", version="h", params={"function": "m:f"}, inputs={"x": {"blob": DIGEST}}
    )
    assert op_key(inline_blob_lookalike) != op_key(real_blob)


# --- item inputs: typed from the API to the worker ----------------------------------------


def python_op(**inputs: Any) -> Operator:
    return Operator(kind="python", version="h", params={"function": "m:f"}, inputs=inputs)


def test_a_literal_shaped_like_a_blob_reference_stays_a_literal_item_input() -> None:
    [item] = expand(
        python_op(x={"value": {"blob": DIGEST}}), REGISTRY, max_inline_bytes=1 << 20
    ).items
    assert item.inputs == {"x": ItemLiteral(value={"blob": DIGEST})}
    [by_blob] = expand(python_op(x={"blob": DIGEST}), REGISTRY, max_inline_bytes=1 << 20).items
    assert by_blob.inputs == {"x": ItemBlob(digest=DIGEST)}


def test_list_elements_shaped_like_blob_references_stay_literal_item_inputs() -> None:
    records = [{"blob": DIGEST}, {"blob": OTHER_DIGEST, "k": 1}]
    op = Operator(kind="data.template", params={"template": "{blob}"}, inputs={"records": records})
    items = expand(op, REGISTRY, max_inline_bytes=1 << 20).items
    assert [item.inputs["records"] for item in items] == [ItemLiteral(value=r) for r in records]


def test_list_elements_read_from_a_blob_stay_literal_item_inputs() -> None:
    records = [{"blob": DIGEST}]
    op = Operator(
        kind="data.template",
        params={"template": "{blob}"},
        inputs={"records": {"blob": OTHER_DIGEST}},
    )
    exp = expand(op, REGISTRY, max_inline_bytes=1 << 20, load_blob=lambda _d: records)
    assert [item.inputs["records"] for item in exp.items] == [ItemLiteral(value=records[0])]
    assert exp.manifest_digests == ()


@pytest.mark.parametrize(
    ("wire", "typed"),
    [
        ({"kind": "literal", "value": {"blob": DIGEST}}, ItemLiteral(value={"blob": DIGEST})),
        ({"kind": "literal", "value": None}, ItemLiteral(value=None)),
        ({"kind": "blob", "digest": DIGEST}, ItemBlob(digest=DIGEST)),
        ({"kind": "manifest", "digest": DIGEST}, ItemManifest(digest=DIGEST)),
    ],
    ids=["literal lookalike", "null literal", "blob", "manifest"],
)
def test_item_inputs_round_trip_through_the_stored_spec(wire: Any, typed: Any) -> None:
    item = ITEM.model_copy(update={"inputs": {"texts": typed}})
    stored = item.model_dump_json()
    assert json.loads(stored)["inputs"] == {"texts": wire}
    assert Item.model_validate_json(stored) == item
    assert type(Item.model_validate_json(stored).inputs["texts"]) is type(typed)


@pytest.mark.parametrize(
    "untyped",
    [{"blob": DIGEST}, "a", {"kind": "blob", "digest": "sha256:xyz"}, {"kind": "ref", "ref": "a"}],
    ids=["bare blob reference", "bare value", "bad digest", "unknown kind"],
)
def test_an_item_input_must_say_what_it_is(untyped: Any) -> None:
    with pytest.raises(ValidationError):
        Item.model_validate({**ITEM.model_dump(), "inputs": {"texts": untyped}})


def test_referenced_blobs_are_the_blob_inputs_only() -> None:
    node = WorkflowNode.model_validate(
        {
            "kind": "python",
            "inputs": {
                "a": {"blob": DIGEST},
                "b": {"value": {"blob": OTHER_DIGEST}},
                "c": [{"blob": OTHER_DIGEST}],
                "d": {"ref": "up"},
                "e": {"blob": DIGEST},
            },
        }
    )
    assert referenced_blobs(node.inputs) == {DIGEST}
    assert referenced_blobs(python_op(x={"blob": OTHER_DIGEST}).inputs) == {OTHER_DIGEST}
    assert referenced_blobs(python_op(x=1).inputs) == set()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"kind": "python", "inputs": {"bad name": 1}}, "not a valid name"),
        ({"kind": "python", "inputs": {"x": {"blob": 12}}}, "string"),
        ({"kind": "python", "inputs": {"x": {"ref": "up"}}}, "only inside a workflow"),
        ({"kind": ""}, "at least 1 character"),
    ],
    ids=["input name", "blob not a string", "ref in operator", "empty kind"],
)
def test_operator_shape_errors(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Operator.model_validate(data)


# --- immutability and unknown fields -------------------------------------------------------

WORKER = {
    "worker_id": "w",
    "accelerator": "cpu",
    "memory_bytes": 1,
    "price_per_hour": 0,
    "watts": 0,
}
ITEM = Item(
    op_key="0" * 64,
    signature="1" * 64,
    kind="embed",
    version="1",
    params={},
    inputs={"texts": ItemLiteral(value="a")},
    input_digests={"texts": digest_value("a")},
)
FROZEN: list[tuple[object, str, object]] = [
    (Operator(kind="embed"), "kind", "score"),
    (Operator(kind="embed"), "dedup", False),
    (ModelRef(name="m"), "name", "n"),
    (LiteralInput(value=1), "value", 2),
    (BlobInput(blob=DIGEST), "blob", OTHER_DIGEST),
    (Workflow.model_validate({"nodes": {"a": node()}}), "name", "x"),
    (WorkflowNode(kind="embed"), "kind", "score"),
    (ITEM, "op_key", "f" * 64),
    (ItemLiteral(value=1), "value", 2),
    (ItemBlob(digest=DIGEST), "digest", OTHER_DIGEST),
    (ItemManifest(digest=DIGEST), "digest", OTHER_DIGEST),
    (Requester(tenant="t", workflow="w", node="n"), "tenant", "u"),
    (WorkerProfile.model_validate(WORKER), "slots", 2),
]


@pytest.mark.parametrize(
    ("value", "field", "new"), FROZEN, ids=[f"{type(v).__name__}.{f}" for v, f, _ in FROZEN]
)
def test_models_are_frozen(value: object, field: str, new: object) -> None:
    before = getattr(value, field)
    with pytest.raises(ValidationError, match="frozen"):
        setattr(value, field, new)
    assert getattr(value, field) == before


@pytest.mark.parametrize(
    ("model", "data"),
    [
        (Operator, {"kind": "embed", "modle": "m"}),
        (WorkflowNode, {"kind": "embed", "needs": ["a"]}),
        (Workflow, {"nodes": {"a": node()}, "tenant": "t"}),
        (ModelRef, {"name": "m", "branch": "main"}),
        (LiteralInput, {"value": 1, "also": 2}),
        (BlobInput, {"blob": DIGEST, "size": 3}),
        (ItemBlob, {"digest": DIGEST, "blob": DIGEST}),
        (Requester, {"tenant": "t", "workflow": "w", "node": "n", "org": "o"}),
    ],
    ids=lambda v: v.__name__ if isinstance(v, type) else None,
)
def test_unknown_fields_are_rejected(model: type[Any], data: dict[str, Any]) -> None:
    extra = (set(data) - set(model.model_fields)).pop()
    with pytest.raises(ValidationError, match="Extra inputs are not permitted") as info:
        model.model_validate(data)
    assert extra in str(info.value)


@pytest.mark.parametrize(
    ("model", "data"),
    [
        (Requester, {"tenant": "t", "workflow": "w:1", "node": "n"}),
        (Requester, {"tenant": "t/u", "workflow": "w", "node": "n"}),
        (Requester, {"tenant": "t", "workflow": "w", "node": "n", "index": -1}),
        (WorkerProfile, {**WORKER, "price_per_hour": -1}),
        (WorkerProfile, {**WORKER, "slots": 0}),
        (
            LineageRecord,
            {"tenant": "t", "workflow": "w", "node": "n", "index": 0, "op_key": "k",
             "status": "finished", "satisfied_by": "executed", "requested_at": 0.0},
        ),
    ],
    ids=["workflow id", "tenant name", "negative index", "negative price", "no slots", "status"],
)  # fmt: skip
def test_record_fields_are_validated(model: type[Any], data: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        model.model_validate(data)


def test_a_workflows_result_node_is_the_one_named_or_its_only_final_node() -> None:
    """The rule every adapter uses for whose result a task (or step) returns."""
    from flowmesh_core.errors import InvalidInputError
    from flowmesh_core.models.parse import parse_workflow

    tmpl = {"kind": "data.template", "params": {"template": "{x}"}}
    chain = parse_workflow(
        {
            "nodes": {
                "a": {**tmpl, "inputs": {"records": [{"x": 1}]}},
                "b": {**tmpl, "inputs": {"records": {"ref": "a"}}},
            }
        }
    )
    assert chain.result_node() == "b"
    assert chain.result_node("a") == "a"
    with pytest.raises(InvalidInputError, match="node='c' is not in the workflow"):
        chain.result_node("c")
    forked = parse_workflow(
        {
            "nodes": {
                "a": {**tmpl, "inputs": {"records": [{"x": 1}]}},
                "b": {**tmpl, "inputs": {"records": [{"x": 2}]}},
            }
        }
    )
    with pytest.raises(InvalidInputError, match=r"2 final nodes .* whose result this step"):
        forked.result_node(who="this step")
