"""Tenants and their bearer tokens. Tokens are stored hashed; a token is shown once.

A token is 32 random bytes (url-safe base64) with an ``fm_`` prefix; Redis holds only its
sha256, so a copy of Redis does not let anyone act as a tenant.

Rotating a tenant's token issues a new one and stops every earlier one at once (no grace
period: a leaked token must stop working now, and a deployment rolls the new token out
before it rotates); revoking stops every one and issues none. Either is one atomic step
(``tenant_tokens.lua``), and a stopped token is answered exactly like an unknown one.
The tenant's workflows, lineage and results stay as they are, readable by an admin;
rotating a revoked tenant gives it a working token again.
"""

from __future__ import annotations

import hashlib
import secrets
from typing import Any

from pydantic import ValidationError

from flowmesh_core.errors import (
    AuthenticationError,
    ConflictError,
    InvalidInputError,
    NotFoundError,
)
from flowmesh_core.models.api import Tenant
from flowmesh_core.store import Store

__all__ = [
    "authenticate",
    "create_tenant",
    "hash_token",
    "revoke_tenant",
    "rotate_token",
    "set_quotas",
]

TOKEN_PREFIX = "fm_"  # noqa: S105 (a marker that makes leaked tokens searchable)


def hash_token(token: str) -> str:
    """The form a token is stored in."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


async def create_tenant(
    store: Store,
    name: str,
    *,
    organisation: str | None = None,
    admin: bool = False,
    max_in_flight: int | None = None,
    submit_rate: float | None = None,
) -> tuple[Tenant, str]:
    """Create a tenant; returns it and its token (which is not stored and cannot be shown again).

    ``max_in_flight`` and ``submit_rate`` are its own quotas (None: the settings'; 0: no
    limit; docs/isolation.md, "Quotas").
    """
    try:
        tenant = Tenant(
            name=name,
            organisation=organisation,
            admin=admin,
            max_in_flight=max_in_flight,
            submit_rate=submit_rate,
        )
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"])
        message = error["msg"].removeprefix("Value error, ")
        raise InvalidInputError(f"invalid tenant: {where}: {message}") from exc
    token = _new_token()
    if not await store.add_tenant(hash_token(token), tenant.model_dump_json(), name):
        raise ConflictError(f"tenant {name!r} already exists; pick another name")
    return tenant, token


async def rotate_token(store: Store, name: str) -> tuple[str, int]:
    """Issue tenant ``name`` a new token; every earlier one stops working at once.

    Returns the new token (not stored, shown once) and how many tokens stopped working.
    NotFoundError if there is no such tenant.
    """
    token = _new_token()
    gone = await store.replace_tokens(name, hash_token(token))
    if gone is None:
        raise NotFoundError(f"no tenant {name!r}: `flowmesh tenant create {name}` makes one")
    return token, gone


async def revoke_tenant(store: Store, name: str) -> int:
    """Stop every token of tenant ``name`` at once; how many stopped. Its workflows stay
    readable by an admin. NotFoundError if there is no such tenant."""
    gone = await store.replace_tokens(name, None)
    if gone is None:
        raise NotFoundError(f"no tenant {name!r}")
    return gone


_UNSET: Any = object()


async def set_quotas(
    store: Store,
    name: str,
    *,
    max_in_flight: int | None = _UNSET,
    submit_rate: float | None = _UNSET,
) -> Tenant:
    """Change tenant ``name``'s own quotas (None: back to the settings'; 0: no limit); a
    quota not passed is kept. Takes effect at its next request. The changed tenant."""
    for _ in range(10):
        raw = (await store.tenant_record(name)).get("record")
        if raw is None:
            raise NotFoundError(f"no tenant {name!r}")
        current = Tenant.model_validate_json(raw)
        changes = {
            field: value
            for field, value in (("max_in_flight", max_in_flight), ("submit_rate", submit_rate))
            if value is not _UNSET
        }
        try:
            updated = Tenant.model_validate({**current.model_dump(), **changes})
        except ValidationError as exc:
            error = exc.errors()[0]
            where = ".".join(str(part) for part in error["loc"])
            raise InvalidInputError(f"invalid quota: {where}: {error['msg']}") from exc
        if await store.replace_tenant_record(name, raw, updated.model_dump_json()):
            return updated
    raise ConflictError(f"tenant {name!r} kept changing; try again")


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
