"""docs/kinds.md, generated from the registry so the page cannot drift from the code.

``python -m flowmesh_core.kinds_doc`` rewrites the page; a test fails when the committed
page differs from what this renders. Everything on the page comes from each KindSpec:
its description, version, inputs, params (from the params model's JSON schema) and how
its items dedup. This module must never describe a kind by hand.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from flowmesh_core.registry import KindSpec, Registry

__all__ = ["render"]

_HEADER = """# Operator kinds

Generated from the registry by `python -m flowmesh_core.kinds_doc`; do not edit by hand
(a test fails when this page differs from the code). An operator is `kind` + `version` +
`model` + `params` + `inputs`; every param is part of its op key unless the kind drops
one that cannot change the result. Unknown params and inputs are refused.
"""


def _type(schema: dict[str, Any]) -> str:
    if "anyOf" in schema:
        return " or ".join(_type(s) for s in schema["anyOf"])
    if "enum" in schema:
        return " / ".join(f"`{json.dumps(v)}`" for v in schema["enum"])
    if "const" in schema:
        return f"`{json.dumps(schema['const'])}`"
    kind = str(schema.get("type", "any"))
    if kind == "array" and "items" in schema:
        return f"list of {_type(schema['items'])}"
    return kind


def _bounds(schema: dict[str, Any]) -> str:
    if "anyOf" in schema:
        return ", ".join(b for b in (_bounds(s) for s in schema["anyOf"]) if b)
    words = {"minimum": "≥", "exclusiveMinimum": ">", "maximum": "≤", "exclusiveMaximum": "<"}
    parts = [f"{sign} {schema[k]}" for k, sign in words.items() if k in schema]
    for key, word in (("minLength", "at least"), ("maxLength", "at most")):
        if key in schema:
            parts.append(f"{word} {schema[key]} long")
    for key, word in (("minItems", "at least"), ("maxItems", "at most")):
        if key in schema:
            parts.append(f"{word} {schema[key]} entries")
    return ", ".join(parts)


def _params(spec: KindSpec) -> list[str]:
    schema = spec.params_model.model_json_schema()
    props: dict[str, Any] = schema.get("properties", {})
    if not props:
        return ["No params."]
    required = set(schema.get("required", []))
    rows = ["| param | type | default | limits | per item |", "|---|---|---|---|---|"]
    for name, prop in props.items():
        default = "required" if name in required else f"`{json.dumps(prop.get('default'))}`"
        per_item = "yes" if name in spec.per_item_params else ""
        rows.append(f"| `{name}` | {_type(prop)} | {default} | {_bounds(prop)} | {per_item} |")
    return rows


def _inputs(spec: KindSpec) -> str:
    names = [f"`{n}` (required)" for n in sorted(spec.required_inputs)]
    names += [f"`{n}` (optional)" for n in sorted(spec.optional_inputs)]
    if spec.open_inputs:
        names.append("any other name (passed to the function)")
    return ", ".join(names) or "none"


def _section(spec: KindSpec) -> list[str]:
    version = f"`{spec.version}`" if spec.version else "required (the caller supplies it)"
    split = (
        f"one item per element of `{spec.batch_input}`; the node's result is a manifest "
        '`{"manifest": [digest, ...]}` of the items\' results, in element order'
        if spec.batch_input
        else "runs whole: one item, its result is the node's result"
    )
    lines = [f"## `{spec.kind}`", "", spec.description or "", ""]
    lines += [
        f"- **version**: {version}",
        f"- **model**: {'required' if spec.needs_model else 'none'}",
    ]
    lines += [f"- **inputs**: {_inputs(spec)}", f"- **items**: {split}"]
    if spec.samples_param:
        lines.append(
            f"- **samples**: when sampling, `{spec.samples_param}` distinct samples per "
            "element, each its own item keyed by seed and sample index (0-based)"
        )
    if spec.weight_input:
        lines.append(
            f"- **weight**: the item stands for (elements of `{spec.weight_input}`) times "
            "`epochs` units of work in the scheduler's utility; each run is its own batch"
        )
    return [*lines, "", "Params:", "", *_params(spec), ""]


def render(registry: Registry | None = None) -> str:
    """The page's text for ``registry`` (the built-in kinds by default)."""
    registry = registry or Registry.default()
    lines = [_HEADER]
    for kind in registry.kinds():
        lines += _section(registry.get(kind))
    return "\n".join(lines).rstrip() + "\n"


def main() -> None:
    """Write the page to the path given (default ``docs/kinds.md``)."""
    path = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/kinds.md")
    path.write_text(render(), encoding="utf-8")


if __name__ == "__main__":
    main()
