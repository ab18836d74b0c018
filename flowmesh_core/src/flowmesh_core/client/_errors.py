"""Errors at the HTTP boundary: the server's error bodies and httpx's exceptions, converted.

An error response ``{"error": {"type": "NotFoundError", "message": "..."}}`` becomes the
FlowMesh class of that name with the server's message; an unknown type (or a body that is
not FlowMesh's, from a proxy say) falls back on the status code (429 is always a
QuotaExceededError carrying ``Retry-After`` as ``retry_after``), with a message that
still says what answered and how. httpx's transport errors become ServiceUnavailableError
naming the URL that was tried.

This module must never let an httpx exception through, nor invent a FlowMesh error class
that errors.py does not define.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from flowmesh_core import errors
from flowmesh_core.errors import FlowMeshError, InvalidInputError, ServiceUnavailableError

__all__ = ["check_response", "error_from_response", "transport_errors"]


@contextmanager
def transport_errors(base_url: str, request: httpx.Request) -> Iterator[None]:
    """Convert httpx's transport errors raised inside into ServiceUnavailableError.

    The message names the server's URL and the request, and says what to check.
    """
    try:
        yield
    except httpx.RequestError as exc:
        what = f"{request.method} {request.url.path}"
        reason = " ".join(str(exc).split()) or type(exc).__name__
        if isinstance(exc, httpx.TimeoutException):
            limit = request.extensions.get("timeout", {}).get("read")
            within = f" within {limit:g} s" if isinstance(limit, int | float) else ""
            problem = f"did not answer {what}{within} ({reason})"
        elif isinstance(exc, httpx.ConnectError):
            problem = f"cannot be reached for {what} ({reason})"
        else:
            problem = f"failed during {what} ({type(exc).__name__}: {reason})"
        raise ServiceUnavailableError(
            f"the FlowMesh server at {base_url} {problem}: is `flowmesh serve` running "
            "there? Check FLOWMESH_SERVER_URL (or --server-url / url=)"
        ) from exc


_ERRORS_BY_NAME: dict[str, type[FlowMeshError]] = {
    name: cls
    for name in errors.__all__
    if isinstance(cls := getattr(errors, name), type) and issubclass(cls, FlowMeshError)
}
_ERRORS_BY_STATUS: dict[int, type[FlowMeshError]] = {
    400: errors.InvalidInputError,
    401: errors.AuthenticationError,
    403: errors.PermissionDeniedError,
    404: errors.NotFoundError,
    409: errors.ConflictError,
    413: errors.InputTooLargeError,
    422: errors.InvalidInputError,
}


def _error_class(status: int, type_name: object) -> type[FlowMeshError]:
    if isinstance(type_name, str) and type_name in _ERRORS_BY_NAME:
        return _ERRORS_BY_NAME[type_name]
    if status in _ERRORS_BY_STATUS:
        return _ERRORS_BY_STATUS[status]
    if status >= 500 or status == 408:
        return ServiceUnavailableError
    return InvalidInputError if 400 <= status < 500 else FlowMeshError


def _server_message(response: httpx.Response) -> tuple[object, str | None]:
    """The error body's ``type`` and ``message`` (FastAPI's ``detail`` too), if it has them."""
    try:
        body = response.json()
    except (ValueError, UnicodeDecodeError):
        return None, None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        message = body["error"].get("message")
        return body["error"].get("type"), message if isinstance(message, str) else None
    if isinstance(body, dict) and "detail" in body:
        detail = body["detail"]
        return None, detail if isinstance(detail, str) else json.dumps(detail)
    return None, None


def error_from_response(response: httpx.Response) -> FlowMeshError:
    """The FlowMesh error an error response stands for; its body must have been read."""
    type_name, message = _server_message(response)
    if message is None:
        snippet = " ".join(response.text[:200].split())
        message = (
            f"{response.request.url} answered HTTP {response.status_code} "
            f"{response.reason_phrase}" + (f": {snippet}" if snippet else " with an empty body")
        )
    cls = _error_class(response.status_code, type_name)
    if issubclass(cls, errors.QuotaExceededError) or response.status_code == 429:
        return errors.QuotaExceededError(message, retry_after=_retry_after(response))
    return cls(message)


def _retry_after(response: httpx.Response) -> float | None:
    """The ``Retry-After`` header in seconds (a number; an HTTP date is not sent by
    FlowMesh and reads as None)."""
    try:
        seconds = float(response.headers.get("retry-after", ""))
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


def check_response(response: httpx.Response) -> None:
    """Raise the mapped FlowMesh error for a 4xx/5xx answer (body already read)."""
    if response.is_error:
        raise error_from_response(response)
