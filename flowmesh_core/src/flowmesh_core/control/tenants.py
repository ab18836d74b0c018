"""Tenants and their bearer tokens. Tokens are stored hashed; a token is shown once.

A token is 32 random bytes (url-safe base64) with an ``fm_`` prefix; Redis holds only its
sha256, so a copy of Redis does not let anyone act as a tenant.
"""

from __future__ import annotations

import hashlib
import secrets

from pydantic import ValidationError

from flowmesh_core.errors import AuthenticationError, ConflictError, InvalidInputError
from flowmesh_core.models.api import Tenant
from flowmesh_core.store import Store

__all__ = ["authenticate", "create_tenant", "hash_token"]

TOKEN_PREFIX = "fm_"  # noqa: S105 (a marker that makes leaked tokens searchable)


def hash_token(token: str) -> str:
    """The form a token is stored in."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


async def create_tenant(
    store: Store, name: str, *, organisation: str | None = None, admin: bool = False
) -> tuple[Tenant, str]:
    """Create a tenant; returns it and its token (which is not stored and cannot be shown again)."""
    try:
        tenant = Tenant(name=name, organisation=organisation, admin=admin)
    except ValidationError as exc:
        raise InvalidInputError(
            f"invalid tenant: {exc.errors()[0]['msg'].removeprefix('Value error, ')}"
        ) from exc
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    if not await store.add_tenant(hash_token(token), tenant.model_dump_json(), name):
        raise ConflictError(f"tenant {name!r} already exists; pick another name")
    return tenant, token


async def authenticate(store: Store, authorization: str | None) -> Tenant:
    """The tenant holding the bearer token in an ``Authorization`` header value."""
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthenticationError(
            "missing bearer token: send 'Authorization: Bearer <token>' "
            "(create one with `flowmesh tenant create NAME`)"
        )
    record = await store.tenant_by_token(hash_token(token.strip()))
    if record is None:
        raise AuthenticationError("unknown token: check it, or create a tenant for it")
    return Tenant.model_validate_json(record)
