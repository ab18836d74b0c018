"""The tenant-facing HTTP routes (``/v1``): submit, status, long-poll wait, lineage, results.

Each route authenticates the caller, hands the request to the ``ControlPlane`` and returns
its answer as it is; isolation (a tenant sees only its own workflows, lineage and
results) is enforced by the control plane, never re-decided here.

This module must never store anything itself (a submission is validated whole by the
control plane before anything is written), never block the event loop (bodies are
parsed, and blobs read, in worker threads), and never send the last bytes of a result
before the blob store has verified them.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.responses import StreamingResponse
from starlette.concurrency import iterate_in_threadpool

from flowmesh_core.api.body import ACCEPTED_TYPES, idempotency_key, read_model
from flowmesh_core.api.deps import ApiState, CurrentTenant, State
from flowmesh_core.api.errors import error_responses as _errors
from flowmesh_core.control import (
    StatsReport,
    SubmitResult,
    Tenant,
    WorkerState,
    WorkflowStatus,
)
from flowmesh_core.errors import FlowMeshError, InvalidInputError
from flowmesh_core.models import LineageRecord
from flowmesh_core.models.api import ResultsReply
from flowmesh_core.models.parse import parse_operator, parse_results_request, parse_workflow

__all__ = ["MAX_WAIT_S", "ResultStreamError", "router"]

MAX_WAIT_S = 300.0
"""The longest one long-poll waits; a client that wants longer asks again."""

_WAIT_SLICE_S = 5.0
_CLIENT_CLOSED = 499  # nginx's "client closed request": nobody is left to answer


router = APIRouter(prefix="/v1", responses=_errors(400, 401, 500, 503))

WorkflowId = Annotated[
    str,
    Path(
        pattern=r"^[A-Za-z0-9_.-]{1,128}$",
        description="The id a submission returned (`workflow_id`).",
    ),
]


def _body_doc(schema: str, what: str) -> dict[str, Any]:
    ref = {"$ref": f"#/components/schemas/{schema}"}
    return {
        "requestBody": {
            "required": True,
            "description": f"{what}, as JSON or YAML. Inputs may also be written in short "
            "form: a plain value is a literal, and a model may be a plain name or digest.",
            "content": {media: {"schema": ref} for media in ACCEPTED_TYPES},
        }
    }


class ResultStreamError(Exception):
    """A result failed after its first bytes were sent; the connection is dropped."""


@router.post(
    "/workflows",
    status_code=201,
    response_model=SubmitResult,
    responses=_errors(413, 415, 429),
    openapi_extra=_body_doc("Workflow", "A workflow: named nodes whose inputs may be {ref: node}"),
    summary="Submit a workflow",
)
async def submit_workflow(
    request: Request, response: Response, tenant: CurrentTenant, state: State
) -> SubmitResult:
    """Validate the whole workflow, then start every node whose inputs are known.

    The plan says, per node, how many items hit the action cache, joined work in flight,
    or were created. Nothing is stored if any node is invalid, nor when one of the
    tenant's quotas refuses it (429 with ``Retry-After``: docs/isolation.md, "Quotas").
    """
    workflow = await read_model(request, state.control.settings.max_body_bytes, parse_workflow)
    key = idempotency_key(request)
    result = await state.control.submit_workflow(tenant, workflow, key)
    return _submitted(response, result)


@router.post(
    "/operators",
    status_code=201,
    response_model=SubmitResult,
    responses=_errors(413, 415, 429),
    openapi_extra=_body_doc("Operator", "One operator"),
    summary="Submit one operator",
)
async def submit_operator(
    request: Request, response: Response, tenant: CurrentTenant, state: State
) -> SubmitResult:
    """Run one operator as a one-node workflow; its node is named ``op``."""
    operator = await read_model(request, state.control.settings.max_body_bytes, parse_operator)
    key = idempotency_key(request)
    result = await state.control.submit_operator(tenant, operator, key)
    return _submitted(response, result)


def _submitted(response: Response, result: SubmitResult) -> SubmitResult:
    response.headers["Location"] = f"/v1/workflows/{result.workflow_id}"
    if result.replayed:
        response.status_code = 200  # nothing was created: the earlier submission stands
    return result


@router.get(
    "/workflows/{workflow_id}",
    response_model=WorkflowStatus,
    responses=_errors(404),
    summary="A workflow's status",
)
async def workflow_status(
    workflow_id: WorkflowId,
    tenant: CurrentTenant,
    state: State,
    lineage: Annotated[bool, Query(description="Include each node's lineage records.")] = True,
) -> WorkflowStatus:
    """Each node's state, result digest and (unless ``lineage=false``) lineage."""
    return await state.control.status(tenant, workflow_id, with_lineage=lineage)


@router.delete(
    "/workflows/{workflow_id}",
    response_model=WorkflowStatus,
    responses=_errors(404),
    summary="Cancel a workflow",
)
async def cancel_workflow(
    workflow_id: WorkflowId, tenant: CurrentTenant, state: State
) -> WorkflowStatus:
    """Cancel the workflow: it and its unfinished nodes become ``cancelled``, and its
    items that no other requester needs leave the ready pool (running ones finish,
    charged to nobody). Work another requester also asked for goes on for it unchanged.

    Idempotent: always 200 with the workflow's status; a workflow that had finished
    already (done, failed, or cancelled before) is left as it was, and its ``state``
    says which. Another tenant's workflow answers 404, exactly like an unknown id.
    """
    return await state.control.cancel(tenant, workflow_id)


