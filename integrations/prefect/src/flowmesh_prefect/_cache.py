"""Prefect caching of FlowMesh tasks, keyed by who asks: the server URL and the token.

A FlowMesh task has no Prefect cache by default (FlowMesh's action cache already answers
repeated work). A flow may still opt in (``task_options={"cache_policy": INPUTS}``);
then Prefect would key the cached value by the inputs and the task's source alone, and
hand tenant B's value to tenant D, who never asked FlowMesh (so D's lineage, rights and
costs never see the request). ``TenantCachePolicy`` is added to every opted-in policy, so
the key also holds the control plane's URL and a hash of the token: a value cached for one
token is never returned for another. The token itself never enters a key or Prefect.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from prefect.cache_policies import CacheKeyFnPolicy, CachePolicy
from prefect.context import TaskRunContext

from flowmesh_prefect.credentials import CredentialsSource, resolve_credentials

__all__ = ["TenantCachePolicy", "tenant_key"]


def tenant_key(server_url: str, token: str) -> str:
    """What the cache key holds of a tenant: the URL and a sha256 of its token."""
    token_hash = hashlib.sha256(token.encode("utf-8")).hexdigest()
    return hashlib.sha256(f"{server_url.rstrip('/')}\n{token_hash}".encode()).hexdigest()


@dataclass
class TenantCachePolicy(CachePolicy):
    """A cache key part naming the FlowMesh server and tenant the task would ask."""

    credentials: CredentialsSource = None

    def compute_key(
        self,
        task_ctx: TaskRunContext,
        inputs: dict[str, Any],
        flow_parameters: dict[str, Any],
        **kwargs: Any,
    ) -> str | None:
        creds = resolve_credentials(self.credentials)
        return tenant_key(creds.server_url, creds.token.get_secret_value())


def with_tenant(policy: Any, key_fn: Any, credentials: CredentialsSource) -> CachePolicy:
    """``policy`` (or a ``cache_key_fn``'s policy) that also keys by the tenant."""
    base = CacheKeyFnPolicy(cache_key_fn=key_fn) if key_fn is not None else policy
    combined: CachePolicy = base + TenantCachePolicy(credentials=credentials)
    return combined
