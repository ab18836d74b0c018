"""FlowMesh's errors as ``dagster.Failure``: FlowMesh's message as the description.

Dagster shows a ``Failure``'s description and metadata on the step, where any other
exception reads "Error occurred while executing op" with a traceback. Every FlowMesh error
a step meets (a rejected operator, a token the server does not know, an unreachable
server, a failed workflow) becomes one, with ``flowmesh/error`` naming the error class and
``flowmesh/server_url`` the server asked. A server or token problem names where the
setting came from: the resource's config, or FlowMesh's own settings (FLOWMESH_*).

Only a server that did not answer may be retried by Dagster (``allow_retries``); a
rejection would be rejected again.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg

from flowmesh_core.errors import (
    AuthenticationError,
    ConfigError,
    FlowMeshError,
    ServiceUnavailableError,
)

__all__ = ["as_failure"]

_CLIENT_HINT = "Check FLOWMESH_SERVER_URL (or --server-url / url=)"


@contextmanager
def as_failure(server_url: str | None, from_resource: bool) -> Iterator[None]:
    """Re-raise FlowMesh's errors inside as ``dagster.Failure`` (see the module docstring).

    ``from_resource`` says whether the server URL and token came from the resource's
    config (else from FLOWMESH_SERVER_URL / FLOWMESH_TOKEN / flowmesh.toml).
    """
    try:
        yield
    except FlowMeshError as exc:
        where = (
            "the FlowMeshResource's server_url and token (its resource config)"
            if from_resource
            else "FLOWMESH_SERVER_URL and FLOWMESH_TOKEN (FlowMesh's settings; the "
            "FlowMeshResource sets neither)"
        )
        message = str(exc)
        if isinstance(exc, ConfigError | AuthenticationError | ServiceUnavailableError):
            message = message.replace(_CLIENT_HINT, f"Check {where}")
            if where not in message:
                message = f"{message} (settings from {where})"
        else:
            message = f"FlowMesh refused the request: {message}"
        metadata: dict[str, dg.MetadataValue] = {
            "flowmesh/error": dg.MetadataValue.text(type(exc).__name__),
        }
        if server_url:
            metadata["flowmesh/server_url"] = dg.MetadataValue.url(server_url)
        raise dg.Failure(
            description=message,
            metadata=metadata,
            allow_retries=isinstance(exc, ServiceUnavailableError),
        ) from exc
