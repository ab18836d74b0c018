"""How the HTTP API reports errors: one JSON shape, the status each FlowMesh error carries.

Every error body is ``{"error": {"type": "<ClassName>", "message": "<what to fix>"}}``.
A ``FlowMeshError`` answers with its class's ``status_code`` (the API never picks status
codes of its own for them), a quota's refusal (429) with ``Retry-After`` in seconds;
FastAPI's request validation errors (a bad query or path parameter) answer 400 naming the
parameter; an unexpected exception answers 500 with a generic message and is logged with
its traceback.

This module must never put a traceback, or a credential from a service URL, into a
response body: messages pass through ``redact`` on their way out.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Sequence
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from flowmesh_core.errors import (
    AuthenticationError,
    FlowMeshError,
    InvalidInputError,
    QuotaExceededError,
)

__all__ = [
    "ErrorBody",
    "ErrorDetail",
    "UnhandledErrorMiddleware",
    "UnsupportedMediaTypeError",
    "error_response",
    "error_responses",
    "install_error_handlers",
    "redact",
]

log = logging.getLogger("flowmesh.api")

_CREDENTIALS = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^/@\s'\"]+@")
_INTERNAL_MESSAGE = "internal error; the server log has the details"


class UnsupportedMediaTypeError(InvalidInputError):
    """A request body in a format the API does not read (415).

    It belongs beside the others in ``flowmesh_core.errors``; it lives here until it moves.
    """

    status_code = 415


class ErrorDetail(BaseModel):
    """What went wrong: the error's class name and a message that says what to fix."""

    type: str
    message: str


class ErrorBody(BaseModel):
    """The body of every error response."""

    error: ErrorDetail


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI ``responses`` entries of error statuses a route can answer: each
    has the one error body shape (``ErrorBody``)."""
    return {code: {"model": ErrorBody} for code in codes}


def redact(message: str) -> str:
    """``message`` with the user:password part of any URL in it replaced by ``***``."""
    return _CREDENTIALS.sub(r"\g<scheme>***@", message)


def error_response(
    status: int, kind: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    """An error body with ``status``."""
    body = ErrorBody(error=ErrorDetail(type=kind, message=redact(message)))
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)


async def _flowmesh_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, FlowMeshError)
    status = exc.status_code
    if status >= 500:
        log.warning("%s %s: %s: %s", request.method, request.url.path, type(exc).__name__, exc)
    headers = {"WWW-Authenticate": "Bearer"} if isinstance(exc, AuthenticationError) else None
    if isinstance(exc, QuotaExceededError) and exc.retry_after is not None:
        # Retry-After is whole seconds (RFC 9110); never 0, which would invite a spin.
        headers = {"Retry-After": str(max(math.ceil(exc.retry_after), 1))}
    return error_response(status, type(exc).__name__, str(exc), headers)


def _describe(errors: Sequence[Any]) -> str:
    problems = []
    for err in errors:
        loc = [str(part) for part in err.get("loc", ())]
        where = loc[0] if loc else "request"
        name = ".".join(loc[1:])
        msg = str(err.get("msg", "invalid"))
        problems.append(f"{where} parameter {name!r}: {msg}" if name else f"{where}: {msg}")
    return "; ".join(problems) or "invalid request"


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return error_response(400, "InvalidInputError", _describe(exc.errors()))


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    status = exc.status_code
    kind = "NotFoundError" if status == 404 else HTTPStatus(status).phrase.replace(" ", "")
    message = str(exc.detail) if status != 404 else f"no route {request.url.path}"
    headers = dict(exc.headers or {})
    if status == 405:
        allowed = _allowed_methods(request)
        headers["Allow"] = ", ".join(allowed)
        message = (
            f"{request.method} is not allowed on {request.url.path}; "
            f"it answers {', '.join(allowed) or 'no method'}"
        )
    return error_response(status, kind, message, headers)


def _allowed_methods(request: Request) -> list[str]:
    """The methods the app's routes answer on the request's path (for ``Allow``)."""
    methods: set[str] = set()
    for route in request.app.router.routes:
        match, _ = route.matches(request.scope)
        if match != Match.NONE:
            methods.update(getattr(route, "methods", None) or ())
    return sorted(methods)


def install_error_handlers(app: FastAPI) -> None:
    """Answer FlowMesh, validation and HTTP errors in the one error shape."""
    app.add_exception_handler(FlowMeshError, _flowmesh_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)


class UnhandledErrorMiddleware:
    """Answer 500 for an exception nothing handled, and log it with its traceback.

    Starlette's own last-resort handler re-raises into the server after answering, which
    logs the error twice; this one ends the request here. If the response had started
    (a stream failing half-way) there is nothing left to answer: the exception is
    re-raised so the server drops the connection and the client sees a truncated body.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            where = f"{scope.get('method')} {scope.get('path')}"
            if started:
                log.error("response to %s aborted after it started: %s", where, exc)
                raise
            log.exception("unhandled error in %s", where)
            response = error_response(500, "InternalError", _INTERNAL_MESSAGE)
            await response(scope, receive, send)
