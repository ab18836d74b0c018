"""Code versions and asset checks that follow what FlowMesh computes.

``code_version(operator)`` is what an asset built on one FlowMesh operator should pass as
``@dg.asset(code_version=...)``: a hash of the operator's kind, version, model and params,
the parts of FlowMesh's op key that are the asset's *code* (its inputs are its upstream
data, whose versions Dagster already tracks). Change the model or a param and Dagster
marks the asset and everything downstream stale, as FlowMesh would compute it anew; edit
anything else in the asset's body and nothing is stale.

``digest_check(asset)`` is an asset check that the asset's stored FlowMesh result is
there and still hashes to the digest its last materialization recorded.
"""

# No `from __future__ import annotations`: Dagster reads the check's context annotation
# as a real type.
import hashlib
from collections.abc import Mapping
from typing import Any

import dagster as dg

from flowmesh_core.errors import FlowMeshError
from flowmesh_core.hashing import canonical_json
from flowmesh_core.models import Operator
from flowmesh_core.models.parse import parse_operator

__all__ = ["code_version", "digest_check"]

RESULT_DIGEST = "flowmesh/result_digest"


def code_version(operator: Operator | Mapping[str, Any]) -> str:
    """``fm-`` and 16 hex digits of sha256 over (kind, version, model, params)."""
    op = operator if isinstance(operator, Operator) else parse_operator(dict(operator))
    identity = {
        "kind": op.kind,
        "version": op.version,
        "model": op.model.model_dump(mode="json") if op.model is not None else None,
        "params": op.params,
    }
    return "fm-" + hashlib.sha256(canonical_json(identity)).hexdigest()[:16]


def digest_check(
    asset: dg.AssetKey | str | dg.AssetsDefinition, *, resource_key: str = "flowmesh"
) -> dg.AssetChecksDefinition:
    """An asset check: the result digest of ``asset``'s last materialization (its
    ``flowmesh/result_digest`` metadata) reads back from FlowMesh and verifies. It fails
    when the asset has no FlowMesh result, or FlowMesh cannot serve it intact."""
    key = asset.key if isinstance(asset, dg.AssetsDefinition) else dg.AssetKey.from_coercible(asset)

    @dg.asset_check(
        asset=key,
        name="flowmesh_digest_verifies",
        description="The stored FlowMesh result reads back and hashes to its digest.",
        required_resource_keys={resource_key},
    )
    def check(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
        event = context.instance.get_latest_materialization_event(key)
        materialization = event.asset_materialization if event is not None else None
        entry = materialization.metadata.get(RESULT_DIGEST) if materialization else None
        if entry is None:
            return dg.AssetCheckResult(
                passed=False,
                description=f"{key.to_user_string()} has no materialization with a "
                f"{RESULT_DIGEST}: materialize it through FlowMeshResource first",
            )
        digest = str(entry.value)
        resource = getattr(context.resources, resource_key)
        try:
            with resource.get_client() as client:
                size = len(client.result(digest))  # verified: the bytes hash to digest
        except FlowMeshError as exc:
            return dg.AssetCheckResult(
                passed=False,
                description=f"{digest}: {exc}",
                metadata={RESULT_DIGEST: digest, "flowmesh/error": type(exc).__name__},
            )
        return dg.AssetCheckResult(
            passed=True, metadata={RESULT_DIGEST: digest, "flowmesh/bytes": size}
        )

    return check
