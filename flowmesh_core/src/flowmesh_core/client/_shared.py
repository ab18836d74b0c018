"""What the sync and async clients share: requests, response parsing, verification.

Every API call is described once here as a ``Call`` (method, path, query, body, how to
parse the answer); ``Client`` and ``AsyncClient`` only send it, so the two cannot drift
apart. Error responses and httpx's exceptions are converted in ``_errors``.

This module must never do I/O on the network itself (the clients do, sync or async), and
must never hand out result bytes that do not hash to the digest they were asked for.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO, Generic, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, TypeAdapter, ValidationError

from flowmesh_core.client._errors import check_response
from flowmesh_core.errors import (
    AuthenticationError,
    ConfigError,
    CorruptBlobError,
    InvalidInputError,
)
from flowmesh_core.hashing import DIGEST_PREFIX, digest_bytes, validate_digest
from flowmesh_core.models import LineageRecord, Operator, Workflow
from flowmesh_core.models.api import (
    NodeState,
    ResultsReply,
    StatsReport,
    SubmitResult,
    WorkerState,
    WorkflowStatus,
)
from flowmesh_core.settings import load_settings

__all__ = [
    "MAX_WAIT_SLICE_S",
    "Call",
    "ClientConfig",
    "VerifiedDownload",
    "WaitLoop",
    "build_request",
    "cancel_call",
    "finish",
    "health_call",
    "lineage_call",
    "resolve_config",
    "result_call",
    "result_json_call",
    "stats_call",
    "status_call",
    "submit_operator_call",
    "submit_workflow_call",
    "workers_call",
]

T = TypeVar("T")

MAX_WAIT_SLICE_S = 60.0
"""The longest single long-poll: short enough that proxies do not cut it off."""
PROGRESS_EVERY_S = 30.0
"""How often ``wait(..., progress=fn)`` reports the status (each long-poll ends by then)."""

_TERMINAL = frozenset({NodeState.DONE, NodeState.FAILED, NodeState.CANCELLED})
_USER_AGENT = "flowmesh-client/0.1.0"
_YAML = "application/yaml"
_JSON = "application/json"


# -- configuration --------------------------------------------------------------------


@dataclass(frozen=True)
class ClientConfig:
    """Where the server is, who we are, and how long one request may take."""

    base_url: str
    token: str | None = field(repr=False)
    timeout: float


def resolve_config(url: str | None, token: str | None, timeout: float) -> ClientConfig:
    """Fill ``url`` and ``token`` from the settings when not given, and check the URL.

    The settings are read only if something is missing, so a fully explicit client does
    not depend on the environment. A missing token is not an error yet: ``health()``
    needs none, and every other call raises AuthenticationError before it is sent.
    """
    if url is None or token is None:
        settings = load_settings()
        url = settings.server_url if url is None else url
        if token is None and settings.token is not None:
            token = settings.token.get_secret_value()
    try:
        parsed = httpx.URL(url) if "://" in url else None
    except httpx.InvalidURL:
        parsed = None
    if parsed is None or parsed.scheme not in {"http", "https"} or not parsed.host:
        raise ConfigError(
            f"server URL {url!r} is not an http(s) URL; set FLOWMESH_SERVER_URL (or url=) "
            "to the control plane's address, e.g. http://127.0.0.1:8470"
        )
    if not timeout > 0:
        raise ConfigError(f"timeout must be a positive number of seconds, got {timeout!r}")
    return ClientConfig(base_url=url.rstrip("/"), token=token or None, timeout=timeout)


# -- calls ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Call(Generic[T]):
    """One API request and how to read its answer; ``read_extra_s`` lengthens the read timeout."""

    method: str
    path: str
    parse: Callable[[httpx.Response], T]
    params: Mapping[str, str] = field(default_factory=dict)
    content: bytes | Iterator[bytes] | AsyncIterator[bytes] | None = None
    content_type: str | None = None
    auth: bool = True
    read_extra_s: float = 0.0
    headers: Mapping[str, str] = field(default_factory=dict)


def _json_parser(adapter: TypeAdapter[T], what: str) -> Callable[[httpx.Response], T]:
    def parse(response: httpx.Response) -> T:
        try:
            return adapter.validate_json(response.content)
        except ValidationError as exc:
            raise _not_flowmesh(response, f"not a {what}") from exc

    return parse


_SUBMIT = _json_parser(TypeAdapter(SubmitResult), "SubmitResult")
_STATUS = _json_parser(TypeAdapter(WorkflowStatus), "WorkflowStatus")
_RESULTS = _json_parser(TypeAdapter(ResultsReply), "ResultsReply")
_LINEAGE = _json_parser(TypeAdapter(list[LineageRecord]), "list of LineageRecord")
_STATS = _json_parser(TypeAdapter(StatsReport), "StatsReport")
_WORKERS = _json_parser(TypeAdapter(list[WorkerState]), "list of WorkerState")
_HEALTH = _json_parser(TypeAdapter(dict[str, Any]), "JSON object")


def _not_flowmesh(response: httpx.Response, why: str) -> ConfigError:
    return ConfigError(
        f"{response.request.url} answered {response.status_code} with a body that is {why}: "
        "is FLOWMESH_SERVER_URL the address of a FlowMesh control plane of this version?"
    )


def _body(document: BaseModel | Mapping[str, Any] | str, what: str) -> tuple[bytes, str]:
    if isinstance(document, str):
        return document.encode("utf-8"), _YAML
    if isinstance(document, BaseModel):
        # Not exclude_none: a literal input whose value is null must stay null.
        return document.model_dump_json().encode("utf-8"), _JSON
    try:
        text = json.dumps(dict(document), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"the {what} is not plain JSON: {exc}") from exc
    return text.encode("utf-8"), _JSON


def _segment(value: str, what: str) -> str:
    if not value:
        raise InvalidInputError(f"{what} must not be empty")
    return quote(value, safe="")


def submit_workflow_call(
    workflow: Workflow | Mapping[str, Any] | str, idempotency_key: str | None = None
) -> Call[SubmitResult]:
    """POST a workflow: a model or mapping as JSON, text (YAML or JSON) as YAML."""
    content, content_type = _body(workflow, "workflow")
    return Call(
        "POST",
        "/v1/workflows",
        _SUBMIT,
        content=content,
        content_type=content_type,
        headers=_idempotency(idempotency_key),
    )


def submit_operator_call(
    operator: Operator | Mapping[str, Any] | str, idempotency_key: str | None = None
) -> Call[SubmitResult]:
    """POST one operator; the server runs it as a one-node workflow whose node is ``op``."""
    content, content_type = _body(operator, "operator")
    return Call(
        "POST",
        "/v1/operators",
        _SUBMIT,
        content=content,
        content_type=content_type,
        headers=_idempotency(idempotency_key),
    )


def _idempotency(key: str | None) -> dict[str, str]:
    if key is None:
        return {}
    if not 1 <= len(key) <= 256 or not key.isprintable() or not key.isascii():
        raise InvalidInputError(
            f"idempotency_key {key[:40]!r}...: use 1-256 printable ASCII characters"
        )
    return {"Idempotency-Key": key}


def _flag(value: bool) -> str:
    return "true" if value else "false"


def status_call(workflow_id: str, lineage: bool) -> Call[WorkflowStatus]:
    path = f"/v1/workflows/{_segment(workflow_id, 'workflow id')}"
    return Call("GET", path, _STATUS, params={"lineage": _flag(lineage)})


def cancel_call(workflow_id: str) -> Call[WorkflowStatus]:
    """DELETE a workflow: cancel it; the answer is its status after (idempotent)."""
    path = f"/v1/workflows/{_segment(workflow_id, 'workflow id')}"
    return Call("DELETE", path, _STATUS)


def _wait_call(workflow_id: str, slice_s: float, lineage: bool) -> Call[WorkflowStatus]:
    path = f"/v1/workflows/{_segment(workflow_id, 'workflow id')}/wait"
    params = {"timeout": f"{slice_s:.3f}".rstrip("0").rstrip("."), "lineage": _flag(lineage)}
    return Call("GET", path, _STATUS, params=params, read_extra_s=slice_s)


def lineage_call(workflow_id: str) -> Call[list[LineageRecord]]:
    path = f"/v1/workflows/{_segment(workflow_id, 'workflow id')}/lineage"
    return Call("GET", path, _LINEAGE)


def result_call(digest: str) -> Call[bytes]:
    """GET a result blob; the parsed answer is its bytes, verified against ``digest``."""
    digest = validate_digest(digest)

    def parse(response: httpx.Response) -> bytes:
        return _verified(digest, response.content)

    return Call("GET", f"/v1/results/{digest}", parse)


def result_json_call(digest: str) -> Call[Any]:
    """Like ``result_call``, then decoded as JSON (InvalidInputError if it is not JSON)."""
    raw = result_call(digest)

    def parse(response: httpx.Response) -> Any:
        data = raw.parse(response)
        try:
            return json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InvalidInputError(
                f"result {digest} is not JSON ({exc}); use result() for its raw bytes"
            ) from exc

    return Call(raw.method, raw.path, parse)


# The most digests one ``POST /v1/results/read`` takes (``ResultsRequest``).
READ_BATCH = 10_000


def decode_value(data: bytes) -> Any:
    """A verified result's value: its JSON when it is JSON, else its bytes (a binary
    result such as a checkpoint)."""
    try:
        return json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return data


def read_batches(digests: Sequence[str]) -> Iterator[list[str]]:
    """``digests`` in slices one results read accepts (none for an empty list)."""
    for start in range(0, len(digests), READ_BATCH):
        yield list(digests[start : start + READ_BATCH])


def results_json_call(digests: Sequence[str]) -> Call[dict[str, Any]]:
    """POST many digests; the parsed answer maps each to its result decoded as JSON."""
    wanted = [validate_digest(d) for d in dict.fromkeys(digests)]
    body = json.dumps({"digests": wanted}).encode()

    def parse(response: httpx.Response) -> dict[str, Any]:
        results = _RESULTS(response).results
        missing = [d for d in wanted if d not in results]
        if missing:
            raise _not_flowmesh(response, f"no result {missing[0]} in the answer")
        return {d: results[d] for d in wanted}

    return Call("POST", "/v1/results/read", parse, content=body, content_type="application/json")


def stats_call() -> Call[StatsReport]:
    return Call("GET", "/v1/stats", _STATS)


def workers_call() -> Call[list[WorkerState]]:
    return Call("GET", "/v1/workers", _WORKERS)


def health_call() -> Call[dict[str, Any]]:
    return Call("GET", "/healthz", _HEALTH, auth=False)


class WaitLoop:
    """The long-poll loop behind ``wait``, without I/O: ask ``next_call``, ``feed`` the answer.

    Each poll lasts at most MAX_WAIT_SLICE_S (PROGRESS_EVERY_S when ``progress`` is
    given, which then hears every status that is not final) and never past the deadline.
    The loop ends when the workflow is done or failed, or when the deadline has passed;
    ``timeout=None`` waits for as long as it takes. ``last`` is then the latest status seen.
    """

    def __init__(
        self,
        workflow_id: str,
        timeout: float | None,
        lineage: bool,
        clock: Callable[[], float] = time.monotonic,
        progress: Callable[[WorkflowStatus], object] | None = None,
    ) -> None:
        self._id = workflow_id
        self._lineage = lineage
        self._clock = clock
        self._deadline = None if timeout is None else clock() + max(0.0, timeout)
        self._last: WorkflowStatus | None = None
        self._progress = progress
        # Read when the wait starts, so a caller (or a test) may change it.
        self._slice = min(MAX_WAIT_SLICE_S, PROGRESS_EVERY_S) if progress else MAX_WAIT_SLICE_S

    def next_call(self) -> Call[WorkflowStatus] | None:
        remaining = self._slice if self._deadline is None else self._deadline - self._clock()
        if self._last is not None and (self._last.state in _TERMINAL or remaining <= 0):
            return None
        return _wait_call(self._id, min(self._slice, max(0.0, remaining)), self._lineage)

    def feed(self, status: WorkflowStatus) -> None:
        """Take a poll's answer; ``progress`` hears each one that is not final."""
        self._last = status
        if self._progress is not None and status.state not in _TERMINAL:
            self._progress(status)

    @property
    def last(self) -> WorkflowStatus:
        if self._last is None:
            raise RuntimeError("WaitLoop.last read before any status was fed")
        return self._last


