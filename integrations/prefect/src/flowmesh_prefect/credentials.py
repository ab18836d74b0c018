"""Where a FlowMesh task finds its control plane: a Prefect block, or FlowMesh's settings.

``FlowMeshCredentials`` is a Prefect block (it appears in the UI's block catalogue as
"FlowMesh Credentials"; the token is a secret field, stored encrypted and never shown).
A task is given a block instance, the name of a saved block, or nothing: then the
FlowMesh settings (``FLOWMESH_SERVER_URL``, ``FLOWMESH_TOKEN``, ``flowmesh.toml``) are read,
at run time, never at import time.

This module must never talk to FlowMesh itself; it only hands out clients.
"""

from __future__ import annotations

from typing import TypeAlias, cast

from prefect.blocks.abstract import CredentialsBlock
from pydantic import Field, SecretStr

from flowmesh_core.client import AsyncClient, Client
from flowmesh_core.errors import AuthenticationError, ConfigError
from flowmesh_core.settings import load_settings

__all__ = [
    "CredentialsSource",
    "FlowMeshCredentials",
    "aresolve_credentials",
    "resolve_credentials",
    "source_name",
]


class FlowMeshCredentials(CredentialsBlock):
    """The URL of a FlowMesh control plane and a tenant token for it.

    Save it once (``FlowMeshCredentials(server_url=..., token=...).save("team-a")``) and
    pass ``credentials="team-a"`` to ``flowmesh_task``; or pass an instance directly.
    """

    _block_type_name = "FlowMesh Credentials"
    _block_type_slug = "flowmesh-credentials"
    _description = (
        "The URL of a FlowMesh control plane and a tenant token: what FlowMesh tasks use "
        "to submit operators and read their results."
    )

    server_url: str = Field(
        default="http://127.0.0.1:8470",
        title="Server URL",
        description="The control plane's base URL (what `flowmesh serve` listens on).",
    )
    token: SecretStr = Field(
        title="Token",
        description="A tenant token from `flowmesh tenant create` (or `flowmesh up`).",
    )
    timeout: float = Field(
        default=30.0, gt=0, description="Seconds one HTTP request to FlowMesh may take."
    )

    def get_client(self) -> Client:
        """A blocking FlowMesh client for this control plane; close it when done."""
        return Client(self.server_url, self.token.get_secret_value(), timeout=self.timeout)

    def get_async_client(self) -> AsyncClient:
        """An asyncio FlowMesh client for this control plane; ``aclose`` it when done."""
        return AsyncClient(self.server_url, self.token.get_secret_value(), timeout=self.timeout)

    @classmethod
    def from_settings(cls) -> FlowMeshCredentials:
        """Credentials from FlowMesh's settings (``FLOWMESH_SERVER_URL``, ``FLOWMESH_TOKEN``).

        AuthenticationError when no token is configured, saying how to give one.
        """
        settings = load_settings()
        if settings.token is None:
            raise AuthenticationError(
                "no FlowMesh credentials: pass credentials= to flowmesh_task (a "
                "FlowMeshCredentials block or the name of a saved one), or set "
                "FLOWMESH_TOKEN (and FLOWMESH_SERVER_URL) where the task runs"
            )
        return cls(server_url=settings.server_url, token=settings.token)


CredentialsSource: TypeAlias = FlowMeshCredentials | str | None
"""A block, the name of a saved block, or None for FlowMesh's settings."""


def _not_found(name: str, exc: ValueError) -> ConfigError:
    return ConfigError(
        f"no FlowMeshCredentials block named {name!r} on this Prefect server ({exc}): save "
        f'one with FlowMeshCredentials(server_url=..., token=...).save("{name}")'
    )


def resolve_credentials(source: CredentialsSource) -> FlowMeshCredentials:
    """The credentials ``source`` stands for, loading a named block (blocking)."""
    if isinstance(source, FlowMeshCredentials):
        return source
    if source is None:
        return FlowMeshCredentials.from_settings()
    try:
        # _sync: this may run under an event loop that is not ours (a sync task of an
        # async flow); the blocking implementation is the one wanted here.
        loaded = FlowMeshCredentials.load(source, _sync=True)  # type: ignore[call-arg]
        return cast(FlowMeshCredentials, loaded)
    except ValueError as exc:
        raise _not_found(source, exc) from exc


async def aresolve_credentials(source: CredentialsSource) -> FlowMeshCredentials:
    """Like ``resolve_credentials``, for async tasks."""
    if isinstance(source, str):
        try:
            return await FlowMeshCredentials.aload(source)
        except ValueError as exc:
            raise _not_found(source, exc) from exc
    return resolve_credentials(source)


def source_name(source: CredentialsSource) -> str | None:
    """Where the server URL and token of ``source`` come from, in words; None for
    FlowMesh's own settings (the client's messages already name FLOWMESH_SERVER_URL)."""
    if source is None:
        return None
    if isinstance(source, str):
        return f"the FlowMeshCredentials block {source!r}"
    name = getattr(source, "_block_document_name", None)
    if name:
        return f"the FlowMeshCredentials block {name!r}"
    return "the FlowMeshCredentials given as credentials="
