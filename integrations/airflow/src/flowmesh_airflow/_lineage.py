"""What a finished FlowMesh task tells Airflow's lineage: OpenLineage facets and Assets.

OpenLineage (the ``apache-airflow-providers-openlineage`` provider, when installed): the
task's inputs and outputs are datasets named by their CAS digest in the namespace
``flowmesh://<host:port>`` of the control plane that holds them, and a ``flowmesh`` run
facet says how FlowMesh satisfied the work (items executed, cache hits, joined), so a
lineage tool sees that a result was shared rather than recomputed.

Assets: an ``Asset`` among the task's outlets gets the result (digest, workflow, how it
was satisfied) as its event's ``extra``; an ``AssetAlias`` among them gets one
content-addressed Asset per result, ``flowmesh://<host:port>/<digest>``.

This module only translates a finished task's reference; it never calls FlowMesh.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from airflow.providers.openlineage.extractors import OperatorLineage

__all__ = ["asset_uri", "emit_assets", "input_digests", "namespace", "operator_lineage"]

_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


def namespace(server_url: str) -> str:
    """The OpenLineage namespace (and Asset authority) of a control plane's CAS."""
    return f"flowmesh://{urlsplit(server_url).netloc}"


def asset_uri(server_url: str, digest: str) -> str:
    """The content-addressed Asset of one result."""
    return f"{namespace(server_url)}/{digest}"


def input_digests(document: Any) -> list[str]:
    """Every digest the submitted spec's ``inputs`` name (blobs and manifests), in order."""
    found: list[str] = []

    def walk(value: Any, in_inputs: bool) -> None:
        if isinstance(value, Mapping):
            for key, item in value.items():
                walk(item, in_inputs or key == "inputs")
        elif isinstance(value, list):
            for item in value:
                walk(item, in_inputs)
        elif in_inputs and isinstance(value, str) and _DIGEST.fullmatch(value):
            found.append(value)

    walk(document, False)
    return list(dict.fromkeys(found))


def _outputs(reference: Mapping[str, Any]) -> list[str]:
    nodes = reference.get("nodes") or {reference["node"]: reference}
    return [n["result_digest"] for n in nodes.values() if n.get("result_digest")]


def operator_lineage(
    server_url: str, document: Any, reference: Mapping[str, Any], ui_url: str
) -> OperatorLineage:
    """The OpenLineage description of a finished task (imports the provider lazily)."""
    from airflow.providers.openlineage.extractors import OperatorLineage
    from openlineage.client.event_v2 import Dataset

    from flowmesh_airflow._facets import FlowMeshRunFacet

    where = namespace(server_url)
    facet = FlowMeshRunFacet(
        workflowId=reference["workflow_id"],
        node=reference["node"],
        opKey=reference.get("op_key"),
        resultDigest=reference.get("result_digest"),
        satisfiedBy=reference.get("satisfied_by"),
        items=dict(reference.get("items") or {}),
        url=ui_url,
    )
    return OperatorLineage(
        inputs=[Dataset(namespace=where, name=d) for d in input_digests(document)],
        outputs=[Dataset(namespace=where, name=d) for d in _outputs(reference)],
        run_facets={"flowmesh": facet},
    )


def emit_assets(
    outlets: Iterable[Any], outlet_events: Any, server_url: str, reference: Mapping[str, Any]
) -> None:
    """Describe the task's result on its Asset outlets (see the module docstring)."""
    from airflow.sdk import Asset, AssetAlias

    extra = {
        "workflow_id": reference["workflow_id"],
        "node": reference["node"],
        "result_digest": reference.get("result_digest"),
        "satisfied_by": reference.get("satisfied_by"),
    }
    for outlet in outlets:
        if isinstance(outlet, AssetAlias):
            for digest in _outputs(reference):
                outlet_events[outlet].add(Asset(asset_uri(server_url, digest)), extra=extra)
        elif isinstance(outlet, Asset):
            outlet_events[outlet].extra.update(extra)
