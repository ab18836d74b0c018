"""The OpenAPI document's body schemas: the documents the submit routes read, with each
registered kind's params typed.

The submit routes parse their bodies themselves (JSON or YAML), so FastAPI does not know
their schemas; this module adds them to ``components``. ``Operator`` and ``WorkflowNode``
become a union discriminated on ``kind``: one variant per kind in the registry, whose
``params`` is that kind's params model (types, bounds, defaults) and whose ``kind`` is
that name. Generated from the registry at the time the spec is served, so a kind
registered later appears without anyone editing a schema (docs/kinds.md is generated
from the same registry).

This module must never decide what is valid: the control plane validates; the schema
describes.
"""

from __future__ import annotations

import copy
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from flowmesh_core.models import Operator, Workflow
from flowmesh_core.models.api import BlobGrantRequest, ResultsRequest
from flowmesh_core.registry import Registry

__all__ = ["add_body_schemas", "kind_schema_name"]

_REF = "#/components/schemas/{model}"
_BY_KIND = ("Operator", "WorkflowNode")


def kind_schema_name(base: str, kind: str) -> str:
    """The component name of ``base`` (Operator, WorkflowNode) for one kind:
    ``Operator.llm.generate``."""
    return f"{base}.{kind}"


def add_body_schemas(schema: dict[str, Any], registry: Registry) -> None:
    """Put the bodies' schemas (Workflow, Operator, ResultsRequest, BlobGrantRequest) and
    every kind's params model in ``schema``'s components, operators typed by kind."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    specs = [registry.get(kind) for kind in registry.kinds()]
    models: list[type[BaseModel]] = [Workflow, Operator, ResultsRequest, BlobGrantRequest]
    models += [spec.params_model for spec in specs]
    refs, defs = models_json_schema([(m, "validation") for m in models], ref_template=_REF)
    for name, definition in defs.get("$defs", {}).items():
        _put(components, name, definition)
    for base in _BY_KIND:
        generic = components[base]
        variants: dict[str, str] = {}
        for spec in specs:
            name = kind_schema_name(base, spec.kind)
            variant = copy.deepcopy(generic)
            variant["title"] = f"{base} of kind {spec.kind}"
            variant.pop("description", None)
            properties = variant["properties"]
            properties["kind"] = {"type": "string", "const": spec.kind, "title": "Kind"}
            params_ref = refs[(spec.params_model, "validation")]["$ref"]
            properties["params"] = {"$ref": params_ref, "description": spec.description}
            _put(components, name, variant)
            variants[spec.kind] = _REF.format(model=name)
        components[base] = {
            "title": base,
            "description": generic.get("description", ""),
            "oneOf": [{"$ref": ref} for ref in variants.values()],
            "discriminator": {"propertyName": "kind", "mapping": variants},
        }


def _put(components: dict[str, Any], name: str, definition: dict[str, Any]) -> None:
    existing = components.setdefault(name, definition)
    if existing != definition:
        raise RuntimeError(f"OpenAPI schema {name!r} means two different things")
