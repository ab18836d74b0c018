"""``flowmesh serve``: run the control plane's HTTP API (and, unless told not to, its loops).

The server is uvicorn, run in this process. SIGTERM and SIGINT stop it gracefully: new
connections are refused, long polls still open answer at once with the workflow's status
as it stands, other requests in flight get ``--graceful-timeout`` seconds to finish, the
scheduler and completion loops stop, and the process exits 0.

This command must never hide where it listens and what it uses: it logs the address, the
Redis and the blob store (credentials in URLs redacted), and warns when the store is the
embedded one, which no other process (worker, CLI, replica) can reach.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import socket
import threading
from collections.abc import Iterator
from urllib.parse import urlsplit

import click
import uvicorn
from fastapi import FastAPI

from flowmesh_core.api import create_app
from flowmesh_core.api.app import begin_shutdown
from flowmesh_core.api.errors import redact
from flowmesh_core.cli._common import CliContext, pass_cli, reports_errors
from flowmesh_core.control import ControlPlane
from flowmesh_core.errors import ConfigError
from flowmesh_core.settings import Settings
from flowmesh_core.store.connection import is_embedded

__all__ = ["serve"]

log = logging.getLogger("flowmesh.serve")

_LEVELS = ("critical", "error", "warning", "info", "debug")


class _Server(uvicorn.Server):
    """uvicorn, but long polls end when shutdown starts, and a clean shutdown exits 0.

    uvicorn tells the app it stops (the lifespan's shutdown) only after the requests in
    flight finished or were cancelled at the end of the grace period, which answers a
    long poll with a bare 500 and logs a traceback; so the app's long polls are ended
    first (``begin_shutdown``). uvicorn also re-raises the signal after shutting down, so
    the process dies *by* it (exit status -15); a control plane that drained cleanly has
    succeeded, and supervisors (systemd, Kubernetes) should read it so.
    """

    def __init__(self, config: uvicorn.Config, app: FastAPI) -> None:
        super().__init__(config)
        self._app = app

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        begin_shutdown(self._app)
        await super().shutdown(sockets)

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        handled = (signal.SIGINT, signal.SIGTERM)
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in handled}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def _default_port(settings: Settings) -> int:
    parts = urlsplit(settings.server_url)
    try:
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"server_url {settings.server_url!r}: {exc}") from exc
    return port or (443 if parts.scheme == "https" else 80)


def _announce(settings: Settings, host: str, port: int, scheduler: bool) -> None:
    role = "API and scheduler" if scheduler else "API only (--no-scheduler)"
    log.info("FlowMesh control plane (%s) listening on http://%s:%d", role, host, port)
    log.info("Redis: %s (key prefix %r)", redact(settings.redis_url), settings.key_prefix)
    log.info("blob store: %s", redact(settings.blob_url))
    if is_embedded(settings.redis_url):
        log.info(
            "the store is the embedded one (%s): a Valkey server in %s that FlowMesh "
            "processes on this machine with the same state_dir share; for a fleet of "
            "machines set FLOWMESH_REDIS_URL=redis://...",
            settings.redis_url,
            settings.state_dir,
        )


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port", type=click.IntRange(0, 65535), help="Port (default: server_url's port, 8470)."
)
@click.option(
    "--no-scheduler",
    is_flag=True,
    help="Serve the API only; another replica runs the scheduler and completion loops.",
)
@click.option(
    "--log-level", type=click.Choice(_LEVELS), default="info", show_default=True, help="Log level."
)
@click.option(
    "--graceful-timeout",
    type=click.IntRange(min=0),
    default=10,
    show_default=True,
    help="Seconds requests in flight get to finish on shutdown (long polls answer at once).",
)
@pass_cli
@reports_errors
def serve(
    cli: CliContext,
    host: str,
    port: int | None,
    no_scheduler: bool,
    log_level: str,
    graceful_timeout: int,
) -> None:
    """Run the control plane: the HTTP API, plus the scheduler unless --no-scheduler."""
    settings = cli.settings
    port = _default_port(settings) if port is None else port
    logging.getLogger("flowmesh").setLevel(log_level.upper())
    control = ControlPlane(settings)
    app = create_app(control, run_scheduler=not no_scheduler)
    _announce(settings, host, port, not no_scheduler)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        lifespan="on",
        timeout_graceful_shutdown=graceful_timeout,
    )
    _Server(config, app).run()