@router.get(
    "/workflows/{workflow_id}/wait",
    response_model=WorkflowStatus,
    responses=_errors(404),
    summary="Wait for a workflow to finish (long poll)",
)
async def wait_workflow(
    request: Request,
    workflow_id: WorkflowId,
    tenant: CurrentTenant,
    state: State,
    timeout_s: Annotated[
        float,
        Query(
            alias="timeout",
            ge=0,
            allow_inf_nan=False,
            description=f"Seconds to wait at most (capped at {MAX_WAIT_S:.0f}).",
        ),
    ] = 30.0,
    lineage: Annotated[bool, Query(description="Include lineage records.")] = False,
) -> WorkflowStatus | Response:
    """The status once the workflow is done or failed, or when ``timeout`` passes.

    Answers 200 either way: ``state`` says whether it finished. A client that goes away
    stops the wait; a server that shuts down answers at once, with the status as it
    stands (ask again, of another replica or after the restart).
    """
    seconds = min(timeout_s, MAX_WAIT_S)
    status = await _wait_while_connected(request, state, tenant, workflow_id, seconds, lineage)
    return Response(status_code=_CLIENT_CLOSED) if status is None else status


@router.get(
    "/workflows/{workflow_id}/lineage",
    response_model=list[LineageRecord],
    responses=_errors(404),
    summary="A workflow's lineage",
)
async def workflow_lineage(
    workflow_id: WorkflowId, tenant: CurrentTenant, state: State
) -> list[LineageRecord]:
    """Every lineage record of the workflow: how each item was satisfied, and its cost."""
    return await state.control.lineage(tenant, workflow_id)


@router.post(
    "/results/read",
    response_model=ResultsReply,
    responses=_errors(404, 413, 415),
    openapi_extra=_body_doc("ResultsRequest", "The digests to read: {digests: [...]}"),
    summary="Read many results at once",
)
async def read_results(request: Request, tenant: CurrentTenant, state: State) -> ResultsReply:
    """Many results in one request, each decoded as JSON; 404 naming the first digest the
    tenant's lineage does not hold (nothing is returned then)."""
    body = await read_model(request, state.control.settings.max_body_bytes, parse_results_request)
    found = await state.control.read_results(tenant, list(body.digests))
    return ResultsReply(results={d: _json_value(d, data) for d, data in found.items()})


def _json_value(digest: str, data: bytes) -> Any:
    try:
        return json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise InvalidInputError(
            f"result {digest} is not JSON: read it alone with GET /v1/results/{digest}"
        ) from None


@router.get(
    "/results/{digest}",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {"application/octet-stream": {"schema": {"type": "string"}}},
            "description": "The blob's bytes, verified against the digest.",
        },
        **_errors(404),
    },
    summary="Download a result",
)
async def get_result(digest: str, tenant: CurrentTenant, state: State) -> StreamingResponse:
    """A result's bytes, if the tenant's lineage holds the digest (404 otherwise)."""
    info, chunks = await state.control.open_result(tenant, digest)
    body = _held_back(chunks)
    # The first chunk is read before answering, so a missing, unreadable or (when it is
    # one chunk long) corrupt blob gets an error status instead of a broken 200.
    first = await anext(body, None)
    return StreamingResponse(
        _resume(first, body, digest),
        media_type="application/octet-stream",
        headers={
            "Content-Length": str(info.size),
            "ETag": f'"{digest}"',
            "Cache-Control": "private, max-age=31536000, immutable",
        },
    )


@router.get(
    "/workers",
    response_model=list[WorkerState],
    responses=_errors(403),
    summary="Registered workers (admin)",
)
async def list_workers(tenant: CurrentTenant, state: State) -> list[WorkerState]:
    """Every registered worker, alive or not; needs an admin token."""
    return await state.control.workers(tenant)


@router.get("/stats", response_model=StatsReport, summary="Requested vs executed, and cost")
async def stats(tenant: CurrentTenant, state: State) -> StatsReport:
    """Cluster-wide totals, and the caller's own entry (every tenant's, for an admin)."""
    return await state.control.stats(tenant)


async def _wait_while_connected(
    request: Request, state: ApiState, tenant: Tenant, wf_id: str, seconds: float, lineage: bool
) -> WorkflowStatus | None:
    """``ControlPlane.wait`` in slices, asking between them whether the client is still there.

    None if it went away. Slicing, rather than cancelling one long wait, means no Redis
    command is ever cancelled half-way (the embedded store does not survive that). When
    the server drains, the slice in progress is left to end on its own and the status is
    read afresh (``api/draining.py``).
    """
    deadline = time.monotonic() + seconds
    while True:
        left = max(deadline - time.monotonic(), 0.0)
        wait = state.control.wait(tenant, wf_id, min(left, _WAIT_SLICE_S))
        status = await state.drain.race(wait)
        if status is None:
            break
        if status.state.final or left <= _WAIT_SLICE_S:
            if not lineage:
                return status
            break
        if await request.is_disconnected():
            return None
    return await state.control.status(tenant, wf_id, with_lineage=lineage)


async def _held_back(chunks: Iterator[bytes]) -> AsyncIterator[bytes]:
    """The chunks, read in a thread and yielded one behind: the last goes out only once
    the blob store has verified the whole blob (it raises after the last chunk otherwise).
    """
    held: bytes | None = None
    async for chunk in iterate_in_threadpool(chunks):
        if held is not None:
            yield held
        held = chunk
    if held is not None:
        yield held


async def _resume(
    first: bytes | None, rest: AsyncIterator[bytes], digest: str
) -> AsyncIterator[bytes]:
    if first is None:
        return
    yield first
    try:
        async for chunk in rest:
            yield chunk
    except FlowMeshError as exc:
        raise ResultStreamError(f"result {digest} failed while streaming: {exc}") from exc
