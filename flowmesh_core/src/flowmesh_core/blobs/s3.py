"""The ``s3://bucket/prefix`` blob backend, over boto3 (AWS S3 or any S3-compatible API).

A blob lives at the key ``<prefix>/ab/cdef…``. A put spools the stream through a
``SpooledTemporaryFile`` while hashing (memory up to a bound, then local disk), HEADs the
final key, and uploads only if it is absent: small blobs with one ``PutObject`` carrying
``ChecksumSHA256`` (the server rejects bytes that do not match) and ``If-None-Match: *``
(a racing writer gets 412, which means "already there"); large blobs with boto3's managed
multipart upload and a SHA-256 checksum per part.

This module must never hold more of a blob in memory than the spool bound (or one read
chunk), never do network I/O when a store is constructed, and never let a botocore error
escape: each is converted at this boundary into BlobNotFoundError or
BlobStoreUnavailableError naming the bucket and endpoint.
"""

from __future__ import annotations

import base64
import functools
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, TYPE_CHECKING, Any
from urllib.parse import urlsplit

import boto3
import botocore.loaders
import botocore.session
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, ReadTimeoutError
from botocore.exceptions import ConnectionError as BotoConnectionError
from botocore.loaders import Loader

from flowmesh_core.blobs.base import BlobInfo, BlobStore, PutResult, StreamHasher, check_expected
from flowmesh_core.errors import (
    BlobNotFoundError,
    BlobStoreUnavailableError,
    ConfigError,
    FlowMeshError,
)
from flowmesh_core.hashing import hex_of

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client

__all__ = ["S3BlobStore", "parse_s3_url"]

_MIB = 1 << 20
_MIN_PART = 5 * _MIB  # S3 refuses multipart parts smaller than this (except the last)
_NOT_FOUND = frozenset({"404", "NoSuchKey", "NotFound"})
_PUT_ATTEMPTS = 3
_DENIED = frozenset({"403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"})