# -- sending and answers --------------------------------------------------------------


def build_request(
    http: httpx.Client | httpx.AsyncClient, config: ClientConfig, call: Call[Any]
) -> httpx.Request:
    """The httpx request for ``call``; AuthenticationError, unsent, when it needs a token."""
    headers = {"Accept": _JSON, "User-Agent": _USER_AGENT}
    if call.auth:
        if config.token is None:
            raise AuthenticationError(
                "no FlowMesh token configured: set FLOWMESH_TOKEN (or `token` in "
                "flowmesh.toml) or pass token=; `flowmesh tenant create` issues one"
            )
        headers["Authorization"] = f"Bearer {config.token}"
    if call.content_type is not None:
        headers["Content-Type"] = call.content_type
    headers.update(call.headers)
    timeout = httpx.Timeout(config.timeout, read=config.timeout + call.read_extra_s)
    return http.build_request(
        call.method,
        call.path,
        params=dict(call.params),
        content=call.content,
        headers=headers,
        timeout=timeout,
    )


def finish(call: Call[T], response: httpx.Response) -> T:
    """Check a fully read answer and parse it as ``call`` says."""
    check_response(response)
    return call.parse(response)


# -- result verification --------------------------------------------------------------


def _corrupt(digest: str, actual: str, size: int) -> CorruptBlobError:
    return CorruptBlobError(
        f"the server sent {size:,} bytes for {digest} that hash to {actual}: corrupt or "
        "truncated (in the store or on the way); nothing was returned or written"
    )


