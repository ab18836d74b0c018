"""The content-addressable blob store: immutable bytes addressed by their sha256 digest.

``open_blob_store(url)`` picks the backend by scheme (``file://``, ``s3://``); every
backend implements ``BlobStore`` and passes one contract suite (tests/contract).
"""

from flowmesh_core.blobs.base import BlobInfo, BlobStore, PutResult
from flowmesh_core.blobs.factory import open_blob_store

__all__ = ["BlobInfo", "BlobStore", "PutResult", "open_blob_store"]
