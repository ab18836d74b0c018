"""The served OpenAPI spec types every registered kind's params (generated from the
registry, so a kind added later is typed without editing a schema)."""

from __future__ import annotations

from typing import Any

import httpx
from pydantic import BaseModel, Field

from flowmesh_core.api import create_app
from flowmesh_core.builtin_kinds import BUILTIN_KINDS
from flowmesh_core.control import ControlPlane
from flowmesh_core.registry import KindSpec, Registry
from flowmesh_core.settings import load_settings


class _ShoutParams(BaseModel):
    times: int = Field(default=1, ge=1, le=9)
    suffix: str = "!"


_SHOUT = KindSpec(kind="data.shout", version="1", params_model=_ShoutParams, description="x")


async def _served(registry: Registry) -> dict[str, Any]:
    settings = load_settings(redis_url="redis://127.0.0.1:6379/0", key_prefix="spec-test")
    app = create_app(ControlPlane(settings, registry=registry))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        response = await client.get("/openapi.json")
    assert response.status_code == 200
    spec: dict[str, Any] = response.json()
    return spec


def _resolve(spec: dict[str, Any], ref: str) -> dict[str, Any]:
    node: dict[str, Any] = spec
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return node


def _types(prop: dict[str, Any]) -> set[str]:
    if "type" in prop:
        return {prop["type"]}
    if "enum" in prop:
        return {type(v).__name__ for v in prop["enum"]}
    return {t for option in prop.get("anyOf", []) for t in _types(option)}


async def test_every_kind_has_typed_params() -> None:
    registry = Registry([*BUILTIN_KINDS, _SHOUT])
    spec = await _served(registry)
    schemas = spec["components"]["schemas"]
    for base in ("Operator", "WorkflowNode"):
        union = schemas[base]
        mapping = union["discriminator"]["mapping"]
        assert union["discriminator"]["propertyName"] == "kind"
        assert sorted(mapping) == registry.kinds()
        assert [v["$ref"] for v in union["oneOf"]] == [mapping[k] for k in registry.kinds()]
        for kind in registry.kinds():
            variant = _resolve(spec, mapping[kind])
            assert variant["properties"]["kind"]["const"] == kind
            params = _resolve(spec, variant["properties"]["params"]["$ref"])
            model = registry.get(kind).params_model
            assert set(params["properties"]) == set(model.model_fields), kind
            for name, prop in params["properties"].items():
                assert _types(prop), f"{kind}: params.{name} has no type: {prop}"
    shout = _resolve(spec, schemas["Operator"]["discriminator"]["mapping"]["data.shout"])
    times = _resolve(spec, shout["properties"]["params"]["$ref"])["properties"]["times"]
    assert times["type"] == "integer"
    assert times["maximum"] == 9
    generate = _resolve(spec, "#/components/schemas/GenerateParams")["properties"]
    assert generate["temperature"]["type"] == "number"
    assert generate["stop"]["type"] == "array"


async def test_submit_routes_refer_to_the_typed_bodies() -> None:
    spec = await _served(Registry.default())
    for path, schema in (("/v1/operators", "Operator"), ("/v1/workflows", "Workflow")):
        content = spec["paths"][path]["post"]["requestBody"]["content"]
        for media in content.values():
            assert media["schema"] == {"$ref": f"#/components/schemas/{schema}"}
    node = spec["components"]["schemas"]["Workflow"]["properties"]["nodes"]
    assert node["additionalProperties"] == {"$ref": "#/components/schemas/WorkflowNode"}
