"""Opening the Redis that is FlowMesh's system of record, real or embedded.

``redis://``, ``rediss://`` and ``unix://`` URLs open a real server. ``memory://`` opens
the embedded default: fakeredis, an in-process implementation of the Redis protocol
(streams, consumer groups, Lua), driven through the very same redis-py client. So the
store code has one path, and the embedded default is not a second implementation.
``memory://NAME`` gives a separate in-process instance (tests use one per test).

The embedded store lives as long as the process: it is for one process on one machine
(the demo, a laptop, tests). It never spans processes and persists nothing; blobs, which
live in the blob store, do persist.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from typing import Any
from urllib.parse import urlsplit

import redis.asyncio as aioredis

from flowmesh_core.errors import UnsupportedSchemeError

__all__ = ["is_embedded", "open_redis"]

_REAL_SCHEMES = ("redis", "rediss", "unix")
_KEEPALIVE = {
    option: value
    for option, value in (
        (getattr(socket, "TCP_KEEPIDLE", None), 10),
        (getattr(socket, "TCP_KEEPINTVL", None), 5),
        (getattr(socket, "TCP_KEEPCNT", None), 3),
    )
    if option is not None
}
_embedded_servers: dict[str, Any] = {}
_embedded_lock = threading.Lock()


def is_embedded(url: str) -> bool:
    """Whether ``url`` names the in-process store."""
    return urlsplit(url).scheme == "memory"


def open_redis(url: str) -> aioredis.Redis:
    """An asyncio Redis client for ``url``. Does no I/O; the first command connects."""
    scheme = urlsplit(url).scheme
    if scheme in _REAL_SCHEMES:
        return aioredis.Redis.from_url(
            url,
            decode_responses=True,
            socket_connect_timeout=5,
            # No socket_timeout: with one, redis-py wraps every send in asyncio.wait_for,
            # a new Task per command on Python 3.11 (a quarter of the control plane's CPU
            # under load, bench/load.py). A dead peer is found by TCP keepalive instead
            # (about 25 s: idle 10 s, then 3 probes 5 s apart), and a stale pooled
            # connection by the health check.
            socket_timeout=None,
            socket_keepalive=True,
            socket_keepalive_options=_KEEPALIVE,
            health_check_interval=30,
            max_connections=256,
        )
    if scheme == "memory":
        return _open_embedded(urlsplit(url).netloc or "default")
    raise UnsupportedSchemeError(
        f"Redis URL {url!r}: unsupported scheme {scheme!r}; use redis://host:port/db, "
        "rediss:// (TLS), unix:///path/to/socket, or memory:// for the embedded store"
    )


def _open_embedded(name: str) -> aioredis.Redis:
    # Imported here so a deployment on a real Redis never loads the embedded store.
    import fakeredis

    class EmbeddedRedis(fakeredis.FakeAsyncRedis):
        """fakeredis, with commands shielded from cancellation.

        fakeredis 2.40's async client wedges the event loop when a task is cancelled in
        the middle of a command. Shielded, a cancelled caller stops waiting while the
        command itself (in-process, quick) runs to its end.
        """

        async def execute_command(self, *args: Any, **options: Any) -> Any:
            command = super().execute_command(*args, **options)  # type: ignore[no-untyped-call]
            return await asyncio.shield(command)

    with _embedded_lock:
        server = _embedded_servers.get(name)
        if server is None:
            server = fakeredis.FakeServer(version=(7, 2))
            _embedded_servers[name] = server
    client: aioredis.Redis = EmbeddedRedis(server=server, decode_responses=True)
    return client
