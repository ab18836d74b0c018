"""What every CLI command shares: settings from the global options, and error reporting.

A user mistake (a FlowMeshError) prints one line on stderr that says what to fix and exits
with status 2; only a bug shows a traceback.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import sys
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import click
from rich.console import Console
from rich.text import Text

from flowmesh_core.blobs import BlobStore, open_blob_store
from flowmesh_core.errors import FlowMeshError
from flowmesh_core.settings import Settings, load_settings
from flowmesh_core.store import Store

__all__ = ["CliContext", "console", "err_console", "pass_cli", "reports_errors", "run_async"]

console = Console()
err_console = Console(stderr=True, soft_wrap=True)

P = ParamSpec("P")
T = TypeVar("T")


@dataclass
class CliContext:
    """The global options, turned into settings on first use."""

    config_file: Path | None
    overrides: dict[str, Any]
    _settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings(self.config_file, **self.overrides)
        return self._settings

    def blob_store(self) -> BlobStore:
        s = self.settings
        return open_blob_store(s.blob_url, s3_endpoint_url=s.s3_endpoint_url, s3_region=s.s3_region)

    def store(self) -> Store:
        return Store.from_settings(self.settings)


pass_cli = click.make_pass_decorator(CliContext)


def reports_errors(func: Callable[P, T]) -> Callable[P, T]:
    """Turn FlowMeshError into a one-line message and exit status 2."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return func(*args, **kwargs)
        except FlowMeshError as exc:
            logging.getLogger("flowmesh").debug("command failed", exc_info=True)
            err_console.print(Text.assemble(("error: ", "bold red"), str(exc)))
            sys.exit(2)

    return wrapper


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run one coroutine to completion (each command owns its event loop)."""
    return asyncio.run(coro)
