"""The blob store contract: every backend (file://, s3:// over moto's HTTP server) must
pass every test here. Backend-specific set-up and tampering live in the ``Backend``
harness; the tests themselves only speak the ``BlobStore`` interface.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from botocore.awsrequest import AWSResponse, HTTPHeaders

from flowmesh_core import blobs
from flowmesh_core.blobs import BlobInfo, BlobStore, PutResult, open_blob_store
from flowmesh_core.blobs.file import FileBlobStore
from flowmesh_core.blobs.s3 import S3BlobStore
from flowmesh_core.errors import (
    BlobNotFoundError,
    BlobStoreUnavailableError,
    ConfigError,
    CorruptBlobError,
    InvalidDigestError,
    InvalidInputError,
    UnsupportedSchemeError,
)
from flowmesh_core.hashing import digest_bytes

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client

MIB = 1 << 20
MARK = "flowmesh-test-mark"
BAD_DIGESTS = ["../../etc/passwd", "sha256:" + "A" * 64, "sha256:abc", "md5:" + "0" * 32, ""]


@dataclass
class Backend:
    """A store plus the back doors a test needs to inspect or damage its storage."""

    name: str
    store: BlobStore
    tamper: Callable[[str, bytes], None]  # replace a blob's stored bytes
    stored: Callable[[], list[str]]  # every published blob entry
    leftovers: Callable[[], list[str]]  # temp files / unfinished multipart uploads
    mark: Callable[[str], None]  # remember the stored object's identity ...
    still_marked: Callable[[str], bool]  # ... and tell whether it was rewritten since


def _file_backend(root: Path) -> Backend:
    store = open_blob_store(f"file://{root}")
    assert isinstance(store, FileBlobStore)
    marks: dict[str, tuple[int, int]] = {}

    def identity(digest: str) -> tuple[int, int]:
        st = store.path_of(digest).stat()
        return st.st_ino, st.st_mtime_ns

    def tamper(digest: str, data: bytes) -> None:
        path = store.path_of(digest)
        path.chmod(0o644)
        path.write_bytes(data)

    def stored() -> list[str]:
        return sorted(str(p) for p in root.glob("??/*"))

    def leftovers() -> list[str]:
        tmp = root / "tmp"
        return sorted(str(p) for p in tmp.iterdir()) if tmp.exists() else []

    return Backend(
        name="file",
        store=store,
        tamper=tamper,
        stored=stored,
        leftovers=leftovers,
        mark=lambda d: marks.__setitem__(d, identity(d)),
        still_marked=lambda d: marks[d] == identity(d),
    )


def _s3_backend(url: str, endpoint: str, client: S3Client) -> Backend:
    store = open_blob_store(url, s3_endpoint_url=endpoint, s3_region="us-east-1")
    assert isinstance(store, S3BlobStore)
    bucket = store.bucket

    def tamper(digest: str, data: bytes) -> None:
        client.put_object(Bucket=bucket, Key=store.key_of(digest), Body=data)

    def stored() -> list[str]:
        found = client.list_objects_v2(Bucket=bucket, Prefix=store.prefix + "/")
        return sorted(obj["Key"] for obj in found.get("Contents", []))

    def leftovers() -> list[str]:
        uploads = client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
        return sorted(upload["Key"] for upload in uploads)

    def mark(digest: str) -> None:
        # A rewrite by the store would drop this metadata.
        key = store.key_of(digest)
        client.copy_object(
            Bucket=bucket,
            Key=key,
            CopySource={"Bucket": bucket, "Key": key},
            Metadata={MARK: "1"},
            MetadataDirective="REPLACE",
        )

    def still_marked(digest: str) -> bool:
        head = client.head_object(Bucket=bucket, Key=store.key_of(digest))
        return head["Metadata"].get(MARK) == "1"

    return Backend("s3", store, tamper, stored, leftovers, mark, still_marked)


@pytest.fixture
def s3_backend(s3_bucket_url: str, s3_endpoint: str, s3_client: S3Client) -> Backend:
    return _s3_backend(s3_bucket_url, s3_endpoint, s3_client)


@pytest.fixture(params=["file", pytest.param("s3", marks=pytest.mark.s3)])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "file":
        return _file_backend(tmp_path / "cas")
    # Looked up lazily so that file:// runs never start the moto server.
    s3: Backend = request.getfixturevalue("s3_backend")
    return s3


def _chunks(data: bytes, size: int) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# -- round trips -------------------------------------------------------------------------


@pytest.mark.parametrize("data", [b"hello, flowmesh", b"", bytes(range(256)) * 1000])
def test_put_bytes_round_trip(backend: Backend, data: bytes) -> None:
    result = backend.store.put_bytes(data)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    assert result == PutResult(digest=digest, size=len(data), created=True)
    assert backend.store.exists(digest)
    assert backend.store.stat(digest) == BlobInfo(digest=digest, size=len(data))
    assert backend.store.get_bytes(digest) == data


def test_put_many_stores_each_once_in_order_and_leaves_no_temp_file(backend: Backend) -> None:
    first, second = os.urandom(40_000), b"second"
    backend.store.put_bytes(second)
    results = backend.store.put_many([first, second, first])
    assert [r.digest for r in results] == [digest_bytes(d) for d in (first, second, first)]
    assert [r.created for r in results[:2]] == [True, False]  # the second existed already
    assert backend.store.get_bytes(digest_bytes(first)) == first
    assert backend.store.put_many([]) == []
    with pytest.raises(InvalidInputError):
        backend.store.put_many(["not bytes"])  # type: ignore[list-item]
    assert backend.leftovers() == []


def test_put_stream_from_generator_and_file_object(backend: Backend) -> None:
    data = os.urandom(300_000)
    from_gen = backend.store.put_stream(_chunks(data, 7_000))
    assert from_gen == PutResult(digest_bytes(data), len(data), created=True)
    other = os.urandom(50_000)
    from_file = backend.store.put_stream(io.BytesIO(other))
    assert from_file.digest == digest_bytes(other)
    assert backend.store.get_bytes(from_gen.digest) == data
    assert backend.store.get_bytes(from_file.digest) == other


def test_put_file_and_get_to_file(backend: Backend, tmp_path: Path) -> None:
    data = os.urandom(123_457)
    source = tmp_path / "in.bin"
    source.write_bytes(data)
    result = backend.store.put_file(source)
    assert result == PutResult(digest_bytes(data), len(data), created=True)
    target = tmp_path / "out" / "copy.bin"
    target.parent.mkdir()
    assert backend.store.get_to_file(result.digest, target) == BlobInfo(result.digest, len(data))
    assert target.read_bytes() == data
    assert sorted(p.name for p in target.parent.iterdir()) == ["copy.bin"]


def test_second_put_is_a_no_op(backend: Backend, tmp_path: Path) -> None:
    data = b"stored once" * 100
    digest = backend.store.put_bytes(data).digest
    backend.mark(digest)
    source = tmp_path / "again.bin"
    source.write_bytes(data)
    assert not backend.store.put_bytes(data).created
    assert not backend.store.put_stream(_chunks(data, 10)).created
    assert not backend.store.put_file(source, expected_digest=digest).created
    assert backend.store.put_bytes(data) == PutResult(digest, len(data), created=False)
    assert backend.still_marked(digest)
    assert len(backend.stored()) == 1


def test_large_stream_is_spooled_and_read_back_in_chunks(backend: Backend) -> None:
    data = os.urandom(20 * MIB)
    result = backend.store.put_stream(_chunks(data, MIB))
    assert result == PutResult(digest_bytes(data), len(data), created=True)
    hasher = hashlib.sha256()
    sizes = []
    for chunk in backend.store.iter_chunks(result.digest, chunk_size=MIB):
        hasher.update(chunk)
        sizes.append(len(chunk))
    assert "sha256:" + hasher.hexdigest() == result.digest
    assert sum(sizes) == len(data)
    assert max(sizes) <= MIB


@pytest.mark.s3
def test_s3_multipart_upload_above_threshold(s3_bucket_url: str, s3_endpoint: str) -> None:
    store = S3BlobStore(
        s3_bucket_url,
        endpoint_url=s3_endpoint,
        region="us-east-1",
        multipart_threshold=5 * MIB,
        multipart_chunksize=5 * MIB,
        spool_memory=MIB,
    )
    data = os.urandom(11 * MIB + 17)
    result = store.put_stream(_chunks(data, MIB))
    assert result == PutResult(digest_bytes(data), len(data), created=True)
    etag = store._client.head_object(Bucket=store.bucket, Key=store.key_of(result.digest))["ETag"]
    assert etag.strip('"').endswith("-3"), f"expected a 3-part multipart ETag, got {etag}"
    assert store.get_bytes(result.digest) == data
    assert not store.put_bytes(data).created


@pytest.mark.s3
def test_s3_small_put_is_conditional_and_server_verified(
    s3_backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    # moto accepts ChecksumSHA256 without checking it, so assert what real S3 would check.
    backend = s3_backend
    store = backend.store
    assert isinstance(store, S3BlobStore)
    sent: list[dict[str, str]] = []

    def record(request: Any, **_: Any) -> None:
        sent.append({k.lower(): v.decode() for k, v in request.headers.items()})

    store._client.meta.events.register("before-send.s3.PutObject", record)
    data = b"checked by the server"
    digest = store.put_bytes(data).digest
    assert sent[0]["if-none-match"] == "*"
    checksum = base64.b64encode(hashlib.sha256(data).digest()).decode()
    assert sent[0]["x-amz-checksum-sha256"] == checksum
    # A writer that lost the race between HEAD and PUT gets 412: already stored.
    backend.mark(digest)
    monkeypatch.setattr(store, "_head", lambda key, digest: None)
    assert store.put_bytes(data) == PutResult(digest, len(data), created=False)
    assert backend.still_marked(digest)


class _Raw:
    def __init__(self, body: bytes) -> None:
        self.body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self.body


@pytest.mark.s3
@pytest.mark.parametrize("code", ["NotImplemented", "ConditionalRequestConflict"])
def test_s3_put_survives_servers_without_conditional_writes(s3_backend: Backend, code: str) -> None:
    # Some S3-compatible servers answer If-None-Match with 501; real S3 answers a
    # concurrent conditional write with 409. Both must still end with the blob stored.
    store = s3_backend.store
    assert isinstance(store, S3BlobStore)
    status = 501 if code == "NotImplemented" else 409
    body = f"<Error><Code>{code}</Code><Message>no</Message></Error>".encode()
    refused: list[str] = []

    def refuse_conditional(request: Any, **_: Any) -> Any:  # botocore takes the response
        if "If-None-Match" not in request.headers or refused:
            return None
        refused.append(request.url)
        return AWSResponse(request.url, status, HTTPHeaders(), _Raw(body))

    store._client.meta.events.register("before-send.s3.PutObject", refuse_conditional)
    data = os.urandom(1000)
    assert store.put_bytes(data) == PutResult(digest_bytes(data), len(data), created=True)
    assert len(refused) == 1
    assert store.get_bytes(digest_bytes(data)) == data


# -- what a store must refuse ------------------------------------------------------------


def test_expected_digest_mismatch_stores_nothing(backend: Backend) -> None:
    data = b"what was sent"
    claimed = digest_bytes(b"what the caller believed")
    with pytest.raises(CorruptBlobError) as err:
        backend.store.put_bytes(data, expected_digest=claimed)
    assert claimed in str(err.value)
    assert digest_bytes(data) in str(err.value)
    assert not backend.store.exists(digest_bytes(data))
    assert backend.stored() == []
    assert backend.leftovers() == []
    ok = backend.store.put_bytes(data, expected_digest=digest_bytes(data))
    assert ok.created


@pytest.mark.parametrize("damage", ["altered", "truncated", "extended"])
def test_tampered_blob_is_never_returned(backend: Backend, tmp_path: Path, damage: str) -> None:
    data = os.urandom(3 * MIB + 5)
    digest = backend.store.put_bytes(data).digest
    damaged = {
        "altered": data[:100] + bytes([data[100] ^ 0xFF]) + data[101:],
        "truncated": data[: len(data) // 2],
        "extended": data + b"\0",
    }[damage]
    backend.tamper(digest, damaged)
    with pytest.raises(CorruptBlobError, match=digest):
        backend.store.get_bytes(digest)
    with pytest.raises(CorruptBlobError):
        list(backend.store.iter_chunks(digest, chunk_size=MIB))
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    with pytest.raises(CorruptBlobError):
        backend.store.get_to_file(digest, out_dir / "blob.bin")
    assert list(out_dir.iterdir()) == []


@pytest.mark.parametrize("bad", BAD_DIGESTS)
@pytest.mark.parametrize(
    "call",
    [
        lambda s, d, p: s.exists(d),
        lambda s, d, p: s.stat(d),
        lambda s, d, p: s.get_bytes(d),
        lambda s, d, p: s.iter_chunks(d),
        lambda s, d, p: s.get_to_file(d, p),
        lambda s, d, p: s.put_bytes(b"x", expected_digest=d),
    ],
    ids=["exists", "stat", "get_bytes", "iter_chunks", "get_to_file", "put_expected"],
)
def test_malformed_digest_is_rejected(
    backend: Backend, tmp_path: Path, bad: str, call: Callable[[BlobStore, str, Path], Any]
) -> None:
    with pytest.raises(InvalidDigestError):
        call(backend.store, bad, tmp_path / "out.bin")
    assert backend.stored() == []
    assert not (tmp_path / "out.bin").exists()


@pytest.mark.usefixtures("aws_credentials")
def test_digest_is_validated_before_any_io(tmp_path: Path) -> None:
    # Stores whose backends cannot work: any I/O would raise something other than
    # InvalidDigestError (and the file store would create its root).
    file_store = open_blob_store(f"file://{tmp_path / 'never-created'}")
    s3_store = S3BlobStore(
        "s3://no-bucket-here",
        endpoint_url=f"http://127.0.0.1:{_closed_port()}",
        region="us-east-1",
        max_attempts=1,
    )
    for store in (file_store, s3_store):
        for bad in BAD_DIGESTS:
            with pytest.raises(InvalidDigestError):
                store.exists(bad)
            with pytest.raises(InvalidDigestError):
                store.put_stream(iter([b"x"]), expected_digest=bad)
    assert not (tmp_path / "never-created").exists()


def test_missing_blob(backend: Backend, tmp_path: Path) -> None:
    digest = digest_bytes(b"never stored")
    assert not backend.store.exists(digest)
    with pytest.raises(BlobNotFoundError, match=digest):
        backend.store.stat(digest)
    with pytest.raises(BlobNotFoundError, match=digest):
        backend.store.get_bytes(digest)
    with pytest.raises(BlobNotFoundError, match=digest):
        list(backend.store.iter_chunks(digest))
    with pytest.raises(BlobNotFoundError, match=digest):
        backend.store.get_to_file(digest, tmp_path / "x.bin")
    assert list(tmp_path.glob("*x.bin*")) == []


def test_bad_inputs_are_invalid_input(backend: Backend, tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match=r"missing\.bin"):
        backend.store.put_file(tmp_path / "missing.bin")
    with pytest.raises(InvalidInputError):
        backend.store.put_stream(b"raw bytes")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="binary mode"):
        backend.store.put_stream(io.StringIO("text"))  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError):
        backend.store.iter_chunks(digest_bytes(b""), chunk_size=0)
    assert backend.stored() == []
    assert backend.leftovers() == []


def test_failed_input_stream_leaves_nothing(backend: Backend) -> None:
    def broken() -> Iterator[bytes]:
        yield os.urandom(MIB)
        yield os.urandom(MIB)
        raise RuntimeError("source died midway")

    with pytest.raises(RuntimeError, match="source died midway"):
        backend.store.put_stream(broken())
    assert backend.stored() == []
    assert backend.leftovers() == []


# -- URLs, ping --------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["ftp://x", "gs://b", "/no/scheme/at/all"])
def test_unknown_scheme(url: str) -> None:
    with pytest.raises(UnsupportedSchemeError) as err:
        open_blob_store(url)
    message = str(err.value)
    assert "file://" in message
    assert "s3://" in message
    if "://" in url:
        assert url.split("://")[0] + "://" in message


@pytest.mark.parametrize("url", ["s3://", "s3:///prefix/only", "s3://user@bucket/p"])
def test_s3_url_without_bucket_is_config_error(url: str) -> None:
    with pytest.raises(ConfigError):
        open_blob_store(url)


def test_file_url_forms(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    cases = {
        f"file://{tmp_path}/abs": tmp_path / "abs",
        "file://rel/blobs": tmp_path / "rel" / "blobs",
        "file://~/cas": tmp_path / "home" / "cas",
        f"file://{tmp_path}/with%20space": tmp_path / "with space",
    }
    for url, root in cases.items():
        store = open_blob_store(url)
        assert isinstance(store, FileBlobStore)
        assert store.root == root
        assert store.url == url
    with pytest.raises(ConfigError):
        open_blob_store("file://")


def test_file_layout_splits_after_two_hex_chars_and_is_read_only(tmp_path: Path) -> None:
    store = open_blob_store(f"file://{tmp_path}")
    digest = store.put_bytes(b"layout").digest
    hexdigest = digest.removeprefix("sha256:")
    path = tmp_path / hexdigest[:2] / hexdigest[2:]
    assert path.read_bytes() == b"layout"
    assert path.stat().st_mode & 0o777 == 0o444


@pytest.mark.usefixtures("aws_credentials")
def test_s3_key_layout() -> None:
    digest = digest_bytes(b"key")
    hexdigest = digest.removeprefix("sha256:")
    with_prefix = S3BlobStore("s3://bucket-name/some/prefix/", region="us-east-1")
    bare = S3BlobStore("s3://bucket-name", region="us-east-1")
    assert with_prefix.key_of(digest) == f"some/prefix/{hexdigest[:2]}/{hexdigest[2:]}"
    assert bare.key_of(digest) == f"{hexdigest[:2]}/{hexdigest[2:]}"
    with pytest.raises(ConfigError):
        S3BlobStore("s3://bucket-name", multipart_chunksize=MIB)


def test_ping_ok(backend: Backend) -> None:
    backend.store.ping()


def test_file_ping_on_a_root_that_is_a_file(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_bytes(b"")
    store = open_blob_store(f"file://{blocker}")
    with pytest.raises(BlobStoreUnavailableError, match="not-a-dir"):
        store.ping()
    with pytest.raises(BlobStoreUnavailableError, match="not-a-dir"):
        store.put_bytes(b"x")


@pytest.mark.s3
def test_s3_ping_on_a_missing_bucket(s3_endpoint: str) -> None:
    bucket = f"flowmesh-missing-{uuid.uuid4().hex[:12]}"
    store = open_blob_store(f"s3://{bucket}/p", s3_endpoint_url=s3_endpoint)
    with pytest.raises(BlobStoreUnavailableError, match=bucket):
        store.ping()
    with pytest.raises(BlobStoreUnavailableError, match=bucket):
        store.put_bytes(b"x")


@pytest.mark.usefixtures("aws_credentials")
def test_s3_ping_on_an_unreachable_endpoint() -> None:
    endpoint = f"http://127.0.0.1:{_closed_port()}"
    store = S3BlobStore(
        "s3://some-bucket", endpoint_url=endpoint, connect_timeout=1.0, max_attempts=1
    )
    started = time.monotonic()
    with pytest.raises(BlobStoreUnavailableError, match=endpoint):
        store.ping()
    assert time.monotonic() - started < 10


# -- concurrency -------------------------------------------------------------------------


def test_concurrent_puts_of_the_same_content(backend: Backend) -> None:
    data = os.urandom(MIB)
    barrier = threading.Barrier(8)

    def put(_: int) -> PutResult:
        barrier.wait(timeout=10)
        return backend.store.put_bytes(data)

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(put, range(8)))
    assert {r.digest for r in results} == {digest_bytes(data)}
    if backend.name == "file":
        assert sum(r.created for r in results) == 1
    assert backend.store.get_bytes(digest_bytes(data)) == data
    assert backend.leftovers() == []
    assert len(backend.stored()) == 1


def test_public_api() -> None:
    assert sorted(blobs.__all__) == ["BlobInfo", "BlobStore", "PutResult", "open_blob_store"]
