"""Opening the Redis that is FlowMesh's system of record.

``redis://``, ``rediss://`` and ``unix://`` URLs open a server someone runs. ``memory://``
opens the embedded default: a real Valkey server that FlowMesh starts by itself, owned by
a state directory and shared by every FlowMesh process on the machine that uses the same
directory (``store/embedded.py``). Both are driven through the very same redis-py client
and code path; the embedded default only differs in who starts the server.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import redis.asyncio as aioredis

from flowmesh_core.errors import UnsupportedSchemeError
from flowmesh_core.store.embedded import EmbeddedServer

__all__ = ["embedded_server", "is_embedded", "open_redis"]

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
_OPTIONS: dict[str, Any] = {
    "decode_responses": True,
    "socket_connect_timeout": 5,
    # No socket_timeout: with one, redis-py wraps every send in asyncio.wait_for, a new
    # Task per command on Python 3.11 (a quarter of the control plane's CPU under load,
    # bench/load.py). A dead peer is found by TCP keepalive instead (about 25 s: idle
    # 10 s, then 3 probes 5 s apart), and a stale pooled connection by the health check.
    "socket_timeout": None,
    "health_check_interval": 30,
    "max_connections": 256,
}


def is_embedded(url: str) -> bool:
    """Whether ``url`` names the embedded store (``memory://``)."""
    return urlsplit(url).scheme == "memory"


def embedded_server(url: str, state_dir: Path | None = None) -> EmbeddedServer:
    """The embedded server ``url`` (``memory://`` or ``memory://NAME``) names. No I/O."""
    return EmbeddedServer(state_dir, urlsplit(url).netloc or "default")


def open_redis(url: str, state_dir: Path | None = None) -> aioredis.Redis:
    """An asyncio Redis client for ``url``.

    For ``memory://`` the embedded server of ``state_dir`` (default: see
    ``store/embedded.py``) is started if it does not run, and this process is recorded as
    one of its owners; otherwise no I/O is done: the first command connects.
    """
    scheme = urlsplit(url).scheme
    if scheme == "memory":
        endpoint = embedded_server(url, state_dir).attach()
        return aioredis.Redis(
            unix_socket_path=endpoint.socket_path, password=endpoint.password, **_OPTIONS
        )
    if scheme in _REAL_SCHEMES:
        return aioredis.Redis.from_url(
            url,
            socket_keepalive=True,
            socket_keepalive_options=_KEEPALIVE,
            **_OPTIONS,
        )
    raise UnsupportedSchemeError(
        f"Redis URL {url!r}: unsupported scheme {scheme!r}; use redis://host:port/db, "
        "rediss:// (TLS), unix:///path/to/socket, or memory:// for the embedded store"
    )
