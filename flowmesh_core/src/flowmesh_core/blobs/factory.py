"""Pick a blob store backend from its URL scheme (``file://`` or ``s3://``).

This module must never guess: a URL without a known scheme is an UnsupportedSchemeError
that lists the schemes there are, not a path taken literally.
"""

from __future__ import annotations

from flowmesh_core.blobs.base import BlobStore
from flowmesh_core.blobs.file import FileBlobStore
from flowmesh_core.errors import UnsupportedSchemeError

__all__ = ["SUPPORTED_SCHEMES", "open_blob_store"]

SUPPORTED_SCHEMES = ("file://", "s3://")


def open_blob_store(
    url: str, *, s3_endpoint_url: str | None = None, s3_region: str | None = None
) -> BlobStore:
    """The blob store at ``url``. No I/O happens here: ``ping`` checks reachability.

    ``s3_endpoint_url`` and ``s3_region`` apply to ``s3://`` URLs only; None leaves them
    to boto3's own resolution (``AWS_ENDPOINT_URL``, ``AWS_REGION``, config files).
    """
    scheme, sep, _ = url.partition("://")
    scheme = scheme.lower()
    if sep and scheme == "file":
        return FileBlobStore(url)
    if sep and scheme == "s3":
        # Imported here so that file:// users (the embedded default) never pay for boto3.
        from flowmesh_core.blobs.s3 import S3BlobStore

        return S3BlobStore(url, endpoint_url=s3_endpoint_url, region=s3_region)
    shown = f"scheme {scheme + '://'!r}" if sep else "no scheme"
    raise UnsupportedSchemeError(
        f"blob store URL {url!r} has {shown}; supported schemes: {', '.join(SUPPORTED_SCHEMES)} "
        "(e.g. file:///var/lib/flowmesh/blobs or s3://bucket/prefix)"
    )
