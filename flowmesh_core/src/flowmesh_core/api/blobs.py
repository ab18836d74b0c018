"""Blob routes (``/v1/blobs/{digest}``): upload with an owner, ask, download, grant.

``PUT`` streams the body to the blob store under the digest the caller names; the store
verifies the bytes hash to it before anything is published, and the tenant becomes one
of the blob's owners. ``HEAD`` and ``GET`` answer only for a digest the tenant may read
(one it uploaded, one its lineage holds, or one granted to it); any other digest, stored
or not, gets the same 404 (docs/isolation.md). ``/grants`` lets another tenant read a
blob the caller uploaded or made, withdraws that, and lists the caller's grants. The
rights and the streaming are the control plane's (``control/blobs.py``); this module
only moves HTTP in and out.

This module must never read a body whole into memory, and never send the last bytes
of a blob before the blob store has verified them.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.responses import StreamingResponse

from flowmesh_core.api.body import ACCEPTED_TYPES, read_model
from flowmesh_core.api.deps import CurrentTenant, State
from flowmesh_core.api.errors import error_responses as _errors
from flowmesh_core.api.routes import _held_back, _resume
from flowmesh_core.blobs import BlobInfo
from flowmesh_core.errors import InvalidInputError
from flowmesh_core.models._base import NAME_PATTERN
from flowmesh_core.models.api import BlobGrant, BlobGrants, BlobReceipt, TenantGrants
from flowmesh_core.models.parse import parse_grant_request

__all__ = ["grants_router", "router"]


router = APIRouter(prefix="/v1/blobs", responses=_errors(400, 401, 500, 503))
grants_router = APIRouter(prefix="/v1/grants", responses=_errors(400, 401, 500, 503))

#: The most grants one page of ``GET /v1/grants`` holds.
MAX_GRANTS_PAGE = 10_000

DigestPath = Annotated[
    str,
    Path(description="`sha256:` and the 64 lowercase hex digits of the bytes' sha256."),
]

GranteePath = Annotated[
    str,
    Path(
        alias="tenant",
        pattern=f"^{NAME_PATTERN}$",
        description="The tenant the grant was made to (letters, digits, '_', '.', '-').",
    ),
]

_GRANT_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "The tenant to let read the blob: {tenant: NAME}, as JSON or YAML.",
        "content": {
            media: {"schema": {"$ref": "#/components/schemas/BlobGrantRequest"}}
            for media in ACCEPTED_TYPES
        },
    }
}

_UPLOAD_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "The blob's bytes, exactly; streamed, up to `max_upload_bytes`.",
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    }
}


@router.put(
    "/{digest}",
    response_model=BlobReceipt,
    status_code=201,
    responses={
        200: {"model": BlobReceipt, "description": "Already yours."},
        **_errors(413, 429),
    },
    openapi_extra=_UPLOAD_BODY,
    summary="Upload a blob",
)
async def put_blob(
    digest: DigestPath, request: Request, response: Response, tenant: CurrentTenant, state: State
) -> BlobReceipt:
    """Store the body under ``digest`` and make the caller an owner: 201, or 200 when the
    caller had uploaded it before. 400 (DigestMismatchError) when the bytes hash to
    another digest, 413 over `max_upload_bytes`, 429 (QuotaExceededError) when the
    caller's uploads would pass `tenant_max_upload_bytes`; in each case nothing is
    recorded."""
    upload = await state.control.blob_access.upload(
        tenant,
        digest,
        request.stream(),
        length=_content_length(request),
        media_type=request.headers.get("content-type"),
    )
    if not upload.new_owner:
        response.status_code = 200
    return BlobReceipt(digest=upload.digest, size=upload.size)


@router.head(
    "/{digest}",
    responses={
        200: {"description": "The caller may read it; Content-Length is its size."},
        404: {"description": "Unknown, or not the caller's to read (alike; a HEAD has no body)."},
    },
    summary="Ask whether a blob is yours to read",
)
async def head_blob(digest: DigestPath, tenant: CurrentTenant, state: State) -> Response:
    """200 with the blob's size as Content-Length if the caller may read it, else 404."""
    info = await state.control.blob_access.stat(tenant, digest)
    return Response(status_code=200, headers=_headers(info))


