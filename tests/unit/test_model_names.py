"""Model names: aliases share one op key; paths are models only under the model roots,
and the refusal says nothing about any filesystem (docs/isolation.md, "Models")."""

from __future__ import annotations

import pytest

from flowmesh_core.errors import UnknownModelError
from flowmesh_core.keys import expand
from flowmesh_core.model_names import (
    BUILTIN_MODELS,
    canonical_model,
    check_model_path,
    model_roots,
)
from flowmesh_core.models import ModelRef, Operator
from flowmesh_core.registry import Registry
from flowmesh_core.settings import load_settings

ROOTS = ("/srv/models", "/data/team-models/")


def _embed(model: str) -> Operator:
    return Operator.model_validate(
        {"kind": "embed", "model": model, "inputs": {"texts": {"value": ["a", "b"]}}}
    )


@pytest.mark.parametrize(
    "alias",
    [
        "all-MiniLM-L6-v2",
        "sentence-transformers/all-MiniLM-L6-v2",
        "sentence-transformers/all-minilm-l6-v2",
        "ALL-MINILM-L6-V2",
    ],
)
def test_aliases_of_one_model_share_op_and_item_keys(alias: str) -> None:
    registry = Registry.default()
    reference = expand(
        _embed("sentence-transformers/all-MiniLM-L6-v2"), registry, max_inline_bytes=1 << 16
    )
    other = expand(_embed(alias), registry, max_inline_bytes=1 << 16)
    assert other.op_key == reference.op_key
    assert [i.op_key for i in other.items] == [i.op_key for i in reference.items]
    assert {i.model for i in other.items} == {
        ModelRef(name="sentence-transformers/all-MiniLM-L6-v2")
    }


def test_distinct_models_keep_distinct_keys() -> None:
    registry = Registry.default()
    keys = {
        expand(_embed(name), registry, max_inline_bytes=1 << 16).op_key
        for name in ("all-MiniLM-L6-v2", "someorg/other-model", "/srv/models/mini")
    }
    assert len(keys) == 3


def test_a_path_is_written_in_normal_form() -> None:
    ref = canonical_model(ModelRef(name="/srv/models//team/./mini/"))
    assert ref.name == "/srv/models/team/mini"
    assert canonical_model(ModelRef(digest="sha256:" + "a" * 64)).digest == "sha256:" + "a" * 64
    assert canonical_model(ModelRef(name="all-MiniLM-L6-v2", revision="r1")).revision == "r1"


@pytest.mark.parametrize(
    "name",
    [
        "/etc",
        "/etc/passwd",
        "../../etc",
        "./models/x",
        "~/models/x",
        "/srv/models",  # a root itself is not a model
        "/srv/models/../../etc",
        "/srv/models-evil/x",
        "/tmp/outside-the-roots",
        "models\\..\\etc",
        "org//name",
    ],
)
def test_paths_outside_the_roots_are_unknown_models(name: str) -> None:
    with pytest.raises(UnknownModelError) as caught:
        check_model_path(ModelRef(name=name), ROOTS)
    message = str(caught.value)
    # The same words for every refused name: no oracle, and nothing about the roots.
    with pytest.raises(UnknownModelError) as other:
        check_model_path(ModelRef(name="/x"), ROOTS)
    reference = str(other.value)
    assert message.replace(repr(name), "N") == reference.replace(repr("/x"), "N")
    for root in ROOTS:
        assert root.rstrip("/") not in message.replace(repr(name), "N")
    for builtin in BUILTIN_MODELS:
        assert builtin in message
    assert "Unrecognized" not in message


@pytest.mark.parametrize(
    "name",
    [
        "/srv/models/mini",
        "/data/team-models/a/b",
        "/srv/models/x/../mini",
        "all-MiniLM-L6-v2",
        "org/name",
    ],
)
def test_paths_under_the_roots_and_model_ids_pass(name: str) -> None:
    check_model_path(ModelRef(name=name), ROOTS)


def test_roots_default_to_the_worker_model_dir() -> None:
    assert model_roots(load_settings(worker_model_dir="/var/fm/models")) == ("/var/fm/models",)
    settings = load_settings(worker_model_dir="/var/fm/models", model_roots=["/a", "/b"])
    assert model_roots(settings) == ("/a", "/b")
