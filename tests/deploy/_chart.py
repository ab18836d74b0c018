"""Rendering deploy/helm/flowmesh/ with Helm's own engine, and checking the objects.

The renderer is ``helm-python-sdk``: Helm v4's Go SDK (``helm.sh/helm/v4``, the code the
``helm`` binary runs) built as a C library and called through ctypes. ``render`` is
``helm template``: the same value coalescing, ``values.schema.json`` validation, template
functions and ``fail``; offline, so ``lookup`` finds nothing and ``.Capabilities`` are
Helm's defaults (the chart uses neither).

Objects are validated against the Kubernetes OpenAPI schemas that ``kubernetes-validate``
bundles, and the custom resources against the CRD schemas kept in ``schemas/`` (README
there says which release each came from). Both are checked strictly: a field the schema
does not know is an error, as with ``kubectl apply --validate=strict``.
"""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path
from typing import Any

import helm_python as helm
import jsonschema
import kubernetes_validate
import yaml

__all__ = ["CHART", "CRD_SCHEMAS", "by_kind", "render", "validate_object"]

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "flowmesh"
SCHEMAS = Path(__file__).resolve().parent / "schemas"
CRD_SCHEMAS = {
    ("keda.sh/v1alpha1", "ScaledObject"): "scaledobject-keda.sh-v1alpha1.json",
    ("keda.sh/v1alpha1", "TriggerAuthentication"): "triggerauthentication-keda.sh-v1alpha1.json",
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "servicemonitor-monitoring.coreos.com-v1.json",
}


def render(
    values: dict[str, Any], *, name: str = "fm", namespace: str = "flowmesh"
) -> tuple[list[dict[str, Any]], str]:
    """The objects ``helm template`` would print for ``values``, and NOTES.txt."""
    with helm.Chart.load(CHART) as chart:
        manifests = chart.render(values, name=name, namespace=namespace, is_install=True)
    objects: list[dict[str, Any]] = []
    notes = ""
    for path, text in sorted(manifests.items()):
        if path.endswith("NOTES.txt"):
            notes = text
            continue
        objects.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return objects, notes


def by_kind(objects: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    """The objects of one kind, by name."""
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def validate_object(obj: dict[str, Any], kube_version: str) -> None:
    """Raise if ``obj`` does not fit its schema (Kubernetes ``kube_version``, or its CRD)."""
    key = (obj["apiVersion"], obj["kind"])
    if key in CRD_SCHEMAS:
        jsonschema.Draft202012Validator(_crd_schema(CRD_SCHEMAS[key])).validate(obj)
        return
    kubernetes_validate.validate(obj, kube_version, strict=True)


@cache
def _crd_schema(filename: str) -> dict[str, Any]:
    schema = json.loads((SCHEMAS / filename).read_text())
    return _strict(copy.deepcopy(schema))


def _strict(node: Any) -> Any:
    """The schema with unknown fields refused, as the API server prunes or (with strict
    field validation) rejects them: every object with ``properties`` and no
    ``additionalProperties`` or ``x-kubernetes-preserve-unknown-fields`` gets
    ``additionalProperties: false``."""
    if isinstance(node, dict):
        for value in node.values():
            _strict(value)
        if (
            "properties" in node
            and "additionalProperties" not in node
            and not node.get("x-kubernetes-preserve-unknown-fields")
        ):
            node["additionalProperties"] = False
    elif isinstance(node, list):
        for value in node:
            _strict(value)
    return node