@router.get(
    "/{digest}",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {"application/octet-stream": {"schema": {"type": "string"}}},
            "description": "The blob's bytes, verified against the digest.",
        },
        **_errors(404),
    },
    summary="Download a blob",
)
async def get_blob(digest: DigestPath, tenant: CurrentTenant, state: State) -> StreamingResponse:
    """The bytes of a blob the caller uploaded or whose digest its lineage holds (404
    otherwise, exactly as for a digest that does not exist)."""
    info, chunks = await state.control.blob_access.open(tenant, digest)
    body = _held_back(chunks)
    # The first chunk is read before answering, so an unreadable blob (or a corrupt one
    # that is one chunk long) gets an error status instead of a broken 200.
    first = await anext(body, None)
    return StreamingResponse(
        _resume(first, body, info.digest),
        media_type="application/octet-stream",
        headers=_headers(info),
    )


@router.post(
    "/{digest}/grants",
    response_model=BlobGrant,
    status_code=201,
    responses={
        200: {"model": BlobGrant, "description": "The caller had made this grant already."},
        **_errors(403, 404, 413, 415, 429),
    },
    openapi_extra=_GRANT_BODY,
    summary="Let another tenant read a blob",
)
async def grant_blob(
    digest: DigestPath, request: Request, response: Response, tenant: CurrentTenant, state: State
) -> BlobGrant:
    """Let ``tenant`` (the body's) read the blob and use it as an input: 201, or 200 when
    the caller had granted it before. The caller must have uploaded the blob or made it
    in a workflow (404, as for an unknown digest, otherwise; 403 for a blob the caller
    holds only by a grant: grants are not passed on). 429 past `max_grants_per_tenant`.
    The answer is the same whether or not the named tenant exists."""
    settings = state.control.settings
    body = await read_model(request, settings.max_body_bytes, parse_grant_request)
    if not await state.control.blob_access.grant(tenant, digest, body.tenant):
        response.status_code = 200
    return BlobGrant(tenant=body.tenant, grantor=tenant.name)


@router.get(
    "/{digest}/grants",
    response_model=BlobGrants,
    responses=_errors(404),
    summary="The grants of a blob the caller made",
)
async def list_blob_grants(digest: DigestPath, tenant: CurrentTenant, state: State) -> BlobGrants:
    """The grants of the blob that the caller made (an admin sees every grantor's); 404
    for a digest the caller may not read, as for an unknown one."""
    grants = await state.control.blob_access.grants(tenant, digest)
    return BlobGrants(digest=digest, grants=grants)


@router.delete(
    "/{digest}/grants/{tenant}",
    status_code=204,
    response_class=Response,
    responses=_errors(404),
    summary="Withdraw a grant of a blob",
)
async def revoke_blob_grant(
    digest: DigestPath, grantee: GranteePath, tenant: CurrentTenant, state: State
) -> Response:
    """Withdraw the caller's grant of the blob to ``tenant``: 204, also when there was
    none. Grants other tenants made to ``tenant`` stand. 404 for a digest the caller may
    not read, as for an unknown one."""
    await state.control.blob_access.revoke(tenant, digest, grantee)
    return Response(status_code=204)


@grants_router.get(
    "",
    response_model=TenantGrants,
    summary="The grants the caller made, over every blob",
)
async def list_grants(
    tenant: CurrentTenant,
    state: State,
    after: Annotated[
        str | None,
        Query(
            max_length=300,
            description="The `next` of the page before (DIGEST/TENANT); none: the first page.",
        ),
    ] = None,
    limit: Annotated[
        int, Query(ge=1, le=MAX_GRANTS_PAGE, description="The most grants in this page.")
    ] = 1000,
) -> TenantGrants:
    """The grants the caller made (digest and grantee), sorted by digest then grantee, a
    page at a time: ``next`` is the ``after`` of the next page (null on the last). Only
    the caller's own grants, an admin's too: what to revoke when the grant quota
    (`max_grants_per_tenant`) is reached."""
    return await state.control.blob_access.grants_made(tenant, after, limit)


def _headers(info: BlobInfo) -> dict[str, str]:
    return {
        "Content-Length": str(info.size),
        "ETag": f'"{info.digest}"',
        "Cache-Control": "private, max-age=31536000, immutable",
    }


def _content_length(request: Request) -> int | None:
    declared = request.headers.get("content-length")
    if declared is None:
        return None
    if not declared.strip().isdigit():
        raise InvalidInputError(f"Content-Length {declared!r} is not a number of bytes")
    return int(declared)
