"""``FlowMeshHook``: an Airflow connection of type ``flowmesh``, turned into a FlowMesh client.

The connection's **host** is the control plane's URL (``http://127.0.0.1:8470``); a bare
host name is completed with ``schema`` (``http`` unless it says ``https``) and ``port``,
so URI-style connections (``flowmesh://:TOKEN@host:8470``) work too. The tenant token is
the connection's **password**, or ``token`` in its extra when a secrets backend stores only
extra (the password wins when both are set). Extra ``timeout`` is the seconds one HTTP
request may take (default 30).

This module must never talk HTTP itself (the client SDK does), and must never read a
connection synchronously from inside the triggerer's event loop: ``aget_async_client``
is the async path.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from airflow.sdk import BaseHook, Connection
from airflow.sdk.exceptions import AirflowException

from flowmesh_core.client import AsyncClient, Client
from flowmesh_core.errors import FlowMeshError

__all__ = ["FlowMeshHook", "ServerSettings", "server_settings"]

DEFAULT_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class ServerSettings:
    """Where the control plane is, the tenant token, and how long one request may take."""

    url: str
    token: str = field(repr=False)
    timeout: float = DEFAULT_TIMEOUT_S


def server_settings(conn: Connection, extra: Mapping[str, Any]) -> ServerSettings:
    """The FlowMesh server settings a ``flowmesh`` connection holds.

    ``extra`` is the connection's decoded extra (read sync or async by the caller).
    Raises AirflowException naming the connection and the field to fix.
    """
    where = f"Airflow connection {conn.conn_id!r}"
    url = _url(conn, where)
    token = conn.password or extra.get("token")
    if not isinstance(token, str) or not token:
        raise AirflowException(
            f"{where} has no FlowMesh token: put the tenant token (`flowmesh tenant create`) "
            "in its password field (or `token` in its extra)"
        )
    timeout = extra.get("timeout", DEFAULT_TIMEOUT_S)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float | str):
        raise AirflowException(f"{where}: extra 'timeout' must be a number of seconds")
    try:
        seconds = float(timeout)
    except ValueError:
        seconds = 0.0
    if not seconds > 0:
        raise AirflowException(f"{where}: extra 'timeout' must be positive, got {timeout!r}")
    return ServerSettings(url=url, token=token, timeout=seconds)


def _url(conn: Connection, where: str) -> str:
    host = (conn.host or "").strip().rstrip("/")
    if not host:
        raise AirflowException(
            f"{where} has no host: set it to the FlowMesh control plane's URL, "
            "e.g. http://127.0.0.1:8470"
        )
    if "://" not in host:
        scheme = (conn.schema or "http").lower()
        if scheme not in {"http", "https"}:
            scheme = "http"
        host = f"{scheme}://{host}"
    parts = urlsplit(host)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise AirflowException(
            f"{where}: host {host!r} is not an http(s) URL of the FlowMesh control plane"
        )
    if conn.port and parts.port is None:
        host = parts._replace(netloc=f"{parts.netloc}:{conn.port}").geturl()
    return host


class FlowMeshHook(BaseHook):
    """Builds FlowMesh clients from an Airflow connection of type ``flowmesh``.

    ``get_conn()`` gives a blocking ``Client`` and ``aget_async_client()`` an
    ``AsyncClient`` (for triggers); the caller closes what it gets, best with ``with``.
    """

    conn_name_attr = "flowmesh_conn_id"
    default_conn_name = "flowmesh_default"
    conn_type = "flowmesh"
    hook_name = "FlowMesh"

    def __init__(self, flowmesh_conn_id: str = default_conn_name) -> None:
        super().__init__()
        self.flowmesh_conn_id = flowmesh_conn_id

    def get_settings(self) -> ServerSettings:
        """The connection's URL, token and timeout (blocking lookup)."""
        conn = self.get_connection(self.flowmesh_conn_id)
        return server_settings(conn, conn.extra_dejson)

    async def aget_settings(self) -> ServerSettings:
        """The connection's URL, token and timeout, looked up without blocking the loop."""
        conn = await self.aget_connection(self.flowmesh_conn_id)
        return server_settings(conn, await conn.aextra_dejson())

    def get_conn(self) -> Client:
        """A blocking FlowMesh client for this connection."""
        settings = self.get_settings()
        return Client(settings.url, settings.token, timeout=settings.timeout)

    def read(self, ref: Mapping[str, Any] | str) -> Any:
        """The value of a result: ``ref`` is what ``FlowMeshOperator`` pushed to XCom (its
        ``result_digest`` is read) or a digest. A split node's manifest comes back as the
        list of its items' values (``Client.result_value``), verified on the way."""
        digest = ref if isinstance(ref, str) else ref.get("result_digest")
        if not isinstance(digest, str):
            raise AirflowException(
                "FlowMeshHook.read wants the operator's XCom (a mapping with a "
                f"'result_digest') or a digest, not {type(ref).__name__}"
            )
        with self.get_conn() as client:
            return client.result_value(digest)

    async def aget_async_client(self) -> AsyncClient:
        """An asyncio FlowMesh client for this connection."""
        settings = await self.aget_settings()
        return AsyncClient(settings.url, settings.token, timeout=settings.timeout)

    def test_connection(self) -> tuple[bool, str]:
        """What the connection form's Test button shows: reachable, and the token accepted."""
        try:
            with self.get_conn() as client:
                client.stats()
                return True, f"FlowMesh at {client.url} accepted the token"
        except (FlowMeshError, AirflowException) as exc:
            return False, str(exc)
