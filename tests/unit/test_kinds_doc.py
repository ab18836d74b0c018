"""docs/kinds.md is what the registry renders: a kind, param or input added to the code
without regenerating the page (`python -m flowmesh_core.kinds_doc`) fails here."""

from __future__ import annotations

from pathlib import Path

from flowmesh_core.kinds_doc import render
from flowmesh_core.registry import Registry

PAGE = Path(__file__).resolve().parents[2] / "docs" / "kinds.md"


def test_the_committed_page_is_what_the_registry_renders() -> None:
    assert PAGE.read_text(encoding="utf-8") == render(), (
        "docs/kinds.md is stale: run `python -m flowmesh_core.kinds_doc`"
    )


def test_the_page_names_every_kind_and_param() -> None:
    text = render()
    registry = Registry.default()
    for kind in registry.kinds():
        assert f"## `{kind}`" in text
        for param in registry.get(kind).params_model.model_fields:
            assert f"| `{param}` |" in text, (kind, param)
