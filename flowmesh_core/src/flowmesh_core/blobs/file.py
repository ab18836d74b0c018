"""The ``file://`` blob backend: blobs as read-only files in a local directory.

Layout under the root: ``ab/cdef…`` holds the blob whose hex digest is ``abcdef…`` (split
after two hex chars so no directory grows huge) and ``tmp/`` holds writes in progress on
the same filesystem. A put streams into ``tmp/``, fsyncs, and publishes with ``os.link``,
which fails if the blob exists, so concurrent puts of one blob create it exactly once.
``put_many`` writes every temp file first, makes them durable with one ``syncfs`` of the
filesystem (Linux; one fsync per file elsewhere), publishes them all, and syncs once more
for the new directory entries: two syncs a batch instead of two per blob. A blob is
never published before its bytes are durable.

This module must never write a blob path in place, never leave a temporary file behind
after a failed put, and never let an ``OSError`` escape: it becomes
BlobStoreUnavailableError naming the path.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from flowmesh_core.blobs.base import BlobInfo, BlobStore, PutResult, StreamHasher, check_expected
from flowmesh_core.errors import BlobNotFoundError, BlobStoreUnavailableError, ConfigError
from flowmesh_core.hashing import hex_of

__all__ = ["FileBlobStore", "root_from_url"]

_SCHEME = "file://"
_TMP_DIR = "tmp"
_READ_ONLY = 0o444
# errno values that mean "this filesystem cannot hard-link", not "something is wrong".
_NO_HARDLINKS = frozenset({errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS})


def root_from_url(url: str) -> Path:
    """The directory a ``file://`` URL names: ``file:///abs`` is absolute, ``file://rel``
    and ``file://~/x`` are expanded and taken relative to the current directory (resolved
    now, so a later ``chdir`` does not move the store). Percent-escapes are decoded.
    """
    if not url.lower().startswith(_SCHEME):
        raise ConfigError(f"not a file:// URL: {url!r}")
    rest = unquote(url[len(_SCHEME) :])
    if not rest:
        raise ConfigError(f"file:// URL {url!r} names no directory: use file:///absolute/path")
    return Path(rest).expanduser().absolute()


class FileBlobStore(BlobStore):
    """Blobs in a local directory (created lazily on the first put or ping)."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.root = root_from_url(url)
        self._tmp = self.root / _TMP_DIR

    def path_of(self, digest: str) -> Path:
        """Where the blob with this (validated) digest lives."""
        hexdigest = hex_of(digest)
        return self.root / hexdigest[:2] / hexdigest[2:]

    def ping(self) -> None:
        with self._io("create the blob store directory", self._tmp):
            self._tmp.mkdir(parents=True, exist_ok=True)
        with self._io("write a probe file in", self._tmp):
            fd, probe = tempfile.mkstemp(dir=self._tmp, prefix="ping-")
            os.close(fd)
            os.unlink(probe)

    # -- hooks ---------------------------------------------------------------------------

    def _put(self, chunks: Iterator[bytes], expected: str | None) -> PutResult:
        with self._io("create the blob store directory", self._tmp):
            self._tmp.mkdir(parents=True, exist_ok=True)
        with self._io("create a temporary file in", self._tmp):
            fd, name = tempfile.mkstemp(dir=self._tmp, suffix=".part")
        temp = Path(name)
        try:
            hasher = self._spill(fd, temp, chunks)
            check_expected(hasher.digest, expected)
            created = self._publish(temp, hasher.digest)
        finally:
            with self._io("remove the temporary file", temp):
                temp.unlink(missing_ok=True)
        return PutResult(digest=hasher.digest, size=hasher.size, created=created)

    def _put_many(self, blobs: list[bytes]) -> list[PutResult]:
        with self._io("create the blob store directory", self._tmp):
            self._tmp.mkdir(parents=True, exist_ok=True)
        temps: list[Path] = []  # every temp file made, removed whatever happens
        try:
            hashers = []
            for data in blobs:
                with self._io("create a temporary file in", self._tmp):
                    fd, name = tempfile.mkstemp(dir=self._tmp, suffix=".part")
                temps.append(Path(name))
                hashers.append(self._spill(fd, temps[-1], iter([data]), sync=False))
            self._sync(temps)  # every blob's bytes are durable before any is published
            results = [
                PutResult(h.digest, h.size, self._publish(temp, h.digest, sync=False))
                for temp, h in zip(temps, hashers, strict=True)
            ]
            self._sync([self.path_of(h.digest).parent for h in hashers])
        finally:
            for temp in temps:
                with self._io("remove the temporary file", temp):
                    temp.unlink(missing_ok=True)
        return results

    def _sync(self, paths: list[Path]) -> None:
        """Make writes under ``paths`` durable: one syncfs of the store's filesystem where
        the platform has it, else an fsync of each path."""
        if not paths:
            return
        if _SYNCFS is not None:
            with self._io("sync the filesystem of", self.root):
                fd = os.open(self.root, os.O_RDONLY)
                try:
                    if _SYNCFS(fd) != 0:
                        raise OSError(ctypes.get_errno(), "syncfs failed")
                finally:
                    os.close(fd)
            return
        for path in dict.fromkeys(paths):
            with self._io("sync", path):
                _fsync_path(path)

    def _exists(self, digest: str) -> bool:
        path = self.path_of(digest)
        with self._io("check", path):
            return path.is_file()

    def _stat(self, digest: str) -> BlobInfo:
        path = self.path_of(digest)
        try:
            size = path.stat().st_size
        except FileNotFoundError as exc:
            raise self._not_found(digest) from exc
        except OSError as exc:
            raise _unavailable("stat", path, exc) from exc
        return BlobInfo(digest=digest, size=size)

    def _read_chunks(self, digest: str, chunk_size: int) -> Iterator[bytes]:
        path = self.path_of(digest)
        try:
            handle = path.open("rb")
        except FileNotFoundError as exc:
            raise self._not_found(digest) from exc
        except OSError as exc:
            raise _unavailable("open", path, exc) from exc
        with handle:
            while True:
                with self._io("read", path):
                    chunk = handle.read(chunk_size)
                if not chunk:
                    return
                yield chunk

    # -- helpers -------------------------------------------------------------------------

    def _spill(
        self, fd: int, temp: Path, chunks: Iterator[bytes], *, sync: bool = True
    ) -> StreamHasher:
        """Write ``chunks`` to the open temp file and (``sync``) fsync it; errors raised by
        the caller's chunks pass through, only our own writes are converted.
        """
        hasher = StreamHasher()
        with os.fdopen(fd, "wb") as out:
            for chunk in chunks:
                hasher.update(chunk)
                with self._io("write", temp):
                    out.write(chunk)
            with self._io("flush", temp):
                out.flush()
                if sync:
                    os.fsync(out.fileno())
        return hasher

    def _publish(self, temp: Path, digest: str, *, sync: bool = True) -> bool:
        """Make the finished temp file the blob; False if the blob already existed. With
        ``sync`` false the caller syncs the new directory entry itself."""
        final = self.path_of(digest)
        with self._io("publish the blob at", final):
            final.parent.mkdir(exist_ok=True)
            os.chmod(temp, _READ_ONLY)
            try:
                os.link(temp, final)
            except FileExistsError:
                return False
            except OSError as exc:
                if exc.errno not in _NO_HARDLINKS:
                    raise
                return _publish_by_replace(temp, final)
            if sync:
                _fsync_dir(final.parent)
            return True

    def _not_found(self, digest: str) -> BlobNotFoundError:
        return BlobNotFoundError(f"blob {digest} not found in {self.url}")

    @contextmanager
    def _io(self, action: str, path: Path) -> Iterator[None]:
        try:
            yield
        except OSError as exc:
            raise _unavailable(action, path, exc) from exc


def _publish_by_replace(temp: Path, final: Path) -> bool:
    # Only for filesystems without hard links: a rename cannot refuse an existing target,
    # so two racing puts may both report created=True. The bytes are identical either way.
    if final.exists():
        return False
    os.replace(temp, final)
    _fsync_dir(final.parent)
    return True


def _fsync_dir(directory: Path) -> None:
    # Without this a crash right after the link can lose the new directory entry.
    _fsync_path(directory)


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _load_syncfs() -> Any:
    """libc's ``syncfs`` (Linux), or None where there is none."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        function = libc.syncfs
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int]
    function.restype = ctypes.c_int
    return function


_SYNCFS = _load_syncfs()


def _unavailable(action: str, path: Path, exc: OSError) -> BlobStoreUnavailableError:
    return BlobStoreUnavailableError(
        f"blob store cannot {action} {path}: {exc.strerror or exc} (check that the directory "
        "exists, is writable by this user and its disk has free space)"
    )
