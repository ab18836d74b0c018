"""The clients' blob calls against a fake API (httpx.MockTransport), sync and async alike:
what an upload sends, and how answers are checked."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from flowmesh_core import errors
from flowmesh_core.client import AsyncClient, Client
from flowmesh_core.hashing import digest_bytes
from tests.unit.test_client import TOKEN, URL, Blocking, Recorder, error_json

DATA = b"rows, exactly as uploaded"
DIGEST = digest_bytes(DATA)

Handler = Callable[[httpx.Request], httpx.Response]


@pytest.fixture(params=["sync", "async"])
def client(request: pytest.FixtureRequest) -> Iterator[Callable[[Handler], Any]]:
    """``client(handler)``: a Client or a (blocking) AsyncClient on a fake API."""
    opened: list[Any] = []

    def make(handler: Handler) -> Any:
        transport = httpx.MockTransport(handler)
        made: Any = (
            Client(URL, TOKEN, transport=transport)
            if request.param == "sync"
            else Blocking(AsyncClient(URL, TOKEN, transport=transport))
        )
        opened.append(made)
        return made

    yield make
    for made in opened:
        made.close()


class Pipe:
    """A binary file that cannot seek back, as stdin from a pipe: spooled, then sent."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def read(self, size: int = -1) -> bytes:
        return self._data.read(size)

    def seekable(self) -> bool:
        return False


def receipt(request: httpx.Request) -> httpx.Response:
    body = request.content
    return httpx.Response(201, json={"digest": digest_bytes(body), "size": len(body)})


@pytest.mark.parametrize("form", ["bytes", "path", "str", "file", "pipe"])
def test_an_upload_puts_the_bytes_under_their_digest(
    client: Any, form: str, tmp_path: Path
) -> None:
    path = tmp_path / "rows.bin"
    path.write_bytes(DATA)
    sources: dict[str, Any] = {
        "bytes": DATA,
        "path": path,
        "str": str(path),
        "file": io.BytesIO(DATA),
        "pipe": Pipe(DATA),
    }
    recorder = Recorder(receipt)
    assert client(recorder).put_blob(sources[form], media_type="text/csv") == DIGEST
    (sent,) = recorder.requests
    assert (sent.method, sent.url.path) == ("PUT", f"/v1/blobs/{DIGEST}")
    assert sent.content == DATA
    assert sent.headers["content-length"] == str(len(DATA))
    assert sent.headers["content-type"] == "text/csv"
    assert sent.headers["authorization"] == f"Bearer {TOKEN}"


def test_a_receipt_for_other_bytes_is_not_taken_for_an_upload(client: Any) -> None:
    def wrong(request: httpx.Request) -> httpx.Response:
        return httpx.Response(201, json={"digest": digest_bytes(b"other"), "size": 5})

    with pytest.raises(errors.ConfigError, match="receipt for other bytes"):
        client(wrong).put_blob(DATA)


def test_what_is_not_bytes_a_path_or_a_binary_file_is_refused_before_sending(
    client: Any, tmp_path: Path
) -> None:
    recorder = Recorder(receipt)
    fm = client(recorder)
    with pytest.raises(errors.InvalidInputError, match="not int"):
        fm.put_blob(123)
    with pytest.raises(errors.InvalidInputError, match="binary mode"):
        fm.put_blob(io.StringIO("text"))
    with pytest.raises(errors.InvalidInputError, match="cannot read"):
        fm.put_blob(tmp_path / "missing.bin")
    assert recorder.requests == []


def test_a_mismatch_the_server_reports_is_its_typed_error(client: Any) -> None:
    def mismatch(request: httpx.Request) -> httpx.Response:
        return error_json(400, "DigestMismatchError", "the uploaded bytes do not hash to D")

    with pytest.raises(errors.DigestMismatchError):
        client(mismatch).put_blob(DATA)


def test_a_download_is_verified_and_an_unknown_digest_is_not_found(client: Any) -> None:
    def serve(request: httpx.Request) -> httpx.Response:
        if request.url.path == f"/v1/blobs/{DIGEST}":
            return httpx.Response(200, content=DATA)
        if request.url.path == f"/v1/blobs/{digest_bytes(b'corrupt')}":
            return httpx.Response(200, content=b"not what was asked")
        return error_json(404, "NotFoundError", json.dumps("no blob for this tenant"))

    fm = client(serve)
    assert fm.get_blob(DIGEST) == DATA
    with pytest.raises(errors.CorruptBlobError):
        fm.get_blob(digest_bytes(b"corrupt"))
    with pytest.raises(errors.NotFoundError):
        fm.get_blob(digest_bytes(b"unknown"))
    with pytest.raises(errors.InvalidDigestError):
        fm.get_blob("sha256:nope")