def parse_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` → ``("bucket", "some/prefix")``; ConfigError if malformed."""
    parts = urlsplit(url)
    if parts.scheme.lower() != "s3":
        raise ConfigError(f"not an s3:// URL: {url!r}")
    bucket = parts.netloc
    if not bucket or "@" in bucket or ":" in bucket:
        raise ConfigError(f"S3 store URL {url!r} names no valid bucket: use s3://bucket/prefix")
    if parts.query or parts.fragment:
        raise ConfigError(f"S3 store URL {url!r} must not carry '?' or '#' parts")
    return bucket, parts.path.strip("/")


class S3BlobStore(BlobStore):
    """Blobs as objects under one bucket and key prefix. Thread-safe (one boto3 client)."""

    def __init__(
        self,
        url: str,
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        multipart_threshold: int = 64 * _MIB,
        multipart_chunksize: int = 16 * _MIB,
        spool_memory: int = 8 * _MIB,
        connect_timeout: float = 5.0,
        read_timeout: float = 60.0,
        max_attempts: int = 5,
    ) -> None:
        """``endpoint_url``/``region`` of None defer to boto3's own resolution (env, config
        files). ``max_attempts`` counts every try of a request, the first included.
        """
        super().__init__(url)
        self.bucket, self.prefix = parse_s3_url(url)
        if multipart_chunksize < _MIN_PART or multipart_threshold < _MIN_PART:
            raise ConfigError(
                f"S3 multipart threshold and part size must be at least {_MIN_PART} bytes "
                f"(got {multipart_threshold} and {multipart_chunksize})"
            )
        self._threshold = multipart_threshold
        self._spool_memory = spool_memory
        self._transfer = TransferConfig(
            multipart_threshold=multipart_threshold, multipart_chunksize=multipart_chunksize
        )
        self._client = _make_client(
            endpoint_url, region, connect_timeout, read_timeout, max_attempts
        )
        self._endpoint = str(self._client.meta.endpoint_url)
        # Some S3-compatible servers answer If-None-Match with 501; then we stop sending it.
        self._conditional_put = True

    def key_of(self, digest: str) -> str:
        """The object key of the blob with this (validated) digest."""
        hexdigest = hex_of(digest)
        name = f"{hexdigest[:2]}/{hexdigest[2:]}"
        return f"{self.prefix}/{name}" if self.prefix else name

    def ping(self) -> None:
        with self._boundary("check the bucket", None):
            self._client.head_bucket(Bucket=self.bucket)

    # -- hooks ---------------------------------------------------------------------------

    def _put(self, chunks: Iterator[bytes], expected: str | None) -> PutResult:
        with tempfile.SpooledTemporaryFile(max_size=self._spool_memory) as spool:
            hasher = _spool(chunks, spool)
            check_expected(hasher.digest, expected)
            key = self.key_of(hasher.digest)
            if self._head(key, hasher.digest) is not None:
                created = False
            else:
                spool.seek(0)
                created = self._upload(spool, key, hasher)
        return PutResult(digest=hasher.digest, size=hasher.size, created=created)

    def _exists(self, digest: str) -> bool:
        return self._head(self.key_of(digest), digest) is not None

    def _stat(self, digest: str) -> BlobInfo:
        size = self._head(self.key_of(digest), digest)
        if size is None:
            raise BlobNotFoundError(f"blob {digest} not found in {self.url}")
        return BlobInfo(digest=digest, size=size)

    def _read_chunks(self, digest: str, chunk_size: int) -> Iterator[bytes]:
        key = self.key_of(digest)
        with self._boundary("read", digest):
            body = self._client.get_object(Bucket=self.bucket, Key=key)["Body"]
        try:
            while True:
                with self._boundary("read", digest):
                    chunk = body.read(chunk_size)
                if not chunk:
                    return
                yield chunk
        finally:
            body.close()

    # -- helpers -------------------------------------------------------------------------

    def _head(self, key: str, digest: str) -> int | None:
        """Size of the object at ``key``, or None if there is none.

        S3 answers a HEAD on a missing bucket with a bare 404 too, so only ``ping`` tells
        a missing bucket from a missing blob.
        """
        try:
            with self._boundary("look up", digest):
                return self._client.head_object(Bucket=self.bucket, Key=key)["ContentLength"]
        except BlobNotFoundError:
            return None

    def _upload(self, spool: IO[bytes], key: str, hasher: StreamHasher) -> bool:
        """Upload the spooled blob; False if another writer stored it first."""
        if hasher.size >= self._threshold:
            # Managed multipart cannot be conditional; a racing duplicate writes the
            # same bytes, which content addressing makes harmless.
            with self._boundary("upload", None):
                self._client.upload_fileobj(
                    spool,
                    self.bucket,
                    key,
                    ExtraArgs={"ChecksumAlgorithm": "SHA256"},
                    Config=self._transfer,
                )
            return True
        args: dict[str, Any] = {
            "Bucket": self.bucket,
            "Key": key,
            "Body": spool,
            "ContentLength": hasher.size,
            "ChecksumSHA256": base64.b64encode(hasher.raw).decode("ascii"),
        }
        return self._put_object(args, hasher.digest)

    def _put_object(self, args: dict[str, Any], digest: str) -> bool:
        """PutObject, conditional where the server supports it; False if already stored."""
        for _ in range(_PUT_ATTEMPTS):
            conditional: dict[str, Any] = {"IfNoneMatch": "*"} if self._conditional_put else {}
            args["Body"].seek(0)
            try:
                self._client.put_object(**args, **conditional)
            except ClientError as exc:
                if _status(exc) == 412:
                    return False
                if _status(exc) == 501 and conditional:
                    # No conditional writes on this server: a plain put is still safe,
                    # since a racing writer stores the very same bytes.
                    self._conditional_put = False
                elif _code(exc) != "ConditionalRequestConflict":
                    raise self._convert(exc, "upload", None) from exc
                elif self._head(args["Key"], digest) is not None:
                    # S3 reports a concurrent conditional write as a 409; only a HEAD
                    # tells whether that writer finished.
                    return False
            except BotoCoreError as exc:
                raise self._convert(exc, "upload", None) from exc
            else:
                return True
        raise BlobStoreUnavailableError(
            f"S3 kept reporting conflicting writes of {digest} to {self.url!r}; retry later"
        )

    def _missing_bucket(self) -> BlobStoreUnavailableError:
        return BlobStoreUnavailableError(
            f"S3 bucket {self.bucket!r} does not exist at {self._endpoint}: create it, or fix "
            f"the store URL {self.url!r} / the S3 endpoint setting"
        )

    @contextmanager
    def _boundary(self, action: str, digest: str | None) -> Iterator[None]:
        """Convert botocore errors raised inside into FlowMesh errors (``digest`` None
        means a 404 is about the bucket, not a blob)."""
        try:
            yield
        except (ClientError, BotoCoreError) as exc:
            raise self._convert(exc, action, digest) from exc

    def _convert(
        self, exc: ClientError | BotoCoreError, action: str, digest: str | None
    ) -> FlowMeshError:
        where = f"{self.url!r} at {self._endpoint}"
        if isinstance(exc, BotoConnectionError):
            return BlobStoreUnavailableError(
                f"cannot reach the S3 endpoint {self._endpoint} to {action} {self.url!r}: check "
                f"the endpoint URL and the network ({exc})"
            )
        if isinstance(exc, ReadTimeoutError):
            return BlobStoreUnavailableError(f"S3 endpoint {self._endpoint} timed out: {exc}")
        if isinstance(exc, NoCredentialsError):
            return BlobStoreUnavailableError(
                f"no AWS credentials for {where}: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY "
                "or an AWS profile"
            )
        if not isinstance(exc, ClientError):
            return BlobStoreUnavailableError(f"S3 cannot {action} {where}: {exc}")
        code = _code(exc)
        if code == "NoSuchBucket" or (digest is None and code in _NOT_FOUND):
            return self._missing_bucket()
        if code in _NOT_FOUND:
            return BlobNotFoundError(f"blob {digest} not found in {self.url}")
        if code in _DENIED:
            return BlobStoreUnavailableError(
                f"S3 denied access to {where} ({code}): check the AWS credentials and the "
                "bucket policy"
            )
        return BlobStoreUnavailableError(f"S3 cannot {action} {where}: {exc}")


def _make_client(
    endpoint_url: str | None,
    region: str | None,
    connect_timeout: float,
    read_timeout: float,
    max_attempts: int,
) -> S3Client:
    """A boto3 S3 client; builds no connection (the first request does)."""
    config = Config(
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        retries={"total_max_attempts": max_attempts, "mode": "standard"},
        # Custom endpoints (moto, MinIO, Ceph) reliably serve path-style only.
        s3={"addressing_style": "path"} if endpoint_url else None,
    )
    # A session per store (boto3's default session is not safe to share across threads),
    # but one loader: re-parsing S3's service model costs ~100 ms per store otherwise.
    core = botocore.session.Session()
    core.register_component("data_loader", _shared_loader())
    session = boto3.session.Session(botocore_session=core)
    try:
        return session.client("s3", endpoint_url=endpoint_url, region_name=region, config=config)
    except (BotoCoreError, ValueError) as exc:
        raise ConfigError(
            f"cannot configure an S3 client for endpoint {endpoint_url!r}, region {region!r}: {exc}"
        ) from exc


@functools.cache
def _shared_loader() -> Loader:
    # Built on first use, not at import: it reads AWS_DATA_PATH from the environment.
    return botocore.loaders.create_loader()


def _spool(chunks: Iterator[bytes], spool: IO[bytes]) -> StreamHasher:
    hasher = StreamHasher()
    for chunk in chunks:
        hasher.update(chunk)
        try:
            spool.write(chunk)
        except OSError as exc:
            raise BlobStoreUnavailableError(
                f"cannot spool a blob to the local temporary directory "
                f"{tempfile.gettempdir()}: {exc.strerror or exc} (check its free space)"
            ) from exc
    return hasher


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _status(exc: ClientError) -> int | None:
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return status if isinstance(status, int) else None