def _verified(digest: str, data: bytes) -> bytes:
    actual = digest_bytes(data)
    if actual != digest:
        raise _corrupt(digest, actual, len(data))
    return data


class VerifiedDownload:
    """A temp file beside ``path`` that becomes ``path`` only if its bytes hash to ``digest``.

    Use as a context manager: ``write`` each chunk, then ``commit``. Leaving the block
    without a successful commit (an error, a mismatch) removes the temp file, so neither
    a partial nor a corrupt file is ever left at ``path`` or beside it.
    """

    def __init__(self, digest: str, path: str | os.PathLike[str]) -> None:
        self._digest = validate_digest(digest)
        self._target = Path(path)
        self._temp = self._target.with_name(f".{self._target.name}.{secrets.token_hex(8)}.part")
        self._hash = hashlib.sha256()
        self._size = 0
        self._file: BinaryIO | None = None

    def __enter__(self) -> VerifiedDownload:
        with self._os_errors():
            # O_EXCL: never write through a file (or link) someone else put at our temp name.
            fd = os.open(self._temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            self._file = os.fdopen(fd, "wb")
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._file is not None:
            self._file.close()
        self._temp.unlink(missing_ok=True)

    @contextmanager
    def _os_errors(self) -> Iterator[None]:
        try:
            yield
        except OSError as exc:
            raise InvalidInputError(f"cannot write {self._target}: {exc.strerror or exc}") from exc

    def write(self, chunk: bytes) -> None:
        if self._file is None:
            raise RuntimeError("VerifiedDownload.write outside its with-block")
        with self._os_errors():
            self._file.write(chunk)
        self._hash.update(chunk)
        self._size += len(chunk)

    def commit(self) -> int:
        """Verify, then move into place; the number of bytes written. CorruptBlobError else."""
        if self._file is None:
            raise RuntimeError("VerifiedDownload.commit outside its with-block")
        actual = DIGEST_PREFIX + self._hash.hexdigest()
        if actual != self._digest:
            raise _corrupt(self._digest, actual, self._size)
        with self._os_errors():
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            os.replace(self._temp, self._target)
        return self._size
